"""A webhook receiver: verifies Standard Webhooks signatures, deduplicates, hands over.

It serves as the demo's local receiver (``run_receiver`` binds 127.0.0.1 on a free port,
in-process) and as a reference for fleet managers writing their own: verify the *raw* body,
answer 401 when verification fails, deduplicate on ``webhook-id`` and answer 2xx quickly.

Answers: 200 delivered (or a duplicate, acknowledged again without a second callback);
401 verification failed (the reason in the body); 400 not a JSON object; 500 when the
callback raised (the sender retries; the id is not marked seen).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from streams.webhooks.errors import WebhookError, WebhookVerificationError
from streams.webhooks.signing import DEFAULT_TOLERANCE_S, HEADER_ID, SecretLike, secret_key, verify

log = logging.getLogger(__name__)

OnDelivery = Callable[[dict[str, Any], Mapping[str, str]], None]

MAX_BODY_BYTES = 1024 * 1024
SEEN_IDS_KEPT = 10_000


class _Receiver:
    def __init__(
        self,
        secrets: Sequence[SecretLike],
        on_delivery: OnDelivery | None,
        tolerance_s: float,
        seen_ids_kept: int,
    ) -> None:
        self.secrets = list(secrets)
        for secret in self.secrets:
            secret_key(secret)  # fail at start-up, not on the first delivery
        self.on_delivery = on_delivery
        self.tolerance_s = tolerance_s
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.seen_ids_kept = seen_ids_kept

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = request.headers
        try:
            verify(self.secrets, headers, body, tolerance_s=self.tolerance_s)
        except WebhookVerificationError as exc:
            log.warning("rejected webhook from %s: %s", request.remote, exc)
            return web.Response(status=401, text=f"verification failed: {exc}\n")
        msg_id = headers[HEADER_ID].strip()
        if msg_id in self.seen:
            log.info("delivery %s duplicate, acknowledged again", msg_id)
            return web.Response(status=200, text="duplicate\n")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return web.Response(status=400, text="body is not JSON\n")
        if not isinstance(payload, dict):
            return web.Response(status=400, text="body is not a JSON object\n")
        log.info(
            "delivery %s %s driver=%s severity=%s",
            msg_id, payload.get("reason"), payload.get("driver_id"), payload.get("severity"),
        )
        if self.on_delivery is not None:
            # Synchronous: nothing interleaves between the duplicate check and marking seen.
            self.on_delivery(payload, headers)
        self.seen[msg_id] = None
        while len(self.seen) > self.seen_ids_kept:
            self.seen.popitem(last=False)
        return web.Response(status=200, text="ok\n")


def create_receiver_app(
    secrets: Sequence[SecretLike],
    on_delivery: OnDelivery | None = None,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    seen_ids_kept: int = SEEN_IDS_KEPT,
) -> web.Application:
    """An aiohttp app accepting signed webhook POSTs on any path.

    ``on_delivery(payload, headers)`` is called once per ``webhook-id`` (the most recent
    ``seen_ids_kept`` ids are remembered); if it raises, the sender gets 500 and retries.
    """
    receiver = _Receiver(secrets, on_delivery, tolerance_s, seen_ids_kept)
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post("/{path:.*}", receiver.handle)
    return app


@asynccontextmanager
async def run_receiver(
    secrets: Sequence[SecretLike],
    on_delivery: OnDelivery | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    path: str = "/webhooks/vigil",
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> AsyncIterator[str]:
    """Serves :func:`create_receiver_app` in this event loop; yields the URL to configure as
    the endpoint (``port`` 0 picks a free one). Stops on exit."""
    app = create_receiver_app(secrets, on_delivery, tolerance_s=tolerance_s)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        url = f"http://{bound_host}:{bound_port}{path}"
        log.info("webhook receiver listening on %s", url)
        yield url
    finally:
        await runner.cleanup()


class BackgroundReceiver:
    """:func:`run_receiver` on its own thread and event loop, for programs that are not
    asyncio (the demo) and for tests; a context manager. ``url`` is set once it listens."""

    def __init__(self, secrets: Sequence[SecretLike], on_delivery: OnDelivery | None = None,
                 *, port: int = 0, start_timeout_s: float = 10.0) -> None:
        self.secrets, self.on_delivery, self.port = list(secrets), on_delivery, port
        self.start_timeout_s = start_timeout_s
        self.url: str | None = None
        self._ready, self._stop = threading.Event(), threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="webhook-receiver", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        async with run_receiver(self.secrets, self.on_delivery, port=self.port) as url:
            self.url = url
            self._ready.set()
            while not self._stop.is_set():
                await asyncio.sleep(0.1)

    def __enter__(self) -> BackgroundReceiver:
        self._thread.start()
        if not self._ready.wait(self.start_timeout_s) or self._error is not None:
            raise WebhookError(f"webhook receiver did not start: {self._error}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
