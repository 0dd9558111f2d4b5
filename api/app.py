"""The read API: a FastAPI app over one :class:`~streams.store.Store`.

    GET  /v1/alerts                          filtered, newest first, keyset pages (cursor)
    GET  /v1/alerts/{alert_id}
    POST /v1/alerts/{alert_id}/acknowledge   write scope
    POST /v1/alerts/{alert_id}/flag          write scope; body {"label", "note"}
    GET  /v1/fleet                           every driver's current state (the fleet page)
    GET  /v1/drivers/{driver_id}/series      a driver's window metrics, keyset pages (cursor)
    GET  /v1/export/alerts                   ?format=csv|parquet, the alert filters
    GET  /v1/export/drivers/{driver_id}/series
    GET  /healthz, /readyz                   liveness; readiness (the database answers)
    GET  /metrics                            Prometheus text format: the API's own metrics
    GET  /openapi.json, /docs                the OpenAPI document and its browser

It reads and acts through the same functions as the dashboard (:mod:`dashboard.queries`:
the fleet's statuses, evidence summaries, acknowledging and flagging), so both say and do the
same. Every ``/v1`` route needs an API key (:mod:`api.auth`); an action is recorded under
the key's name as ``api:NAME``. ``/healthz``, ``/readyz`` and ``/metrics`` need none (keep the
port off the public internet, or block ``/metrics`` at the ingress): ``/metrics`` shows the
``api`` service's families of :mod:`streams.observability` (requests by route template,
method and status; their latency; readiness; the process).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, status
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import export
from api.auth import read_key, store_of, write_key
from api.cursor import CursorError, decode_cursor, encode_cursor
from api.schemas import (
    ActionOut,
    AlertOut,
    AlertPage,
    ExportFormat,
    FlagIn,
    Fleet,
    FleetDriver,
    Health,
    Problem,
    Series,
    SeriesWindow,
    StatusFilter,
)
from api.settings import ApiSettings
from dashboard.queries import apply_action, evidence_summary, fleet_status, status_counts
from dashboard.settings import DashboardSettings
from streams.errors import InputError
from streams.observability import (
    API_REQUEST_SECONDS,
    API_REQUESTS,
    BUILD_INFO,
    READY,
    ServiceMetrics,
    cached,
    vigil_version,
)
from streams.observability import Health as ServiceHealth
from streams.schemas import AlertReason, Severity
from streams.settings import load_settings
from streams.store import (
    AlertNotFoundError,
    ApiKey,
    Store,
    StoredAlert,
    StoreNotMigratedError,
    StoreUnavailableError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

SERVICE = "api"  # the service name of its metrics (streams.observability.SERVICES_OF)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
READY_TTL_S = 5.0  # a scrape reads readiness from the database at most this often
EXPORT_CHUNK = 1000  # rows per database read (and per Parquet row group) of an export
DEFAULT_PAGE = 100

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "no API key, or an unknown or revoked one"},
    403: {"model": Problem, "description": "the key lacks the scope this needs"},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "unknown"}}
_BAD: dict[int | str, dict[str, Any]] = {400: {"model": Problem,
                                               "description": "a malformed cursor or filter"}}
_FILES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the file, streamed",
          "content": {export.MEDIA_TYPES[ExportFormat.CSV].split(";")[0]:
                      {"schema": {"type": "string"}},
                      export.MEDIA_TYPES[ExportFormat.PARQUET]:
                      {"schema": {"type": "string", "format": "binary"}}}},
}

TimeParam = Annotated[float | datetime | None, Query(
    description="epoch seconds (exact), or ISO 8601 (UTC when it names no zone)")]


def alert_filters(
    driver_id: Annotated[str | None, Query(max_length=128)] = None,
    vehicle_id: Annotated[str | None, Query(max_length=128)] = None,
    reason: AlertReason | None = None,
    severity: Severity | None = None,
    status_: Annotated[StatusFilter | None, Query(
        alias="status", description="open, acked, resolved or unresolved (open or acked)"
    )] = None,
    since: TimeParam = None,
    until: TimeParam = None,
) -> dict[str, Any]:
    """The store's filters; ``since <= detected_at < until``."""
    lo, hi = _epoch(since), _epoch(until)
    if lo is not None and hi is not None and lo >= hi:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "since must be before until")
    return {"states": None if status_ is None else status_.states(), "reason": reason,
            "severity": severity, "driver_id": driver_id, "vehicle_id": vehicle_id,
            "since": lo, "until": hi}


Filters = Annotated[dict[str, Any], Depends(alert_filters)]
ReadKey = Annotated[ApiKey, Depends(read_key)]
WriteKey = Annotated[ApiKey, Depends(write_key)]
TheStore = Annotated[Store, Depends(store_of)]
AlertId = Annotated[str, Path(max_length=64)]

