"""Delivers alerts to webhook endpoints: signed, retried, every attempt recorded.

For each alert and endpoint the dispatcher first *claims* the pair in the delivery log; the
log refuses pairs already delivered, so an alert reaches an endpoint at most once even when
the alert stream is replayed after a restart (and a pair already in flight in this process
is not sent twice). It then POSTs
the alert JSON with Standard Webhooks headers (``webhook-id`` = the alert id, stable across
retries and reprocessing, so receivers can deduplicate too), retrying 5xx, 408, 425, 429,
timeouts and connection errors with full-jitter exponential backoff until the policy's
horizon; any other non-2xx answer is a permanent failure. Endpoints are served concurrently.

The delivery log is synchronous (a database); its calls run in a worker thread.
Secrets and endpoint URLs (which often embed tokens) are never logged; endpoints are named.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
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
from streams.schemas import Alert
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
    url: str = Field(repr=False, description="http(s) URL; may embed a token, never logged")
    secrets: list[SecretStr] = Field(min_length=1)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        try:
            _HTTP_URL.validate_python(url)
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
    ``horizon_s`` from the first one. ``request_timeout_s`` bounds each attempt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    initial_delay_s: float = Field(default=1.0, gt=0)
    factor: float = Field(default=2.0, ge=1)
    max_delay_s: float = Field(default=300.0, gt=0)
    horizon_s: float = Field(default=3600.0, ge=0)
    request_timeout_s: float = Field(default=15.0, gt=0)

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
    SKIPPED = "skipped"  # delivered before (the log refused the claim), or in flight


@runtime_checkable
class DeliveryLog(Protocol):
    """Where delivery state lives (``streams.store`` implements it). Synchronous; called
    from a worker thread; arguments are passed positionally.

    ``claim_delivery`` returns False once the (alert, endpoint) pair was delivered: that is
    what keeps a replayed alert from reaching an endpoint twice across restarts. It may
    return True again for a pair that is pending or failed (a replay retries it; deliveries
    interrupted by a shutdown are marked failed). The only window for a second copy is a
    crash between a 2xx answer and ``mark_delivered``; receivers dedupe on ``webhook-id``.
    """

    def claim_delivery(self, alert_id: str, endpoint: str, /) -> bool: ...

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

    def mark_delivered(self, alert_id: str, endpoint: str, /) -> None: ...

    def mark_failed(self, alert_id: str, endpoint: str, error: str, /) -> None: ...


@dataclass(frozen=True)
class _Attempt:
    status: int | None
    error: str | None
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


class WebhookDispatcher:
    """Delivers alerts to ``endpoints``, recording everything in ``log``.

    Use as an async context manager (or call :meth:`aclose`). Without a ``session`` the
    dispatcher opens its own aiohttp session on first use and closes it in ``aclose``.
    ``rng`` feeds the backoff jitter; ``clock`` gives the ``webhook-timestamp``.
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
        self._tasks: set[asyncio.Task[dict[str, DeliveryOutcome]]] = set()
        self._in_flight: set[tuple[str, str]] = set()

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

    async def deliver(self, alert: Alert) -> dict[str, DeliveryOutcome]:
        """Delivers ``alert`` to every endpoint concurrently; returns each endpoint's outcome.

        Returns only when every endpoint is delivered, skipped or failed (which may take up
        to the retry horizon); use :meth:`submit` to keep a stream moving meanwhile. HTTP
        failures are outcomes, not exceptions; a failing delivery log raises
        :class:`WebhookDeliveryError` after the other endpoints have finished.
        """
        if not valid_msg_id(alert.alert_id):
            raise WebhookError(f"alert id {alert.alert_id!r} cannot be a webhook-id "
                               "(empty, or contains '.' or whitespace)")
        body = alert.to_bytes()
        results = await asyncio.gather(
            *(self._deliver_one(alert.alert_id, body, ep) for ep in self.endpoints),
            return_exceptions=True,
        )
        outcomes: dict[str, DeliveryOutcome] = {}
        errors: list[tuple[str, Exception]] = []
        for ep, result in zip(self.endpoints, results, strict=True):
            if isinstance(result, DeliveryOutcome):
                outcomes[ep.name] = result
            elif isinstance(result, Exception):
                errors.append((ep.name, result))
            else:
                raise result  # CancelledError and friends are not ours to absorb
        if errors:
            for name, exc in errors:
                log.error(
                    "webhook alert %s -> %s: delivery bookkeeping failed",
                    alert.alert_id, name, exc_info=exc,
                )
            detail = "; ".join(f"{name}: {type(exc).__name__}: {exc}" for name, exc in errors)
            raise WebhookDeliveryError(
                f"alert {alert.alert_id}: delivery failed for {detail}"
            ) from errors[0][1]
        return outcomes

    def submit(self, alert: Alert) -> asyncio.Task[dict[str, DeliveryOutcome]]:
        """Starts :meth:`deliver` in the background (a stream agent must not wait out retry
        horizons); failures are logged. :meth:`aclose` waits for or cancels what is left."""
        task = asyncio.get_running_loop().create_task(
            self.deliver(alert), name=f"webhook-{alert.alert_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[dict[str, DeliveryOutcome]]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook delivery task %s failed", task.get_name(),
                      exc_info=task.exception())

    @property
    def pending(self) -> int:
        """Background deliveries still running."""
        return len(self._tasks)

    async def aclose(self, grace_s: float = 0.0) -> None:
        """Waits up to ``grace_s`` for background deliveries, cancels the rest (they are
        marked failed as interrupted), and closes the session the dispatcher opened."""
        if self._tasks:
            _, still = await asyncio.wait(set(self._tasks), timeout=max(grace_s, 0.0))
            for task in still:
                task.cancel()
            if still:
                await asyncio.gather(*still, return_exceptions=True)
        if self._own_session and self._session is not None and not self._session.closed:
            await self._session.close()

    # --- one endpoint ------------------------------------------------------------------

    async def _deliver_one(
        self, alert_id: str, body: bytes, endpoint: WebhookEndpoint
    ) -> DeliveryOutcome:
        pair = (alert_id, endpoint.name)
        if pair in self._in_flight:
            log.info("webhook alert %s -> %s: already being delivered", *pair)
            return DeliveryOutcome.SKIPPED
        self._in_flight.add(pair)
        try:
            return await self._claim_and_send(alert_id, body, endpoint)
        finally:
            self._in_flight.discard(pair)

    async def _claim_and_send(
        self, alert_id: str, body: bytes, endpoint: WebhookEndpoint
    ) -> DeliveryOutcome:
        claimed = await asyncio.to_thread(self.log.claim_delivery, alert_id, endpoint.name)
        if not claimed:
            log.info("webhook alert %s -> %s: delivered before, not sent again",
                     alert_id, endpoint.name)
            return DeliveryOutcome.SKIPPED
        try:
            return await self._attempts(alert_id, body, endpoint)
        except asyncio.CancelledError:
            reason = "interrupted (dispatcher shutting down) before a final outcome"
            log.warning("webhook alert %s -> %s: %s", alert_id, endpoint.name, reason)
            try:
                await asyncio.shield(
                    asyncio.to_thread(self.log.mark_failed, alert_id, endpoint.name, reason)
                )
            except Exception:
                log.exception("webhook alert %s -> %s: could not record the interruption",
                              alert_id, endpoint.name)
            raise

    async def _attempts(
        self, alert_id: str, body: bytes, endpoint: WebhookEndpoint
    ) -> DeliveryOutcome:
        policy = self.policy
        started = time.monotonic()
        attempt_no = 0
        while True:
            attempt_no += 1
            attempt = await self._attempt(alert_id, body, endpoint)
            await asyncio.to_thread(
                self.log.record_attempt, alert_id, endpoint.name, attempt_no,
                attempt.status, attempt.error, attempt.duration_ms,
            )
            if attempt.ok:
                await asyncio.to_thread(self.log.mark_delivered, alert_id, endpoint.name)
                log.info("webhook alert %s -> %s: delivered (attempt %d, HTTP %s)",
                         alert_id, endpoint.name, attempt_no, attempt.status)
                return DeliveryOutcome.DELIVERED
            error = attempt.error or f"HTTP {attempt.status}"
            if not attempt.retryable:
                reason = f"permanent failure: {error}"
                return await self._give_up(alert_id, endpoint, attempt_no, reason)
            delay = policy.delay_s(attempt_no, self._rng)
            if attempt.retry_after_s is not None:
                delay = max(delay, min(attempt.retry_after_s, policy.max_delay_s))
            elapsed = time.monotonic() - started
            if elapsed + delay > policy.horizon_s:
                reason = (f"gave up after {attempt_no} attempt(s) in {elapsed:.1f} s "
                          f"(horizon {policy.horizon_s:g} s): {error}")
                return await self._give_up(alert_id, endpoint, attempt_no, reason)
            log.info("webhook alert %s -> %s: attempt %d failed (%s); retrying in %.2f s",
                     alert_id, endpoint.name, attempt_no, error, delay)
            await asyncio.sleep(delay)

    async def _give_up(
        self, alert_id: str, endpoint: WebhookEndpoint, attempts: int, reason: str
    ) -> DeliveryOutcome:
        await asyncio.to_thread(self.log.mark_failed, alert_id, endpoint.name, reason)
        log.warning("webhook alert %s -> %s: not delivered after %d attempt(s): %s",
                    alert_id, endpoint.name, attempts, reason)
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
                endpoint.url,
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
                return _Attempt(status, error, took(), retryable, retry_after)
        except TimeoutError:
            return _Attempt(None, f"timed out after {timeout_s:g} s", took(), retryable=True)
        except aiohttp.InvalidURL as exc:
            return _Attempt(None, f"invalid URL: {type(exc).__name__}", took(), retryable=False)
        except aiohttp.ClientError as exc:
            return _Attempt(None, f"{type(exc).__name__}: {exc}", took(), retryable=True)
