"""Webhooks: Standard Webhooks signing, the retrying dispatcher and the verifying receiver.

Everything HTTP here is real: aiohttp servers on 127.0.0.1 and the dispatcher's own client.
The delivery log is the real outbox: a fresh SQLite store per test (PostgreSQL in
test_webhooks_store.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import random
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr, ValidationError
from sqlalchemy import select

from models.errors import VigilError
from streams.errors import ConfigurationError
from streams.processes import free_port
from streams.schemas import Alert, AlertReason, Severity, alert_id
from streams.store import Database, DeliveryStatus, Store
from streams.store.deliveries import DeliveryRepository
from streams.store.models import ATTEMPTS
from streams.webhooks import (
    DeliveryLog,
    DeliveryOutcome,
    RetryPolicy,
    WebhookDeliveryError,
    WebhookDispatcher,
    WebhookEndpoint,
    WebhookError,
    WebhookSecretError,
    WebhookVerificationError,
    generate_secret,
    sign,
    sign_headers,
    signature_header,
    verify,
)
from streams.webhooks.receiver import create_receiver_app, run_receiver
from streams.webhooks.settings import WebhookSettings

# The Standard Webhooks reference test vector: standard-webhooks/standard-webhooks,
# libraries/python/tests/test_webhooks.py::test_sign_function (the same values appear in
# the JavaScript, PHP and Rust libraries' tests).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_PAYLOAD = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

# Tiny but real backoff: milliseconds of waiting, a sub-second horizon.
FAST = RetryPolicy(
    initial_delay_s=0.01, factor=2.0, max_delay_s=0.05, horizon_s=0.5, request_timeout_s=2.0,
    poll_s=0.05, breaker_cooldown_s=0.05,
)


def run(coro: Awaitable[Any]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout=10)

    return asyncio.run(bounded())


def make_alert(driver: str = "driver-7", started_at: float = 1_700_000_000.0) -> Alert:
    return Alert.model_validate(
        {
            "schema": "vigil.alert.v1",
            "alert_id": alert_id(driver, AlertReason.MICROSLEEP, started_at),
            "driver_id": driver,
            "vehicle_id": "truck-12",
            "reason": AlertReason.MICROSLEEP,
            "severity": Severity.CRITICAL,
            "started_at": started_at,
            "detected_at": started_at + 1.2,
            "message": "eyes closed for 1.2 s",
            "evidence": {"closed_for_s": 1.2, "perclos": 0.31},
        }
    )


_TEMPLATE = tempfile.TemporaryDirectory(prefix="vigil-outbox-")


def _migrated_template() -> Path:
    """A migrated SQLite database, made once per session and copied for each log."""
    path = Path(_TEMPLATE.name) / "template.db"
    if not path.exists():
        with Store(f"sqlite:///{path}") as store:
            store.migrate()
    return path


class OutboxLog(DeliveryRepository):
    """The real outbox (a fresh, migrated SQLite store) with views for the assertions."""

    def __init__(self) -> None:
        path = Path(tempfile.mkdtemp(dir=_TEMPLATE.name)) / "outbox.db"
        shutil.copy(_migrated_template(), path)
        super().__init__(Database(f"sqlite:///{path}"))

    def _select(self, query: Any) -> list[Any]:
        with self.db.engine.connect() as conn:
            return list(conn.execute(query).all())

    @property
    def attempts(self) -> list[tuple[str, str, int, int | None, str | None, float]]:
        rows = self._select(select(ATTEMPTS).order_by(ATTEMPTS.c.id))
        return [(r.alert_id, r.endpoint, r.attempt_no, r.status_code, r.error, r.duration_ms)
                for r in rows]

    def codes(self, endpoint: str) -> list[int | None]:
        return [a[3] for a in self.attempts if a[1] == endpoint]

    @property
    def claims(self) -> set[tuple[str, str]]:
        return {(d.alert_id, d.endpoint) for d in self.find()}

    @property
    def delivered(self) -> set[tuple[str, str]]:
        return {(d.alert_id, d.endpoint) for d in self.find(DeliveryStatus.DELIVERED)}

    @property
    def failed(self) -> dict[tuple[str, str], str]:
        return {(d.alert_id, d.endpoint): d.last_error or ""
                for d in self.find(DeliveryStatus.FAILED)}


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


Behaviour = int | Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def scripted_server(
    script: list[Behaviour], default: Behaviour = 200
) -> AsyncIterator[tuple[str, list[Received]]]:
    """A real HTTP server on 127.0.0.1 answering each POST with the next behaviour of
    ``script`` (a status code or a handler), then ``default``; records every request."""
    received: list[Received] = []
    pending = list(script)

    async def handle(request: web.Request) -> web.StreamResponse:
        received.append(Received(dict(request.headers), await request.read()))
        behaviour = pending.pop(0) if pending else default
        if isinstance(behaviour, int):
            return web.Response(status=behaviour, text=f"scripted {behaviour}")
        return await behaviour(request)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/hook", received
    finally:
        await runner.cleanup()



def endpoint(url: str, *secrets: str, name: str = "ops") -> WebhookEndpoint:
    return WebhookEndpoint.model_validate({"name": name, "url": url, "secrets": list(secrets)})


# --- signing --------------------------------------------------------------------------


def test_the_published_standard_webhooks_vector_reproduces() -> None:
    assert sign(SPEC_SECRET, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_PAYLOAD) == SPEC_SIGNATURE
    # the reference libraries accept the secret without its prefix too
    assert sign(SPEC_SECRET.removeprefix("whsec_"), SPEC_MSG_ID, SPEC_TIMESTAMP,
                SPEC_PAYLOAD) == SPEC_SIGNATURE
    headers = {"webhook-id": SPEC_MSG_ID, "webhook-timestamp": str(SPEC_TIMESTAMP),
               "webhook-signature": SPEC_SIGNATURE}
    verify([SPEC_SECRET], headers, SPEC_PAYLOAD, now=SPEC_TIMESTAMP + 10)
    # one bit off in the signature (the reference test's invalid case) fails
    bad = dict(headers, **{"webhook-signature": SPEC_SIGNATURE[:-2] + "A="})
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify([SPEC_SECRET], bad, SPEC_PAYLOAD, now=SPEC_TIMESTAMP)


def test_signature_matches_an_independent_hmac_computation() -> None:
    secret = generate_secret()
    body = make_alert().to_bytes()
    msg_id, ts = "a1b2c3", 1_700_000_123
    key = base64.b64decode(secret[len("whsec_"):])
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    assert sign(secret, msg_id, ts, body) == "v1," + base64.b64encode(mac).decode()


def test_generated_secrets_are_whsec_base64_of_enough_random_bytes() -> None:
    a, b = generate_secret(), generate_secret(24)
    assert a.startswith("whsec_") and b.startswith("whsec_")
    assert len(base64.b64decode(a[6:], validate=True)) == 32
    assert len(base64.b64decode(b[6:], validate=True)) == 24
    assert a != generate_secret()
    with pytest.raises(WebhookSecretError):
        generate_secret(16)


@pytest.mark.parametrize("bad", ["whsec_", "whsec_c2hvcnQ=", "whsec_not*base64*at*all!!", ""])
def test_unusable_secrets_are_refused_without_echoing_them(bad: str) -> None:
    with pytest.raises(WebhookSecretError) as info:
        sign(bad, "id", 1, b"{}")
    assert isinstance(info.value, VigilError) and isinstance(info.value, ConfigurationError)
    if bad.removeprefix("whsec_"):
        assert bad.removeprefix("whsec_") not in str(info.value)


def test_rotation_either_secret_verifies_a_doubly_signed_message() -> None:
    old, new, other = generate_secret(), generate_secret(), generate_secret()
    body, now = b'{"x": 1}', int(time.time())
    headers = sign_headers([new, old], "evt1", body, timestamp=now)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert headers["webhook-signature"] == signature_header([new, old], "evt1", now, body)
    verify([old], headers, body)
    verify([new], headers, body)
    verify(SecretStr(new), headers, body)
    verify([other, old], headers, body)
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify([other], headers, body)


def _signed(body: bytes = b'{"a": 1}', ts: int | None = None) -> tuple[str, dict[str, str]]:
    secret = generate_secret()
    return secret, sign_headers([secret], "msg1", body, timestamp=ts)


def test_verification_failures_say_why() -> None:
    body = b'{"a": 1}'
    secret, headers = _signed(body)
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify([secret], headers, b'{"a": 2}')  # tampered body
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify([generate_secret()], headers, body)  # wrong secret
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify([secret], dict(headers, **{"webhook-id": "msg2"}), body)  # id swapped
    stale = time.time() + 301
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify([secret], headers, body, now=stale)
    with pytest.raises(WebhookVerificationError, match="too new"):
        verify([secret], headers, body, now=time.time() - 301)
    verify([secret], headers, body, now=stale, tolerance_s=600)
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        partial = {k: v for k, v in headers.items() if k != name}
        with pytest.raises(WebhookVerificationError, match=f"missing header.*{name}"):
            verify([secret], partial, body)
    with pytest.raises(WebhookVerificationError, match="integer"):
        verify([secret], dict(headers, **{"webhook-timestamp": "hello"}), body)
    only_v1a = dict(headers, **{"webhook-signature": headers["webhook-signature"].replace(
        "v1,", "v1a,")})
    with pytest.raises(WebhookVerificationError, match="no v1 signature"):
        verify([secret], only_v1a, body)
    with pytest.raises(WebhookVerificationError, match=r"'\.'"):
        verify([secret], dict(headers, **{"webhook-id": "a.b"}), body)


def test_verification_is_case_insensitive_and_skips_foreign_entries() -> None:
    body = b"{}"
    secret, headers = _signed(body)
    shouting = {k.upper(): v for k, v in headers.items()}
    shouting["WEBHOOK-SIGNATURE"] = "v1a,AAAA v2,BBBB v1,!!! " + shouting["WEBHOOK-SIGNATURE"]
    verify([secret], shouting, body)


# --- retry policy ---------------------------------------------------------------------


def test_backoff_is_full_jitter_under_a_growing_capped_bound() -> None:
    policy = RetryPolicy(initial_delay_s=1.0, factor=2.0, max_delay_s=10.0)
    assert [policy.backoff_cap_s(n) for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 4, 8, 10, 10]
    assert policy.backoff_cap_s(10_000) == 10.0
    rng, same = random.Random(7), random.Random(7)
    delays = [policy.delay_s(n, rng) for n in range(1, 40)]
    assert delays == [policy.delay_s(n, same) for n in range(1, 40)]  # injectable, reproducible
    assert all(0.0 <= d <= policy.backoff_cap_s(n) for n, d in enumerate(delays, start=1))
    assert len({round(d, 6) for d in delays}) > 30  # jittered, not a fixed schedule


# --- dispatcher -----------------------------------------------------------------------


def test_memory_log_satisfies_the_protocol() -> None:
    assert isinstance(OutboxLog(), DeliveryLog)


def test_500_then_200_is_delivered_once_with_both_attempts_recorded() -> None:
    secret, alert, log = generate_secret(), make_alert(), OutboxLog()

    async def scenario() -> tuple[dict[str, DeliveryOutcome], list[Received]]:
        async with scripted_server([500, 200]) as (url, received):
            async with WebhookDispatcher([endpoint(url, secret)], log, FAST) as dispatcher:
                outcome = await dispatcher.deliver(alert)
            return outcome, received

    outcome, received = run(scenario())
    assert outcome == {"ops": DeliveryOutcome.DELIVERED}
    assert log.codes("ops") == [500, 200]
    assert [a[2] for a in log.attempts] == [1, 2]
    assert log.attempts[0][4] is not None and "500" in log.attempts[0][4]
    assert log.attempts[1][4] is None
    assert all(a[5] >= 0 for a in log.attempts)
    assert log.delivered == {(alert.alert_id, "ops")} and not log.failed
    assert len(received) == 2
    for request in received:  # each attempt is freshly signed, same id, the alert JSON
        assert request.body == alert.to_bytes()
        assert request.headers["webhook-id"] == alert.alert_id
        assert request.headers["Content-Type"] == "application/json"
        verify([secret], request.headers, request.body)
    assert Alert.model_validate_json(received[1].body) == alert


def test_an_already_claimed_alert_is_not_sent_again_after_a_restart() -> None:
    secret, alert, log = generate_secret(), make_alert(), OutboxLog()

    async def scenario() -> tuple[list[dict[str, DeliveryOutcome]], list[Received]]:
        async with scripted_server([]) as (url, received):
            outcomes = []
            for _ in range(2):  # two dispatcher lifetimes sharing one log = a restart
                async with WebhookDispatcher([endpoint(url, secret)], log, FAST) as d:
                    outcomes.append(await d.deliver(alert))
            return outcomes, received

    outcomes, received = run(scenario())
    assert outcomes == [{"ops": DeliveryOutcome.DELIVERED}, {"ops": DeliveryOutcome.SKIPPED}]
    assert len(received) == 1 and len(log.attempts) == 1


def test_the_same_alert_in_flight_twice_is_sent_once() -> None:
    log, alert = OutboxLog(), make_alert()

    async def scenario() -> tuple[list[dict[str, DeliveryOutcome]], list[Received]]:
        async with (
            scripted_server([500]) as (url, received),
            WebhookDispatcher([endpoint(url, generate_secret())], log, FAST) as d,
        ):
            outcomes = await asyncio.gather(d.deliver(alert), d.deliver(alert))
            outcomes.append(await d.deliver(alert))  # afterwards: delivered, not sent again
            return outcomes, received

    outcomes, received = run(scenario())
    assert [o["ops"] for o in outcomes] == [
        DeliveryOutcome.DELIVERED, DeliveryOutcome.DELIVERED, DeliveryOutcome.SKIPPED]
    assert len(received) == 2 and log.codes("ops") == [500, 200]


class SlowSecondLookup(OutboxLog):
    """An outbox whose second row lookup returns late, as a busy database's would."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    def get(self, alert_id: str, endpoint: str, /) -> Any:
        self.lookups += 1
        if self.lookups == 2:
            time.sleep(0.5)  # the first call's delivery finishes meanwhile
        return super().get(alert_id, endpoint)


