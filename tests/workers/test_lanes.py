"""Per-driver lanes and the ack ledger without Kafka: order, concurrency, backpressure, and
when offsets may be committed."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from workers.inference import ProcessResult, RawMessage
from workers.lanes import AckLedger, LaneDispatcher

GATE_TIMEOUT_S = 60  # only ever reached when the behaviour under test is broken


def msg(driver: str, offset: int, partition: int = 0) -> RawMessage:
    return RawMessage(key=driver.encode(), value=b"", partition=partition, offset=offset)


def result(m: RawMessage, captured_until: float | None = None) -> ProcessResult:
    driver = m.key_text
    return ProcessResult(driver_id=driver, captured_until=captured_until)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# --- the ledger -------------------------------------------------------------------------


def test_ledger_acks_in_offset_order_per_partition() -> None:
    ledger: AckLedger[str] = AckLedger(hold_s=0)
    a0, b1, c0 = ledger.add("p0", "a0"), ledger.add("p0", "b1"), ledger.add("p1", "c0")
    ledger.done(b1)
    ledger.done(c0)
    assert ledger.release() == ["c0"]  # b1 waits for a0, the other partition does not
    ledger.done(a0)
    assert ledger.release() == ["a0", "b1"]
    assert ledger.release() == []


def test_ledger_holds_a_drivers_messages_for_the_replay_warmup() -> None:
    clock = Clock()
    ledger: AckLedger[str] = AckLedger(hold_s=10, clock=clock)
    entries = [ledger.add("p0", f"m{t}") for t in range(0, 25, 5)]
    for t, entry in zip(range(0, 25, 5), entries[:3], strict=False):
        ledger.done(entry, "ann", captured_until=1000.0 + t)
    assert ledger.release() == ["m0"]  # newest frame 1010: only 1000 is 10 s behind it
    ledger.done(entries[3], "ann", captured_until=1015.0)
    ledger.done(entries[4], "ann", captured_until=1020.0)
    assert ledger.release() == ["m5", "m10"]
    assert ledger.held == 2


def test_ledger_releases_a_quiet_drivers_messages_after_the_warmup() -> None:
    clock = Clock()
    ledger: AckLedger[str] = AckLedger(hold_s=10, clock=clock)
    ledger.done(ledger.add("p0", "ann"), "ann", captured_until=1000.0)
    dead_letter = ledger.add("p0", "bad")
    ledger.done(dead_letter)  # touched no driver's state: held by order alone
    assert ledger.release() == []
    clock.now = 9.9
    assert ledger.release() == []
    clock.now = 10.0
    assert ledger.release() == ["ann", "bad"]


def test_ledger_never_acks_revoked_partitions() -> None:
    ledger: AckLedger[str] = AckLedger(hold_s=0)
    entry = ledger.add("p0", "x")
    ledger.forget({"p0"})
    ledger.done(entry)
    assert ledger.release() == []
    assert not entry.live


# --- the dispatcher ---------------------------------------------------------------------


def test_a_blocked_driver_does_not_hold_up_another() -> None:
    """slow's inference blocks until fast's results are published: only lanes running side
    by side let both finish (one lane at a time would wait for the gate forever)."""
    gate = threading.Event()
    published: list[str | None] = []
    acked: list[str] = []

    def run_batch(msgs: list[RawMessage]) -> list[ProcessResult]:
        if msgs[0].key == b"slow":
            gate.wait(GATE_TIMEOUT_S)
        return [result(m) for m in msgs]

    async def publish(r: ProcessResult) -> None:
        published.append(r.driver_id)
        if r.driver_id == "fast":
            gate.set()

    async def main() -> None:
        with ThreadPoolExecutor(2) as executor:
            lanes = LaneDispatcher(run_batch, publish, acked.extend, executor)
            await lanes.submit(msg("slow", 0), "slow@0")
            await lanes.submit(msg("fast", 1), "fast@1")
            await lanes.join()

    asyncio.run(main())
    assert published == ["fast", "slow"]
    assert acked == ["slow@0", "fast@1"]  # one partition: offset order, whoever finished first


def test_a_lane_micro_batches_its_backlog_in_order() -> None:
    """While a driver's first message is being inferred, the rest queue on its lane and go to
    the executor together, in order."""
    started, gate = threading.Event(), threading.Event()
    calls: list[list[int]] = []
    published: list[int] = []

    def run_batch(msgs: list[RawMessage]) -> list[ProcessResult]:
        calls.append([m.offset for m in msgs])
        started.set()
        gate.wait(GATE_TIMEOUT_S)
        return [result(m) for m in msgs]

    async def publish(r: ProcessResult) -> None:
        published.append(len(published))

    async def main() -> None:
        with ThreadPoolExecutor(2) as executor:
            lanes = LaneDispatcher(run_batch, publish, lambda tokens: None, executor,
                                   max_batch=3)
            await lanes.submit(msg("ann", 0), 0)
            await asyncio.to_thread(started.wait, GATE_TIMEOUT_S)
            for offset in range(1, 6):
                await lanes.submit(msg("ann", offset), offset)
            gate.set()
            await lanes.join()

    asyncio.run(main())
    assert calls == [[0], [1, 2, 3], [4, 5]]
    assert published == list(range(6))


def test_submit_waits_while_max_in_flight_messages_are_pending() -> None:
    gate = threading.Event()
    done: list[int] = []

    def run_batch(msgs: list[RawMessage]) -> list[ProcessResult]:
        gate.wait(GATE_TIMEOUT_S)
        return [result(m) for m in msgs]

    async def publish(r: ProcessResult) -> None:
        done.append(1)

    async def main() -> None:
        with ThreadPoolExecutor(2) as executor:
            lanes = LaneDispatcher(run_batch, publish, lambda tokens: None, executor,
                                   max_in_flight=2)
            await lanes.submit(msg("ann", 0), 0)
            await lanes.submit(msg("bob", 1), 1)
            third = asyncio.create_task(lanes.submit(msg("cid", 2), 2))
            await asyncio.sleep(0)  # let it run up to the wait for room
            assert not third.done()
            gate.set()
            await third  # room once one of the first two is published
            assert done
            await lanes.join()

    asyncio.run(main())
    assert len(done) == 3


def test_results_the_producer_refuses_are_dead_lettered_and_the_lanes_go_on() -> None:
    """The old dispatcher kept the first failed send and raised it on every later submit: one
    oversized dead letter stopped every driver for good."""
    published: list[ProcessResult] = []
    acked: list[int] = []

    def run_batch(msgs: list[RawMessage]) -> list[ProcessResult]:
        return [result(m, captured_until=None) for m in msgs]

    async def publish(r: ProcessResult) -> None:
        if r.driver_id == "ann" and not r.dead_letters:
            raise ValueError("message of 21 MiB exceeds the 5 MiB limit")  # ann's results
        published.append(r)

    async def main() -> None:
        with ThreadPoolExecutor(2) as executor:
            lanes = LaneDispatcher(run_batch, publish, acked.extend, executor, max_in_flight=1)
            for offset, driver in enumerate(["ann", "bob", "ann", "bob"]):
                await lanes.submit(msg(driver, offset), offset)
            await lanes.join()
            assert lanes.set_aside == 2

    asyncio.run(main())
    assert [r.driver_id for r in published] == [None, "bob", None, "bob"]
    letters = [r.dead_letters[0][0] for r in published if r.dead_letters]
    assert [(d.offset, d.key, d.reason.value) for d in letters] == [
        (0, "ann", "processing_error"), (2, "ann", "processing_error")]
    assert "21 MiB" in letters[0].error
    assert acked == [0, 1, 2, 3]  # nothing stuck: every message is acked, in order


def test_a_publish_failing_for_everything_is_retried_until_the_broker_is_back() -> None:
    """Not even a dead letter goes out (the broker is unreachable): nothing is set aside or
    acked, the lane retries, and once sends work again the results themselves go out."""
    broker_up = asyncio.Event()
    published: list[ProcessResult] = []
    acked: list[int] = []
    attempts = 0

    async def publish(r: ProcessResult) -> None:
        nonlocal attempts
        attempts += 1
        if not broker_up.is_set():
            raise ConnectionError("broker gone")
        published.append(r)

    async def main() -> None:
        with ThreadPoolExecutor(1) as executor:
            lanes = LaneDispatcher(lambda msgs: [result(m) for m in msgs], publish,
                                   acked.extend, executor)
            await lanes.submit(msg("ann", 0), 0)
            while attempts < 3:  # the results, their dead letter, the results again
                await asyncio.sleep(0.05)
            assert published == [] and acked == []
            broker_up.set()
            await lanes.join()
            assert lanes.set_aside == 0

    asyncio.run(main())
    assert [(r.driver_id, r.dead_letters) for r in published] == [("ann", [])]
    assert acked == [0]


def test_stop_abandons_unfinished_work_unacked() -> None:
    """At shutdown the lanes' work is dropped, not acked: the next worker replays it."""
    gate = threading.Event()
    acked: list[int] = []

    def run_batch(msgs: list[RawMessage]) -> list[ProcessResult]:
        gate.wait(GATE_TIMEOUT_S)
        return [result(m) for m in msgs]

    async def publish(r: ProcessResult) -> None:
        pass

    async def main() -> None:
        with ThreadPoolExecutor(1) as executor:
            lanes = LaneDispatcher(run_batch, publish, acked.extend, executor)
            await lanes.submit(msg("ann", 0), 0)
            await asyncio.sleep(0)  # the lane hands the message to the executor
            await lanes.stop()
            gate.set()
            await lanes.join()

    asyncio.run(main())
    assert acked == []
