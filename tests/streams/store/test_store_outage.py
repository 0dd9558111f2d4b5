"""PostgreSQL outages under the sinks' writes: a local TCP proxy cuts the database off while
alerts and windows are being stored; every row lands once after recovery. And errors that are
not outages (bad data) are not retried as if they were.

``VIGIL_TEST_DB_CUT_S`` sets the length of the cut (15 s by default; the issue's benchmark
runs it with 60).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from functools import partial

import pytest
from sqlalchemy import func, select
from tcp_proxy import TcpProxy
from test_store import alert, window

from streams.sinks import _with_store
from streams.store import Store, StoreError, StoreUnavailableError
from streams.store.models import ALERTS, METRICS

CUT_S = float(os.environ.get("VIGIL_TEST_DB_CUT_S", "15"))
RECORDS = 120  # alerts, and as many windows
T0 = 1_760_000_000.0

log = logging.getLogger(__name__)


@pytest.fixture
def proxied_url(pg_schema_url: str) -> tuple[str, TcpProxy]:
    """``pg_schema_url`` through a TCP proxy (the URL) and the proxy, listening."""
    proxy = TcpProxy("127.0.0.1", 5432)
    return pg_schema_url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/"), proxy


def test_a_database_cut_loses_and_duplicates_no_row(
    proxied_url: tuple[str, TcpProxy], pg_schema_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url, proxy = proxied_url
    direct = Store(pg_schema_url)
    direct.migrate()
    drivers = [f"cut-{i % 4}" for i in range(RECORDS)]
    alerts = [alert(d, T0 + i) for i, d in enumerate(drivers)]
    windows = [window(d, T0 + 60.0 * i) for i, d in enumerate(drivers)]
    written = threading.Event()
    halfway = threading.Event()

    async def sink() -> None:
        with Store(url) as store:
            for i, (a, w) in enumerate(zip(alerts, windows, strict=True)):
                await _with_store("storing alert", partial(store.alerts.upsert, a))
                await _with_store("storing window", partial(store.series.upsert, [w]))
                if i == RECORDS // 3:
                    halfway.set()
                await asyncio.sleep(0.02)  # a stream's pace, so writes span the cut
        written.set()

    failures: list[BaseException] = []

    def run_sink() -> None:
        try:
            asyncio.run(sink())
        except BaseException as exc:
            failures.append(exc)
            written.set()

    with proxy, caplog.at_level(logging.WARNING, logger="streams.sinks"):
        writer = threading.Thread(target=run_sink, daemon=True)
        writer.start()
        assert halfway.wait(60), failures
        proxy.cut()
        cut_at = time.monotonic()
        while time.monotonic() - cut_at < CUT_S:
            time.sleep(0.5)
        proxy.restore()
        assert written.wait(CUT_S + 120), "the sink did not finish after the database came back"
        writer.join(10)
    assert not failures, failures  # no outage error escaped the retry
    retried = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert retried  # the cut was felt...

    with direct.db.engine.connect() as conn:
        stored_alerts = conn.execute(select(ALERTS.c.alert_id)).scalars().all()
        stored_windows = conn.execute(
            select(METRICS.c.driver_id, METRICS.c.window_start)).all()
        counts = conn.execute(select(func.count()).select_from(ALERTS)).scalar_one()
    lost_alerts = {a.alert_id for a in alerts} - set(stored_alerts)
    lost_windows = {(w.driver_id, w.window_start) for w in windows} - set(stored_windows)
    log.warning("database cut of %g s: %d alerts and %d windows written, %d + %d lost, "
                "%d + %d duplicated; %d retries logged", CUT_S, len(alerts), len(windows),
                len(lost_alerts), len(lost_windows), len(stored_alerts) - len(set(stored_alerts)),
                len(stored_windows) - len(set(stored_windows)), len(retried))
    assert not lost_alerts and not lost_windows  # ...and nothing was lost
    assert counts == len(stored_alerts) == len(set(stored_alerts)) == RECORDS  # nor doubled
    assert len(stored_windows) == len(set(stored_windows)) == RECORDS
    direct.close()


def test_a_data_error_is_not_taken_for_an_outage(store: Store) -> None:
    # A driver id past its column's length (past the schema's check too): PostgreSQL refuses
    # the data (SQLite stores it). Retrying it would stall the sink forever.
    if store.dialect != "postgresql":
        pytest.skip("SQLite does not enforce VARCHAR lengths")
    with pytest.raises(StoreError) as info:
        store.series.upsert([window("d1", T0).model_copy(update={"driver_id": "d" * 129})])
    assert not info.value.retryable and not isinstance(info.value, StoreUnavailableError)
