"""Per-driver lanes: the inference worker's dispatch, concurrency and acknowledgement logic,
without Kafka (the agent in :mod:`workers.agent` feeds it Faust events).

- Each consumed message goes to its driver's lane (by message key), so one driver's messages
  are processed in order and never by two threads at once.
- A lane hands everything queued for its driver (up to ``max_batch`` messages) to the shared
  executor in one call, so a backlog costs few hops; lanes of different drivers run at the
  same time in different threads, and a slow driver holds up only its own lane.
- At most ``max_in_flight`` messages are queued or being processed: :meth:`submit` waits for
  room, which stops the agent taking more from the consumer.
- A lane publishes each message's results as soon as its batch is done, in the driver's
  order, then marks it done in the :class:`AckLedger`, which says when it may be acked.
- A failure never stops the dispatcher: results the producer refuses (or a batch that
  raised) are replaced by a processing_error dead letter of the message, counted in
  :attr:`LaneDispatcher.set_aside`; while not even that can be published (the broker is
  unreachable) the lane retries with backoff, holding up only its own driver (and, through
  ``max_in_flight``, the intake), never acking what was not published.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from streams.schemas import DeadLetterReason, clip_text
from workers.inference import ProcessResult, RawMessage

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0


@dataclass(eq=False)
class _Entry(Generic[T]):
    token: T
    live: bool = True
    done: bool = False
    driver: str | None = None
    captured_until: float | None = None


class AckLedger(Generic[T]):
    """When may a consumed message be acknowledged (so its offset may be committed)?

    In offset order per partition. Lanes finish out of order across drivers, and Faust commits
    up to the first gap in its acked offsets, except that its gap check lets unacked offsets
    through (one after a commit, any before the first; faust-streaming 0.15,
    ``Consumer._new_offset``): acking in order keeps the acked offsets gap-free, so nothing
    unprocessed is ever committed.

    And only once no restarted worker needs it: a message is held until its driver's newest
    finished frame is ``hold_s`` (capture time) past its own newest frame, or the driver has
    been quiet for ``hold_s`` (clock time). The worker that next owns the partition replays
    from the committed offset, so it sees at least ``hold_s`` of each driver's frames before
    the first one not yet observed, and rebuilds the perception state (eye baseline, a
    closure in progress) on frames whose observations downstream drops as already seen.
    Messages that touched no driver's state (dead letters) are held by nothing but order.
    """

    def __init__(self, hold_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.hold_s = hold_s
        self.clock = clock
        self._partitions: dict[Hashable, deque[_Entry[T]]] = {}
        self._newest: dict[str, float] = {}  # driver -> newest captured_until done
        self._active: dict[str, float] = {}  # driver -> clock when it last had a message done

    def add(self, partition: Hashable, token: T) -> _Entry[T]:
        """A message consumed from ``partition`` (call in consumption order)."""
        entry = _Entry(token)
        self._partitions.setdefault(partition, deque()).append(entry)
        return entry

    def done(self, entry: _Entry[T], driver: str | None = None,
             captured_until: float | None = None) -> None:
        """The message's results are out; ``driver`` and ``captured_until`` when it fed that
        driver's perception state frames up to that capture time."""
        entry.done = True
        if driver is not None and captured_until is not None:
            entry.driver, entry.captured_until = driver, captured_until
            self._newest[driver] = max(self._newest.get(driver, captured_until), captured_until)
            self._active[driver] = self.clock()

    def release(self) -> list[T]:
        """Tokens that may be acked now, in offset order per partition."""
        now, out = self.clock(), []
        for entries in self._partitions.values():
            while entries and self._releasable(entries[0], now):
                out.append(entries.popleft().token)
        return out

    def forget(self, partitions: set[Hashable]) -> None:
        """The partitions were revoked: never ack their messages (the next owner replays
        them from the committed offset)."""
        for partition in partitions:
            for entry in self._partitions.pop(partition, ()):
                entry.live = False

    @property
    def held(self) -> int:
        return sum(len(entries) for entries in self._partitions.values())

    def _releasable(self, entry: _Entry[T], now: float) -> bool:
        if not entry.done:
            return False
        if entry.driver is None or entry.captured_until is None:
            return True
        return (self._newest[entry.driver] - entry.captured_until >= self.hold_s
                or now - self._active[entry.driver] >= self.hold_s)


@dataclass(eq=False)
class _Lane(Generic[T]):
    queue: deque[tuple[RawMessage, _Entry[T]]] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None