def test_a_second_call_whose_lookup_is_late_still_gets_the_outcome() -> None:
    log, alert = SlowSecondLookup(), make_alert()

    async def scenario() -> list[dict[str, DeliveryOutcome]]:
        async with (
            scripted_server([]) as (url, _),
            WebhookDispatcher([endpoint(url, generate_secret())], log, FAST) as d,
        ):
            return list(await asyncio.gather(d.deliver(alert), d.deliver(alert)))

    assert run(scenario()) == [{"ops": DeliveryOutcome.DELIVERED}] * 2
    assert log.codes("ops") == [200]


@pytest.mark.parametrize("status", [400, 404, 410, 302])
def test_other_4xx_and_redirects_fail_at_once(status: int) -> None:
    log, alert = OutboxLog(), make_alert()

    async def scenario() -> tuple[dict[str, DeliveryOutcome], list[Received]]:
        async with (
            scripted_server([], default=status) as (url, received),
            WebhookDispatcher([endpoint(url, generate_secret())], log, FAST) as d,
        ):
            return await d.deliver(alert), received

    outcome, received = run(scenario())
    assert outcome == {"ops": DeliveryOutcome.FAILED}
    assert len(received) == 1 and log.codes("ops") == [status]
    assert not log.delivered
    assert f"HTTP {status}" in log.failed[(alert.alert_id, "ops")]
    assert "permanent" in log.failed[(alert.alert_id, "ops")]


