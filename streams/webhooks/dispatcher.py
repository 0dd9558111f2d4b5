"""Delivers alerts to webhook endpoints through a durable outbox: signed, retried for days,
every attempt recorded.

Each alert's delivery to each endpoint is a row in the delivery log (the store's
``webhook_deliveries`` table) before the alert is acknowledged on its topic. A loop in every
dispatcher process leases the rows that are due (several processes share the work safely),
POSTs the alert JSON with Standard Webhooks headers (``webhook-id`` = the alert id, the same on
every retry, so receivers can deduplicate), and records the outcome: delivered, failed for
good (4xx other than 408/425/429, redirects, or the retry horizon passed), or due again after
a full-jitter exponential backoff. Pending deliveries live in the database, so a restart or a
crash of any process loses none; a delivered one is never sent again. Each endpoint has a
circuit breaker: after a run of failures it is left alone for a cool-down, then one delivery
probes it.

The delivery log is synchronous (a database); its calls run in a worker thread.
Endpoint URLs (which often embed tokens) and secrets are never logged; endpoints are named, and
error texts pass through :func:`streams.redaction.redact` before they are logged or stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from types import TracebackType
from typing import Protocol, runtime_checkable

import aiohttp
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from streams.errors import ConfigurationError
from streams.observability import (
    WEBHOOK_ATTEMPT_SECONDS,
    WEBHOOK_ATTEMPTS,
    WEBHOOK_CIRCUIT_OPEN,
    WEBHOOK_FAILED,
)
from streams.redaction import redact
from streams.schemas import Alert
from streams.store.errors import StoreUnavailableError
from streams.store.results import Delivery, DueDelivery
from streams.webhooks.errors import WebhookDeliveryError, WebhookError, WebhookSecretError
from streams.webhooks.signing import secret_key, sign_headers, valid_msg_id

log = logging.getLogger(__name__)

USER_AGENT = "Vigil-Webhooks/1"
CONTENT_TYPE = "application/json"
RETRYABLE_STATUS = frozenset({408, 425, 429})  # and every 5xx
_ERROR_SNIPPET_BYTES = 200
_HTTP_URL: TypeAdapter[HttpUrl] = TypeAdapter(HttpUrl)


class WebhookEndpoint(BaseModel):
    """One receiver. ``secrets``: the current signing secret first; during a rotation add the
    new one and keep the old one until the receiver has switched (each signs the delivery)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str = Field(min_length=1, max_length=128)
    url: SecretStr = Field(description="http(s) URL; may embed a token, never logged")
    secrets: list[SecretStr] = Field(min_length=1)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: SecretStr) -> SecretStr:
        try:
            _HTTP_URL.validate_python(url.get_secret_value())
        except ValidationError:
            raise ValueError("not an http(s) URL") from None
        return url

    @field_validator("secrets")
    @classmethod
    def _usable(cls, secrets: list[SecretStr]) -> list[SecretStr]:
        for i, secret in enumerate(secrets):
            try:
                secret_key(secret)
            except WebhookSecretError as exc:
                raise ValueError(f"secret #{i}: {exc}") from None
        return secrets