Format = Annotated[ExportFormat, Query(alias="format")]


def create_app(store: Store, settings: ApiSettings | None = None,
               dashboard: DashboardSettings | None = None) -> FastAPI:
    """The API over ``store`` (the caller closes it). Settings left out come from the
    environment (``VIGIL_API__*``; the fleet's thresholds from ``VIGIL_DASHBOARD__*``)."""
    settings = settings or load_settings(ApiSettings)
    dashboard = dashboard or load_settings(DashboardSettings)
    app = FastAPI(
        title="Vigil read API",
        version="1",
        summary="Alerts, the fleet's state and drivers' time series for fleet systems.",
        description="Every /v1 route needs an API key (`vigil api keys create NAME --scope "
                    "read|write`), sent as `Authorization: Bearer <key>` or `X-API-Key`. "
                    "Times are epoch seconds (UTC).",
    )
    app.state.store = store
    _handle_errors(app)
    _measure(app, store)
    max_page = settings.max_page_size

    # --- alerts ----------------------------------------------------------------------------

    @app.get("/v1/alerts", response_model=AlertPage, tags=["alerts"],
             responses={**_ERRORS, **_BAD})
    def list_alerts(
        key: ReadKey,
        store: TheStore,
        filters: Filters,
        cursor: Annotated[str | None, Query(
            description="next_cursor of the previous page")] = None,
        limit: Annotated[int, Query(
            ge=1, description="page size (capped at VIGIL_API__MAX_PAGE_SIZE)")] = DEFAULT_PAGE,
    ) -> AlertPage:
        """Alerts matching every filter, newest first, one page at a time."""
        size = min(limit, max_page)
        after = None if cursor is None else decode_cursor(cursor)
        found = store.alerts.page(**filters, after=after, limit=size + 1)
        page = found[:size]
        more = len(found) > size
        return AlertPage(
            items=[_alert_out(a) for a in page], limit=size,
            next_cursor=encode_cursor(page[-1].detected_at, page[-1].alert_id) if more else None)

    @app.get("/v1/alerts/{alert_id}", response_model=AlertOut, tags=["alerts"],
             responses={**_ERRORS, **_NOT_FOUND})
    def get_alert(key: ReadKey, store: TheStore, alert_id: AlertId) -> AlertOut:
        return _alert_out(_require(store, alert_id))

    @app.post("/v1/alerts/{alert_id}/acknowledge", response_model=ActionOut, tags=["alerts"],
              responses={**_ERRORS, **_NOT_FOUND})
    def acknowledge(key: WriteKey, store: TheStore, alert_id: AlertId) -> ActionOut:
        """open -> acked, recorded as ``api:KEY_NAME``. Again, or on a resolved alert: nothing
        changes (``changed`` False)."""
        result = apply_action(store, alert_id, "ack", _by(key))
        log.info("alert %s: %s by %s", alert_id, result, _by(key))
        return ActionOut(result=result, changed=result == "acknowledged",
                         alert=_alert_out(_require(store, alert_id)))

    @app.post("/v1/alerts/{alert_id}/flag", response_model=ActionOut, tags=["alerts"],
              responses={**_ERRORS, **_NOT_FOUND})
    def flag(key: WriteKey, store: TheStore, alert_id: AlertId, body: FlagIn) -> ActionOut:
        """An operator's verdict (true_positive / false_positive, with a note); flagged alerts
        feed retraining, as flags from the dashboard do. The same verdict again from the same
        key with the same note records nothing (``changed`` False)."""
        before = _require(store, alert_id)
        note = (body.note or "").strip() or None
        by = _by(key)
        if before.flag == body.label and before.flagged_by == by:
            history = store.alerts.flag_history(alert_id)
            if history and history[-1].note == note:
                return ActionOut(result=f"already flagged {body.label.value.replace('_', ' ')}",
                                 changed=False, alert=_alert_out(before))
        result = apply_action(store, alert_id, body.label.value, by, note)
        log.info("alert %s: %s by %s", alert_id, result, by)
        return ActionOut(result=result, changed=True, alert=_alert_out(_require(store, alert_id)))

    # --- fleet and drivers ------------------------------------------------------------------

    @app.get("/v1/fleet", response_model=Fleet, tags=["fleet"], responses=_ERRORS)
    def fleet(key: ReadKey, store: TheStore) -> Fleet:
        """Every driver's current state as the dashboard's fleet page shows it, worst
        first."""
        now = time.time()
        frame = fleet_status(store, now, offline_after_s=dashboard.offline_after_s,
                             recent_alert_s=dashboard.recent_alert_s)
        return Fleet(generated_at=now, counts=status_counts(frame),
                     drivers=[_fleet_driver(r) for r in frame.to_dict("records")])

    @app.get("/v1/drivers/{driver_id}/series", response_model=Series, tags=["fleet"],
             responses={**_ERRORS, **_NOT_FOUND, **_BAD})
    def driver_series(
        key: ReadKey, store: TheStore, driver_id: str,
        since: TimeParam = None, until: TimeParam = None,
        cursor: Annotated[str | None, Query(
            description="next_cursor of the previous page")] = None,
        limit: Annotated[int, Query(
            ge=1, description="page size (capped at VIGIL_API__MAX_PAGE_SIZE)")] = max_page,
    ) -> Series:
        """The driver's closed windows with ``since <= window_start < until``, oldest
        first, one page at a time."""
        lo, hi = _series_bounds(store, driver_id, since, until)
        size = min(limit, max_page)
        after = None
        if cursor is not None:
            after, of = decode_cursor(cursor)
            if of != driver_id:
                raise CursorError("this cursor is of another driver's series")
        found = store.series.of_driver(driver_id, since=lo, until=hi, after=after,
                                       limit=size + 1)
        page, more = found[:size], len(found) > size
        return Series(driver_id=driver_id, limit=size, windows=[
            SeriesWindow.model_validate(w.model_dump(exclude={"schema_", "driver_id"}))
            for w in page],
            next_cursor=encode_cursor(page[-1].window_start, driver_id) if more else None)

    # --- exports ----------------------------------------------------------------------------

    @app.get("/v1/export/alerts", tags=["export"], response_class=StreamingResponse,
             responses={**_FILES, **_ERRORS, **_BAD})
    def export_alerts(key: ReadKey, store: TheStore, filters: Filters,
                      fmt: Format = ExportFormat.CSV) -> StreamingResponse:
        """Every alert matching the filters (those of GET /v1/alerts), newest first, as one
        CSV or Parquet file; the evidence is JSON text."""
        first = store.alerts.page(**filters, limit=EXPORT_CHUNK)  # an outage: 503, not a
        # truncated file
        chunks = _chunks(first, export.alert_row, lambda last: store.alerts.page(
            **filters, after=(last.detected_at, last.alert_id), limit=EXPORT_CHUNK))
        return _file(export.stream(chunks, export.ALERT_COLUMNS, fmt), "vigil-alerts", fmt)

    @app.get("/v1/export/drivers/{driver_id}/series", tags=["export"],
             response_class=StreamingResponse,
             responses={**_FILES, **_ERRORS, **_NOT_FOUND, **_BAD})
    def export_series(key: ReadKey, store: TheStore, driver_id: str,
                      since: TimeParam = None, until: TimeParam = None,
                      fmt: Format = ExportFormat.CSV) -> StreamingResponse:
        """The driver's windows (as GET /v1/drivers/{driver_id}/series) as one CSV or
        Parquet file; AU rates and the like are JSON text."""
        lo, hi = _series_bounds(store, driver_id, since, until)
        first = store.series.of_driver(driver_id, since=lo, until=hi, limit=EXPORT_CHUNK)
        chunks = _chunks(first, export.series_row, lambda last: store.series.of_driver(
            driver_id, since=lo, until=hi, after=last.window_start, limit=EXPORT_CHUNK))
        name = "vigil-series-" + re.sub(r"[^\w.-]", "_", driver_id)
        return _file(export.stream(chunks, export.SERIES_COLUMNS, fmt), name, fmt)

    # --- health -----------------------------------------------------------------------------

    @app.get("/healthz", response_model=Health, tags=["health"])
    def healthz() -> Health:
        """Liveness: the process serves requests."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, tags=["health"],
             responses={503: {"model": Problem, "description": "the database does not answer "
                              "or its schema is not current"}})
    def readyz(store: TheStore) -> Health:
        """Readiness: the database answers and its schema is current."""
        return Health(status="ready", schema_revision=store.check_migrated())

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        """Prometheus text format (a plain def: FastAPI runs it on a worker thread, so the
        readiness check's database round trip never blocks the event loop)."""
        return Response(generate_latest(ServiceMetrics(SERVICE)),
                        media_type=CONTENT_TYPE_LATEST)

    return app


def _measure(app: FastAPI, store: Store) -> None:
    """Counts and times every request by route template (never the raw path, so ids do not
    become label values), and sets ``vigil_ready`` and ``vigil_build_info`` for the API."""
    BUILD_INFO.labels(SERVICE, vigil_version()).set(1)
    health = ServiceHealth(SERVICE)

    def database() -> str | None:
        try:
            store.check_migrated()
        except (StoreUnavailableError, StoreNotMigratedError) as exc:
            return str(exc)  # an answer, so cached too: an outage costs one try per TTL
        return None

    health.ready("database", cached(database, READY_TTL_S))
    READY.set_function(lambda: float(health.is_ready().ok))

    @app.middleware("http")
    async def measure(request: Request,
                      call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        code = status.HTTP_500_INTERNAL_SERVER_ERROR  # unless a response comes back
        try:
            response = await call_next(request)
            code = response.status_code
            return response
        finally:
            # the router put the matched route in the scope (none: no route has the path)
            route = getattr(request.scope.get("route"), "path", None) or "unmatched"
            method = request.method if request.method in METHODS else "other"
            API_REQUEST_SECONDS.labels(route, method).observe(time.perf_counter() - start)
            API_REQUESTS.labels(route, method, str(code)).inc()


def _handle_errors(app: FastAPI) -> None:
    def problem(code: int, detail: str) -> JSONResponse:
        return JSONResponse({"detail": detail}, status_code=code)

    @app.exception_handler(AlertNotFoundError)
    def not_found(request: Request, exc: AlertNotFoundError) -> JSONResponse:
        return problem(status.HTTP_404_NOT_FOUND, str(exc))

    @app.exception_handler(InputError)
    def bad_input(request: Request, exc: InputError) -> JSONResponse:
        return problem(status.HTTP_400_BAD_REQUEST, str(exc))

    @app.exception_handler(StoreUnavailableError)
    def unavailable(request: Request, exc: StoreUnavailableError) -> JSONResponse:
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return problem(status.HTTP_503_SERVICE_UNAVAILABLE, "database unavailable; retry later")

    @app.exception_handler(StoreNotMigratedError)
    def not_migrated(request: Request, exc: StoreNotMigratedError) -> JSONResponse:
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return problem(status.HTTP_503_SERVICE_UNAVAILABLE,
                       "database schema is not current; run `vigil db migrate`")


def _epoch(t: float | datetime | None) -> float | None:
    if t is None:
        return None
    if isinstance(t, datetime):
        return (t if t.tzinfo is not None else t.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(t):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "since and until are finite times")
    return t


def _by(key: ApiKey) -> str:
    return f"api:{key.name}"


def _require(store: Store, alert_id: str) -> StoredAlert:
    found = store.alerts.get(alert_id)
    if found is None:
        raise AlertNotFoundError(alert_id)
    return found


def _chunks(first: list[T], row: Callable[[T], dict[str, Any]],
            after: Callable[[T], list[T]]) -> Iterator[list[dict[str, Any]]]:
    """An export's rows, a database read at a time: ``first`` (read before the response
    starts, so an outage is a 503 rather than a truncated file), then ``after(last item)``
    until a page comes back shorter than ``EXPORT_CHUNK``."""
    page = first
    while page:
        yield [row(item) for item in page]
        if len(page) < EXPORT_CHUNK:
            return
        page = after(page[-1])


def _series_bounds(store: Store, driver_id: str, since: float | datetime | None,
                   until: float | datetime | None) -> tuple[float | None, float | None]:
    lo, hi = _epoch(since), _epoch(until)
    if lo is not None and hi is not None and lo >= hi:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "since must be before until")
    if not store.series.has_driver(driver_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no driver with id {driver_id!r}")
    return lo, hi


def _alert_out(a: StoredAlert) -> AlertOut:
    return AlertOut(
        alert_id=a.alert_id, driver_id=a.driver_id, vehicle_id=a.vehicle_id, reason=a.reason,
        severity=a.severity, status=a.state, started_at=a.started_at,
        detected_at=a.detected_at, message=a.message, evidence=a.evidence,
        evidence_summary=evidence_summary(a.evidence), acked_at=a.acked_at,
        acked_by=a.acked_by, resolved_at=a.resolved_at, resolved_by=a.resolved_by,
        flag=a.flag, flagged_at=a.flagged_at, flagged_by=a.flagged_by)


def _plain(value: Any) -> Any:
    """A pandas cell as JSON wants it: missing -> None, a timestamp -> epoch seconds."""
    if hasattr(value, "timestamp") and callable(value.timestamp):
        return None if value != value else value.timestamp()  # NaT != NaT
    if isinstance(value, float) and value != value:
        return None
    return value.item() if hasattr(value, "item") else value


def _fleet_driver(row: dict[str, Any]) -> FleetDriver:
    values = {k: _plain(v) for k, v in row.items()}
    reasons = values.get("active_reasons") or ""
    values["active_reasons"] = [r for r in reasons.split(", ") if r]
    return FleetDriver.model_validate(values)


def _file(body: Iterator[bytes], stem: str, fmt: ExportFormat) -> StreamingResponse:
    return StreamingResponse(
        body, media_type=export.MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{stem}.{fmt.value}"'})