@pytest.mark.parametrize("status", [502, 503, 408, 429])
def test_transient_statuses_are_retried(status: int) -> None:
    log = OutboxLog()

    async def too_many(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers={"Retry-After": "0"})

    async def scenario() -> dict[str, DeliveryOutcome]:
        async with (
            scripted_server([too_many]) as (url, _),
            WebhookDispatcher([endpoint(url, generate_secret())], log, FAST) as d,
        ):
            return await d.deliver(make_alert())

    assert run(scenario()) == {"ops": DeliveryOutcome.DELIVERED}
    assert log.codes("ops") == [status, 200]


def test_a_stalling_receiver_is_retried_until_the_horizon_then_failed() -> None:
    log, alert = OutboxLog(), make_alert()
    policy = RetryPolicy(initial_delay_s=0.01, factor=2.0, max_delay_s=0.05, horizon_s=0.5,
                         request_timeout_s=0.1)

    async def scenario() -> tuple[dict[str, DeliveryOutcome], int]:
        release = asyncio.Event()

        async def stall(request: web.Request) -> web.StreamResponse:
            await release.wait()
            return web.Response(status=200)

        async with scripted_server([], default=stall) as (url, received):
            try:
                async with WebhookDispatcher([endpoint(url, generate_secret())], log,
                                             policy) as d:
                    outcome = await d.deliver(alert)
            finally:
                release.set()
            return outcome, len(received)

    outcome, requests = run(scenario())
    assert outcome == {"ops": DeliveryOutcome.FAILED}
    assert requests >= 2 and len(log.attempts) == requests
    assert all(a[3] is None and a[4] is not None and "timed out" in a[4] for a in log.attempts)
    assert "gave up" in log.failed[(alert.alert_id, "ops")]
    assert not log.delivered