class LaneDispatcher(Generic[T]):
    """Routes messages to per-driver lanes and runs the lanes' batches in ``executor``.

    run_batch: one driver's messages, in order -> one result per message (runs in the
    executor; should not raise for a bad message). publish: sends one message's results.
    ack: the ledger's tokens now releasable, in offset order per partition.
    """

    def __init__(
        self,
        run_batch: Callable[[list[RawMessage]], list[ProcessResult]],
        publish: Callable[[ProcessResult], Awaitable[None]],
        ack: Callable[[list[T]], None],
        executor: Executor,
        *,
        max_in_flight: int = 64,
        max_batch: int = 16,
        hold_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._run_batch = run_batch
        self._publish = publish
        self._ack = ack
        self._executor = executor
        self.max_batch = max_batch
        self.ledger: AckLedger[T] = AckLedger(hold_s, clock)
        self._slots = asyncio.Semaphore(max_in_flight)
        self._lanes: dict[bytes | None, _Lane[T]] = {}
        self.set_aside = 0  # messages whose results were replaced by a dead letter

    async def submit(self, msg: RawMessage, token: T) -> None:
        """Queues ``msg`` on its driver's lane, waiting while ``max_in_flight`` messages are.

        token: what the ledger releases for acking."""
        await self._slots.acquire()
        entry = self.ledger.add((msg.topic, msg.partition), token)
        lane = self._lanes.get(msg.key)
        if lane is None:
            lane = self._lanes[msg.key] = _Lane()
            lane.task = asyncio.create_task(self._run(msg.key, lane))
        lane.queue.append((msg, entry))

    def forget(self, partitions: set[Hashable]) -> None:
        self.ledger.forget(partitions)

    def release(self) -> None:
        """Acks what has become releasable with time alone (drivers gone quiet)."""
        tokens = self.ledger.release()
        if tokens:
            self._ack(tokens)

    async def join(self) -> None:
        """Waits until every lane is idle (all submitted messages published)."""
        while self._lanes:
            await asyncio.gather(*(lane.task for lane in list(self._lanes.values())
                                   if lane.task is not None), return_exceptions=True)

    async def stop(self) -> None:
        """Abandons the lanes' work: nothing of it is acked, so it is replayed."""
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, key: bytes | None, lane: _Lane[T]) -> None:
        loop = asyncio.get_running_loop()
        try:
            while lane.queue:
                batch = [lane.queue.popleft() for _ in range(min(len(lane.queue),
                                                                 self.max_batch))]
                msgs = [msg for msg, _ in batch]
                try:
                    results = await loop.run_in_executor(self._executor, self._run_batch, msgs)
                except Exception as exc:
                    log.exception("lane %r: a batch of %d messages failed", key, len(msgs))
                    results = [_set_aside(msg, "processing failed", exc) for msg in msgs]
                    self.set_aside += len(msgs)
                log.debug("lane %r: %d messages, %d frames observed in %.3f s", key,
                          len(batch), sum(len(r.observations) for r in results),
                          sum(r.seconds for r in results))
                for (msg, entry), result in zip(batch, results, strict=True):
                    await self._deliver(msg, result)
                    if entry.live:
                        self.ledger.done(entry, result.driver_id, result.captured_until)
                    self._slots.release()
                self.release()
        finally:
            if self._lanes.get(key) is lane:
                del self._lanes[key]

    async def _deliver(self, msg: RawMessage, result: ProcessResult) -> None:
        """Publishes ``result``, or else a dead letter of ``msg``; retries while neither goes
        out."""
        backoff = RETRY_FIRST_S
        while True:
            try:
                await self._publish(result)
                return
            except Exception as exc:
                log.warning("%s[%d]@%d: results not published: %s", msg.topic, msg.partition,
                            msg.offset, clip_text(f"{type(exc).__name__}: {exc}"))
                failure = exc
            try:
                await self._publish(_set_aside(msg, "results not published", failure))
            except Exception as exc:
                log.warning("%s[%d]@%d: not even its dead letter was published (%s); "
                            "retrying in %.1f s", msg.topic, msg.partition, msg.offset,
                            clip_text(f"{type(exc).__name__}: {exc}"), backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_MAX_S)
                continue
            self.set_aside += 1
            return


def _set_aside(msg: RawMessage, what: str, exc: Exception) -> ProcessResult:
    """A dead letter of ``msg`` in place of its results."""
    letter = msg.dead_letter(DeadLetterReason.PROCESSING_ERROR,
                             f"{what}: {type(exc).__name__}: {exc}")
    return ProcessResult(dead_letters=[(letter, msg.value)])