class RetryPolicy(BaseModel):
    """Full-jitter exponential backoff: the wait after attempt n is uniform in
    [0, min(max_delay_s, initial_delay_s * factor**(n-1))]; no attempt starts after
    ``horizon_s`` from the first one (72 hours by default, as Standard Webhooks and Svix
    retry for days). ``request_timeout_s`` bounds each attempt.

    The circuit breaker: after ``breaker_failures`` failed attempts in a row an endpoint is
    left alone for ``breaker_cooldown_s``, then one delivery probes it (half-open). The outbox
    is read every ``poll_s`` (sooner when this process knows a retry is due); each endpoint
    has at most ``max_in_flight`` requests at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    initial_delay_s: float = Field(default=5.0, gt=0)
    factor: float = Field(default=2.0, ge=1)
    max_delay_s: float = Field(default=3600.0, gt=0)
    horizon_s: float = Field(default=72 * 3600.0, ge=0)
    request_timeout_s: float = Field(default=15.0, gt=0)
    breaker_failures: int = Field(default=5, ge=1)
    breaker_cooldown_s: float = Field(default=60.0, gt=0)
    poll_s: float = Field(default=5.0, gt=0)
    max_in_flight: int = Field(default=10, ge=1)

    @property
    def lease_s(self) -> float:
        """How long a leased delivery is left to its dispatcher: well past one attempt."""
        return 2 * self.request_timeout_s + 30.0

    def backoff_cap_s(self, attempt_no: int) -> float:
        """Upper bound of the wait after attempt ``attempt_no`` (1-based)."""
        try:
            cap = self.initial_delay_s * self.factor ** max(attempt_no - 1, 0)
        except OverflowError:
            return self.max_delay_s
        return min(cap, self.max_delay_s)

    def delay_s(self, attempt_no: int, rng: random.Random | None = None) -> float:
        """The jittered wait after attempt ``attempt_no``; ``rng`` makes it reproducible."""
        uniform = rng.uniform if rng is not None else random.uniform
        return uniform(0.0, self.backoff_cap_s(attempt_no))


class DeliveryOutcome(StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"
    SKIPPED = "skipped"  # final before (delivered, or failed: see ``vigil webhooks redeliver``)


@runtime_checkable
class DeliveryLog(Protocol):
    """The outbox (``store.deliveries`` implements it). Synchronous; called from a worker
    thread. See ``streams.store.deliveries.DeliveryRepository``."""

    def enqueue(self, alert_id: str, endpoints: Sequence[str], payload: bytes, /) -> int: ...

    def claim_due(self, endpoint: str, limit: int, /, *, lease_s: float) -> list[DueDelivery]: ...

    def record_attempt(
        self,
        alert_id: str,
        endpoint: str,
        attempt_no: int,
        status_code: int | None,
        error: str | None,
        duration_ms: int,
        /,
    ) -> None: ...

    def reschedule(self, alert_id: str, endpoint: str, next_attempt_at: float, /) -> None: ...

    def release(self, alert_id: str, endpoint: str, /) -> None: ...

    def mark_delivered(self, alert_id: str, endpoint: str, /) -> None: ...

    def mark_failed(self, alert_id: str, endpoint: str, error: str, /) -> None: ...

    def get(self, alert_id: str, endpoint: str, /) -> Delivery | None: ...


@dataclass(frozen=True)
class _Attempt:
    status: int | None
    error: str | None  # redacted
    duration_ms: int
    retryable: bool
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - now, 0.0)


@dataclass
class _Circuit:
    """One endpoint's breaker: closed below ``threshold`` failures in a row; then open until
    ``open_until`` (monotonic); then half-open, letting one probe through."""

    threshold: int
    cooldown_s: float
    failures: int = 0
    open_until: float = 0.0
    probing: bool = False

    def allowance(self, now: float, room: int) -> int:
        if self.failures < self.threshold:
            return room
        if now < self.open_until or self.probing:
            return 0
        return min(room, 1)

    def record(self, ok: bool, now: float) -> bool:
        """Counts an outcome -> True when this one opened a closed circuit (a failed probe
        opens it again quietly)."""
        self.probing = False
        if ok:
            self.failures = 0
            return False
        self.failures += 1
        if self.failures >= self.threshold:
            self.open_until = now + self.cooldown_s
        return self.failures == self.threshold


Key = tuple[str, str]  # (alert id, endpoint name)


class WebhookDispatcher:
    """Delivers the outbox rows of ``endpoints`` from ``log``.

    :meth:`enqueue` writes an alert's deliveries; :meth:`run` (or :meth:`start`) runs the
    loop that sends what is due until :meth:`aclose`. :meth:`deliver` does both and waits for
    the alert's outcomes (tests, one-off sends). Use as an async context manager (or call
    :meth:`aclose`). Without a ``session`` the dispatcher opens its own aiohttp session on
    first use and closes it in ``aclose``. ``rng`` feeds the backoff jitter; ``clock`` gives
    the ``webhook-timestamp`` and the schedule.
    """

    def __init__(
        self,
        endpoints: Sequence[WebhookEndpoint],
        log: DeliveryLog,
        policy: RetryPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        names = [e.name for e in endpoints]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigurationError(f"webhook endpoint names must be unique: {duplicates}")
        self.endpoints = tuple(endpoints)
        self.log = log
        self.policy = policy or RetryPolicy()
        self._session = session
        self._own_session = session is None
        self._rng = rng
        self._clock = clock
        self._circuits = {
            n: _Circuit(self.policy.breaker_failures, self.policy.breaker_cooldown_s)
            for n in names
        }
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._sending: dict[Key, asyncio.Task[None]] = {}
        self._waiters: dict[Key, asyncio.Future[DeliveryOutcome]] = {}
        self._next_due = math.inf  # the earliest retry this process scheduled
        self._closed = False

    async def __aenter__(self) -> WebhookDispatcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or (self._own_session and self._session.closed):
            self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
            self._own_session = True
        return self._session

    # --- the outbox ---------------------------------------------------------------------

    def enqueue(self, alert: Alert) -> int:
        """Writes ``alert``'s delivery to every endpoint into the outbox -> rows added (a
        replayed alert adds none). Synchronous (a database write): run it in a thread, then
        :meth:`wake` the loop. Raises WebhookError for an alert id that cannot be a
        webhook-id, and the log's errors (a database outage) as they are."""
        if not valid_msg_id(alert.alert_id):
            raise WebhookError(f"alert id {alert.alert_id!r} cannot be a webhook-id "
                               "(empty, or contains '.' or whitespace)")
        if not self.endpoints:
            return 0
        return self.log.enqueue(
            alert.alert_id, [e.name for e in self.endpoints], alert.to_bytes()
        )

    def wake(self) -> None:
        """Tells the loop that something may be due now (call on the loop's thread)."""
        self._wake.set()

    def start(self) -> None:
        """Starts the delivery loop on the running event loop (once; a no-op without
        endpoints)."""
        if self._closed:
            raise WebhookError("the dispatcher is closed")
        if self.endpoints and self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(
                self._loop(), name="webhook-dispatcher")

    async def run(self) -> None:
        """Delivers until cancelled, then closes (what is still pending stays in the outbox
        for the next start)."""
        self.start()
        try:
            if self._loop_task is not None:
                await self._loop_task
            else:
                await asyncio.Event().wait()  # no endpoints: nothing to do but wait
        finally:
            await asyncio.shield(self.aclose())

    async def deliver(self, alert: Alert) -> dict[str, DeliveryOutcome]:
        """Enqueues ``alert`` and waits until each endpoint's delivery is final (which may
        take up to the retry horizon) -> each endpoint's outcome; SKIPPED where it was final
        before. A failing delivery log raises :class:`WebhookDeliveryError`."""
        # The waiters exist before the row does: the running loop may claim and finish the
        # delivery while this call is still reading the row back.
        loop = asyncio.get_running_loop()
        waits: dict[str, asyncio.Future[DeliveryOutcome]] = {}
        fresh: list[Key] = []
        for ep in self.endpoints:
            key = (alert.alert_id, ep.name)
            if key not in self._waiters:
                self._waiters[key] = loop.create_future()
                fresh.append(key)
            waits[ep.name] = self._waiters[key]
        try:
            await asyncio.to_thread(self.enqueue, alert)
        except Exception as exc:
            error = exc if isinstance(exc, WebhookError) else WebhookDeliveryError(
                f"alert {alert.alert_id}: could not enqueue: {redact(str(exc))}")
            for key in fresh:
                fut = self._waiters.get(key)
                self._resolve(key, error)
                if fut is not None and fut.done():
                    fut.exception()  # raised below: no "never retrieved" noise
            if error is exc:
                raise
            raise error from exc
        for key in fresh:
            row = await asyncio.to_thread(self.log.get, *key)
            # Final, yet nobody here is sending it: it was final before this call.
            if row is not None and row.status != "pending" and key not in self._sending:
                self._resolve(key, DeliveryOutcome.SKIPPED)
        if waits:
            self.start()
            self.wake()
            done = await asyncio.gather(*(asyncio.shield(f) for f in waits.values()),
                                        return_exceptions=True)
            errors = [r for r in done if isinstance(r, BaseException)]
            if errors:  # raised once every endpoint has its outcome
                raise errors[0]
            return dict(zip(waits, done, strict=True))  # type: ignore[arg-type]
        return {}

    @property
    def pending(self) -> int:
        """Deliveries this process is sending right now."""
        return len(self._sending)

    async def aclose(self, grace_s: float = 0.0) -> None:
        """Stops the loop, waits up to ``grace_s`` for the requests in flight, cancels the
        rest (their deliveries stay pending, released for the next dispatcher), and closes
        the session the dispatcher opened."""
        self._closed = True
        if self._loop_task is not None and not self._loop_task.done():
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        if self._sending:
            _, still = await asyncio.wait(set(self._sending.values()),
                                          timeout=max(grace_s, 0.0))
            for task in still:
                task.cancel()
            if still:
                await asyncio.gather(*still, return_exceptions=True)
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(WebhookError("dispatcher closed before a final outcome; "
                                               "the delivery stays pending in the outbox"))
                fut.exception()  # whoever waited may be gone: no "never retrieved" noise
        self._waiters.clear()
        if self._own_session and self._session is not None and not self._session.closed:
            await self._session.close()

    # --- the loop -----------------------------------------------------------------------

    async def _loop(self) -> None:
        policy = self.policy
        while True:
            self._wake.clear()
            try:
                await self._claim_due()
            except StoreUnavailableError as exc:
                log.warning("webhook outbox unreachable, trying again in %g s: %s",
                            policy.poll_s, redact(str(exc)))
            except Exception:
                log.exception("webhook outbox: reading due deliveries failed; trying again "
                              "in %g s", policy.poll_s)
            wait = min(policy.poll_s, max(self._next_due - self._clock(), 0.0))
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # lands as the wake-up does, and aclose() would then wait for the loop forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def _claim_due(self) -> None:
        if self._next_due <= self._clock():
            self._next_due = math.inf  # due now: claimed below, or by another dispatcher
        now = time.monotonic()
        for ep in self.endpoints:
            busy = sum(1 for (_, name) in self._sending if name == ep.name)
            circuit = self._circuits[ep.name]
            room = circuit.allowance(now, self.policy.max_in_flight - busy)
            if room <= 0:
                continue
            rows = await asyncio.to_thread(self.log.claim_due, ep.name, room,
                                           lease_s=self.policy.lease_s)
            if rows and circuit.failures >= circuit.threshold:
                circuit.probing = True
                log.info("webhook endpoint %s: circuit half-open, probing with one delivery",
                         ep.name)
            for row in rows:
                key = (row.alert_id, ep.name)
                task = asyncio.get_running_loop().create_task(
                    self._send(ep, row), name=f"webhook-{row.alert_id}-{ep.name}")
                self._sending[key] = task
                task.add_done_callback(partial(self._sent, key))

    def _sent(self, key: Key, _task: asyncio.Task[None]) -> None:
        self._sending.pop(key, None)

    def _resolve(self, key: Key, outcome: DeliveryOutcome | BaseException) -> None:
        fut = self._waiters.pop(key, None)
        if fut is None or fut.done():
            return
        if isinstance(outcome, BaseException):
            fut.set_exception(outcome)
        else:
            fut.set_result(outcome)

    async def _send(self, endpoint: WebhookEndpoint, row: DueDelivery) -> None:
        key = (row.alert_id, endpoint.name)
        try:
            outcome = await self._attempt_and_record(endpoint, row)
        except asyncio.CancelledError:
            # Shutting down mid-request: the delivery stays pending; free it for whoever
            # starts next instead of waiting out the lease.
            try:
                await asyncio.shield(asyncio.to_thread(self.log.release, *key))
            except Exception as exc:
                log.warning("webhook alert %s -> %s: lease not released (%s); it runs out "
                            "by itself", row.alert_id, endpoint.name, redact(str(exc)))
            raise
        except Exception as exc:
            # The lease runs out and the delivery is tried again (the receiver dedupes on
            # webhook-id should this attempt have reached it).
            log.error("webhook alert %s -> %s: delivery bookkeeping failed: %s",
                      row.alert_id, endpoint.name, redact(f"{type(exc).__name__}: {exc}"))
            self._resolve(key, WebhookDeliveryError(
                f"alert {row.alert_id}: delivery bookkeeping failed for {endpoint.name}: "
                f"{redact(f'{type(exc).__name__}: {exc}')}"))
            return
        if outcome is not None:
            self._resolve(key, outcome)

    async def _attempt_and_record(
        self, endpoint: WebhookEndpoint, row: DueDelivery
    ) -> DeliveryOutcome | None:
        """One attempt of a leased delivery, recorded -> its final outcome, or None when it
        is due again later."""
        alert_id, name, policy = row.alert_id, endpoint.name, self.policy
        attempt_no = row.attempts + 1
        attempt = await self._attempt(alert_id, row.payload, endpoint)
        circuit = self._circuits[name]
        if circuit.record(attempt.ok, time.monotonic()):
            log.warning("webhook endpoint %s: %d failed attempts in a row; circuit open for "
                        "%g s", name, circuit.failures, policy.breaker_cooldown_s)
        WEBHOOK_ATTEMPTS.labels(name, "delivered" if attempt.ok else
                                "retryable" if attempt.retryable else "permanent").inc()
        WEBHOOK_ATTEMPT_SECONDS.labels(name).observe(attempt.duration_ms / 1000.0)
        WEBHOOK_CIRCUIT_OPEN.labels(name).set(float(circuit.failures >= circuit.threshold))
        await asyncio.to_thread(
            self.log.record_attempt, alert_id, name, attempt_no,
            attempt.status, attempt.error, attempt.duration_ms,
        )
        if attempt.ok:
            await asyncio.to_thread(self.log.mark_delivered, alert_id, name)
            log.info("webhook alert %s -> %s: delivered (attempt %d, HTTP %s)",
                     alert_id, name, attempt_no, attempt.status)
            return DeliveryOutcome.DELIVERED
        error = attempt.error or f"HTTP {attempt.status}"
        if not attempt.retryable:
            return await self._give_up(alert_id, name, attempt_no, f"permanent failure: {error}")
        delay = policy.delay_s(attempt_no, self._rng)
        if attempt.retry_after_s is not None:
            delay = max(delay, min(attempt.retry_after_s, policy.max_delay_s))
        now = self._clock()
        if now + delay > row.retry_from + policy.horizon_s:
            reason = (f"gave up after {attempt_no} attempt(s) in {now - row.retry_from:.1f} s "
                      f"(horizon {policy.horizon_s:g} s): {error}")
            return await self._give_up(alert_id, name, attempt_no, reason)
        await asyncio.to_thread(self.log.reschedule, alert_id, name, now + delay)
        if now + delay < self._next_due:
            self._next_due = now + delay
            self.wake()  # the loop may be sleeping past it
        log.info("webhook alert %s -> %s: attempt %d failed (%s); retrying in %.2f s",
                 alert_id, name, attempt_no, error, delay)
        return None

    async def _give_up(
        self, alert_id: str, endpoint: str, attempts: int, reason: str
    ) -> DeliveryOutcome:
        await asyncio.to_thread(self.log.mark_failed, alert_id, endpoint, reason)
        WEBHOOK_FAILED.labels(endpoint).inc()
        log.warning("webhook alert %s -> %s: not delivered after %d attempt(s): %s",
                    alert_id, endpoint, attempts, reason)
        return DeliveryOutcome.FAILED

    async def _attempt(self, alert_id: str, body: bytes, endpoint: WebhookEndpoint) -> _Attempt:
        timestamp = int(self._clock())
        headers = sign_headers(endpoint.secrets, alert_id, body, timestamp=timestamp)
        headers["Content-Type"] = CONTENT_TYPE
        log.debug("webhook alert %s -> %s: POST (timestamp %d, %d secret(s))",
                  alert_id, endpoint.name, timestamp, len(endpoint.secrets))
        timeout_s = self.policy.request_timeout_s
        t0 = time.perf_counter()

        def took() -> int:
            return round((time.perf_counter() - t0) * 1000)

        try:
            async with self._http().post(
                endpoint.url.get_secret_value(),
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
                allow_redirects=False,
            ) as resp:
                status = resp.status
                if 200 <= status < 300:
                    return _Attempt(status, None, took(), retryable=False)
                snippet = ""
                try:
                    raw = await resp.content.read(_ERROR_SNIPPET_BYTES)
                    snippet = raw.decode("utf-8", "replace").strip()
                except (TimeoutError, aiohttp.ClientError):
                    pass
                error = f"HTTP {status} {resp.reason or ''}".rstrip()
                if snippet:
                    error += f": {snippet}"
                retryable = status >= 500 or status in RETRYABLE_STATUS
                retry_after = _retry_after(resp.headers.get("Retry-After"), self._clock())
                return _Attempt(status, redact(error), took(), retryable, retry_after)
        except TimeoutError:
            return _Attempt(None, f"timed out after {timeout_s:g} s", took(), retryable=True)
        except aiohttp.InvalidURL as exc:
            return _Attempt(None, f"invalid URL: {type(exc).__name__}", took(), retryable=False)
        except aiohttp.ClientError as exc:
            # The client's text quotes the URL, token and all: redacted before anything sees it.
            return _Attempt(None, redact(f"{type(exc).__name__}: {exc}"), took(),
                            retryable=True)