def test_connection_errors_are_retried_then_failed() -> None:
    log, alert = OutboxLog(), make_alert()
    url = f"http://127.0.0.1:{free_port()}/nobody-listens"

    async def scenario() -> dict[str, DeliveryOutcome]:
        async with WebhookDispatcher([endpoint(url, generate_secret())], log, FAST) as d:
            return await d.deliver(alert)

    assert run(scenario()) == {"ops": DeliveryOutcome.FAILED}
    assert len(log.attempts) >= 2 and all(a[3] is None for a in log.attempts)
    assert "Connect" in log.failed[(alert.alert_id, "ops")]


def test_a_slow_endpoint_does_not_hold_back_the_others() -> None:
    log, alert = OutboxLog(), make_alert()
    policy = FAST.model_copy(update={"request_timeout_s": 8.0})

    async def scenario() -> tuple[dict[str, DeliveryOutcome], list[bool]]:
        fast_got_it = asyncio.Event()
        slow_saw: list[bool] = []

        async def slow(request: web.Request) -> web.StreamResponse:
            # Answers only once the other endpoint has its copy: a dispatcher that served
            # endpoints one after another would stall here for the full 5 s.
            try:
                await asyncio.wait_for(fast_got_it.wait(), timeout=5)
                slow_saw.append(True)
            except TimeoutError:
                slow_saw.append(False)
            return web.Response(status=200)

        async def fast(request: web.Request) -> web.StreamResponse:
            fast_got_it.set()
            return web.Response(status=204)

        async with scripted_server([], default=slow) as (slow_url, _), \
                scripted_server([], default=fast) as (fast_url, _):
            endpoints = [endpoint(slow_url, generate_secret(), name="slow"),
                         endpoint(fast_url, generate_secret(), name="fast")]
            async with WebhookDispatcher(endpoints, log, policy) as d:
                return await d.deliver(alert), slow_saw

    outcome, slow_saw = run(scenario())
    assert outcome == {"slow": DeliveryOutcome.DELIVERED, "fast": DeliveryOutcome.DELIVERED}
    assert slow_saw == [True]


def test_the_dispatcher_signs_with_every_configured_secret() -> None:
    old, new = generate_secret(), generate_secret()

    async def scenario() -> list[Received]:
        async with scripted_server([]) as (url, received):
            async with WebhookDispatcher([endpoint(url, new, old)], OutboxLog(), FAST) as d:
                await d.deliver(make_alert())
            return received

    (request,) = run(scenario())
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    verify([old], request.headers, request.body)
    verify([new], request.headers, request.body)


def test_secrets_and_urls_stay_out_of_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    secret = generate_secret()

    async def scenario() -> None:
        async with scripted_server([500]) as (url, _):
            ep = endpoint(url + "/token-abc123", secret)
            assert "token-abc123" not in repr(ep) and secret not in repr(ep)
            async with WebhookDispatcher([ep], OutboxLog(), FAST) as d:
                await d.deliver(make_alert())

    with caplog.at_level(logging.DEBUG, logger="streams.webhooks"):
        run(scenario())
    text = caplog.text
    assert "delivered" in text
    assert secret not in text and secret.removeprefix("whsec_") not in text
    assert "token-abc123" not in text and "v1," not in text


def test_a_malformed_answer_does_not_leak_the_endpoint_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 13, defect 8: the HTTP client's error text quotes the URL, token included; it
    went into the attempt and give-up log lines and the stored last_error (shown on the
    health page)."""
    log, alert, token = OutboxLog(), make_alert(), "tok-5ecret-9f3a"

    async def scenario() -> dict[str, DeliveryOutcome]:
        async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            request = await reader.readuntil(b"\r\n\r\n")
            # A broken proxy echoing the request line (path and query) as its status line.
            writer.write(request.split(b"\r\n", 1)[0] + b"\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(garbage, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}/hooks/vigil?token={token}"
        try:
            async with WebhookDispatcher([endpoint(url, generate_secret())], log, FAST) as d:
                return await d.deliver(alert)
        finally:
            server.close()

    with caplog.at_level(logging.DEBUG, logger="streams.webhooks"):
        outcome = run(scenario())
    assert outcome == {"ops": DeliveryOutcome.FAILED}
    attempt_lines = [r for r in caplog.records if "attempt 1 failed" in r.getMessage()]
    give_up = [r for r in caplog.records if r.levelno == logging.WARNING
               and "not delivered" in r.getMessage()]
    assert attempt_lines and give_up  # the lines that leaked are there...
    assert token not in caplog.text  # ...without the token
    assert "127.0.0.1" in give_up[0].getMessage()  # but still saying where it went wrong
    stored = log.get(alert.alert_id, "ops")
    assert stored is not None and stored.last_error is not None
    assert token not in stored.last_error
    assert all(token not in (a[4] or "") for a in log.attempts)


def test_a_failing_delivery_log_raises_after_the_other_endpoints_finish() -> None:
    class BrokenLog(OutboxLog):
        def record_attempt(self, alert_id: str, endpoint: str, *args: Any) -> None:
            if endpoint == "broken":
                raise RuntimeError("database is down")
            super().record_attempt(alert_id, endpoint, *args)

    log = BrokenLog()

    async def scenario() -> None:
        async with scripted_server([]) as (url, _):
            endpoints = [endpoint(url, generate_secret(), name="broken"),
                         endpoint(url, generate_secret(), name="fine")]
            async with WebhookDispatcher(endpoints, log, FAST) as d:
                await d.deliver(make_alert())

    with pytest.raises(WebhookDeliveryError, match="broken: RuntimeError: database is down"):
        run(scenario())
    assert {e for _, e in log.delivered} == {"fine"}


def test_a_delivery_interrupted_by_shutdown_is_sent_by_the_next_dispatcher() -> None:
    """Issue 13, defect 9: retries lived only in the process, so a restart dropped them and
    left the rows pending forever. Now the outbox row outlives the dispatcher."""
    log, alert, secret = OutboxLog(), make_alert(), generate_secret()

    async def scenario() -> tuple[DeliveryStatus | None, dict[str, DeliveryOutcome],
                                  list[Received]]:
        release = asyncio.Event()

        async def stall(request: web.Request) -> web.StreamResponse:
            await release.wait()
            return web.Response(status=200)

        async with scripted_server([stall]) as (url, received):
            first = WebhookDispatcher([endpoint(url, secret)], log, FAST)
            await asyncio.to_thread(first.enqueue, alert)
            first.start()
            while not received:
                await asyncio.sleep(0.01)
            await first.aclose(grace_s=0)  # the process stops mid-request
            release.set()
            between = log.get(alert.alert_id, "ops")
            async with WebhookDispatcher([endpoint(url, secret)], log, FAST) as second:
                outcome = await second.deliver(alert)  # the replayed alert finds its row
            return None if between is None else between.status, outcome, received

    between, outcome, received = run(scenario())
    assert between == DeliveryStatus.PENDING  # not failed, not lost
    assert outcome == {"ops": DeliveryOutcome.DELIVERED}
    assert len(received) == 2
    assert {r.headers["webhook-id"] for r in received} == {alert.alert_id}  # idempotency key
    assert log.delivered == {(alert.alert_id, "ops")}


def test_pending_deliveries_are_sent_after_a_restart_without_any_new_alert() -> None:
    log, secret = OutboxLog(), generate_secret()
    alerts = [make_alert(started_at=1_700_000_000.0 + i) for i in range(3)]
    patient = FAST.model_copy(update={"horizon_s": 60.0})

    async def scenario() -> list[Received]:
        async with (
            scripted_server([], default=503) as (url, received),
            WebhookDispatcher([endpoint(url, secret)], log, patient) as d,
        ):
            for alert in alerts:
                await asyncio.to_thread(d.enqueue, alert)
            d.start()
            while len(received) < 3:
                await asyncio.sleep(0.01)
        async with (
            scripted_server([]) as (url, received),  # the receiver is back
            WebhookDispatcher([endpoint(url, secret)], log, patient) as d,
        ):
            d.start()  # nothing enqueued in this lifetime: the outbox has it all
            while len(log.delivered) < 3:
                await asyncio.sleep(0.02)
            return received

    received = run(scenario())
    assert sorted(r.headers["webhook-id"] for r in received) == sorted(
        a.alert_id for a in alerts)  # each once
    for request in received:
        verify([secret], request.headers, request.body)


def test_a_failing_endpoint_opens_its_circuit_then_one_probe_closes_it() -> None:
    log, secret = OutboxLog(), generate_secret()
    policy = FAST.model_copy(update={"breaker_failures": 2, "breaker_cooldown_s": 1.0,
                                     "horizon_s": 60.0})
    alerts = [make_alert(started_at=1_700_000_000.0 + i) for i in range(3)]

    async def scenario() -> tuple[int, int, int]:
        calls: list[int] = []
        alongside_probe: list[int] = []

        async def answer(request: web.Request) -> web.StreamResponse:
            calls.append(1)
            if len(calls) <= 2:
                return web.Response(status=503)
            if len(calls) == 3:  # the probe: does anything else arrive meanwhile?
                await asyncio.sleep(0.3)
                alongside_probe.append(len(calls) - 3)
            return web.Response(status=200)

        async with (
            scripted_server([], default=answer) as (url, _),
            WebhookDispatcher([endpoint(url, secret)], log, policy) as d,
        ):
            await asyncio.to_thread(d.enqueue, alerts[0])
            d.start()
            while len(log.codes("ops")) < 2:  # one delivery, failed twice: circuit open
                await asyncio.sleep(0.01)
            for alert in alerts[1:]:
                await asyncio.to_thread(d.enqueue, alert)
            d.wake()
            await asyncio.sleep(0.5)  # inside the 1 s cool-down: nothing is tried
            while_open = len(calls)
            while len(log.delivered) < 3:
                await asyncio.sleep(0.02)
        return while_open, alongside_probe[0], len(calls)

    while_open, alongside_probe, total = run(scenario())
    assert while_open == 2  # three alerts due, but the circuit is open
    assert alongside_probe == 0  # half-open: one probe alone
    assert total == 5  # the probe closed it: the two others followed


def test_the_default_retry_schedule_spans_at_least_72_hours() -> None:
    policy = RetryPolicy()
    assert policy.horizon_s >= 72 * 3600
    assert policy.max_delay_s <= 3600 and policy.lease_s > policy.request_timeout_s


def test_an_alert_id_that_cannot_be_a_webhook_id_is_refused_before_claiming() -> None:
    log = OutboxLog()
    alert = make_alert().model_copy(update={"alert_id": "a.b"})

    async def scenario() -> None:
        async with WebhookDispatcher([endpoint("http://127.0.0.1:9/h", generate_secret())],
                                     log, FAST) as d:
            await d.deliver(alert)

    with pytest.raises(WebhookError, match="webhook-id"):
        run(scenario())
    assert not log.claims


def test_endpoint_configuration_is_validated() -> None:
    with pytest.raises(ValidationError) as info:
        endpoint("http://127.0.0.1/h", "whsec_c2hvcnQtYnV0LXNlY3JldA==")
    assert "c2hvcnQtYnV0LXNlY3JldA" not in str(info.value)
    for url in ("ftp://example.com/h", "not a url", ""):
        with pytest.raises(ValidationError, match="http"):
            endpoint(url, generate_secret())
    with pytest.raises(ValidationError):
        endpoint("http://127.0.0.1/h")  # no secret
    ep = endpoint("http://127.0.0.1:8080/h?k=1", generate_secret())
    assert ep.url.get_secret_value() == "http://127.0.0.1:8080/h?k=1"
    assert "k=1" not in repr(ep)
    ep = endpoint("http://127.0.0.1/h", generate_secret())
    with pytest.raises(ConfigurationError, match="unique"):
        WebhookDispatcher([ep, ep], OutboxLog())


def test_settings_read_endpoints_and_retry_policy_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = generate_secret()
    monkeypatch.setenv("VIGIL_WEBHOOKS__ENDPOINTS", json.dumps(
        [{"name": "fleet-ops", "url": "https://ops.example/hooks", "secrets": [secret]}]))
    monkeypatch.setenv("VIGIL_WEBHOOKS__RETRY__HORIZON_S", "7200")
    monkeypatch.setenv("VIGIL_WEBHOOKS__RETRY__REQUEST_TIMEOUT_S", "20")
    settings = WebhookSettings()
    (ep,) = settings.endpoints
    assert ep.name == "fleet-ops" and ep.secrets[0].get_secret_value() == secret
    assert settings.retry.horizon_s == 7200 and settings.retry.request_timeout_s == 20
    assert settings.retry.initial_delay_s == RetryPolicy().initial_delay_s
    assert secret not in repr(settings)
    assert settings.dispatcher(OutboxLog()).endpoints == (ep,)

    monkeypatch.setenv("VIGIL_WEBHOOKS__ENDPOINTS", json.dumps(
        [{"name": "a", "url": "https://x.example", "secrets": [secret]}] * 2))
    with pytest.raises(ValidationError, match="unique") as info:
        WebhookSettings()
    assert secret.removeprefix("whsec_") not in str(info.value)


# --- receiver -------------------------------------------------------------------------


def test_the_receiver_rejects_unsigned_posts_and_accepts_dispatcher_deliveries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret, alert, log = generate_secret(), make_alert(), OutboxLog()
    got: list[tuple[dict[str, Any], Mapping[str, str]]] = []

    async def scenario() -> tuple[list[tuple[int, str]], dict[str, DeliveryOutcome],
                                  dict[str, DeliveryOutcome]]:
        answers = []
        async with run_receiver([secret], lambda p, h: got.append((p, h))) as url, \
                aiohttp.ClientSession() as http:
            body = alert.to_bytes()
            async with http.post(url, data=body) as resp:  # unsigned
                answers.append((resp.status, await resp.text()))
            forged = sign_headers([generate_secret()], alert.alert_id, body)
            async with http.post(url, data=body, headers=forged) as resp:  # wrong secret
                answers.append((resp.status, await resp.text()))
            async with WebhookDispatcher([endpoint(url, secret)], log, FAST) as d:
                first = await d.deliver(alert)
            # a second log (say, a store wiped by mistake) sends again: the receiver dedupes
            async with WebhookDispatcher([endpoint(url, secret)], OutboxLog(), FAST) as d:
                again = await d.deliver(alert)
        return answers, first, again

    with caplog.at_level(logging.INFO, logger="streams.webhooks.receiver"):
        answers, first, again = run(scenario())
    assert f"delivery {alert.alert_id} microsleep driver=driver-7" in caplog.text
    assert answers[0][0] == 401 and "missing header" in answers[0][1]
    assert answers[1][0] == 401 and "no matching signature" in answers[1][1]
    assert first == again == {"ops": DeliveryOutcome.DELIVERED}
    assert len(got) == 1
    payload, headers = got[0]
    assert payload["alert_id"] == alert.alert_id and payload["driver_id"] == "driver-7"
    assert headers["webhook-id"] == alert.alert_id
    assert log.codes("ops") == [200]


def test_the_receiver_answers_500_when_its_callback_fails_so_the_sender_retries() -> None:
    secret, log = generate_secret(), OutboxLog()
    calls: list[str] = []

    def flaky(payload: dict[str, Any], headers: Mapping[str, str]) -> None:
        calls.append(payload["alert_id"])
        if len(calls) == 1:
            raise RuntimeError("downstream busy")

    async def scenario() -> dict[str, DeliveryOutcome]:
        async with (
            run_receiver([secret], flaky) as url,
            WebhookDispatcher([endpoint(url, secret)], log, FAST) as d,
        ):
            return await d.deliver(make_alert())

    assert run(scenario()) == {"ops": DeliveryOutcome.DELIVERED}
    assert log.codes("ops") == [500, 200] and len(calls) == 2


def test_the_receiver_app_refuses_bad_secrets_at_start() -> None:
    with pytest.raises(WebhookSecretError):
        create_receiver_app(["whsec_c2hvcnQ="])
