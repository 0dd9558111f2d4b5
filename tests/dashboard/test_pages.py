"""Every page of the dashboard in Streamlit's AppTest, over a real PostgreSQL store, logged in
(as an admin unless a test says otherwise)."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from dash_helpers import APP, LOGINS, NAMES, Fleet, log_in
from streamlit.testing.v1 import AppTest

from dashboard import queries
from streams.schemas import AlertState
from streams.store import AlertFlag, OperatorRole, Store

PAGES = ("views/fleet.py", "views/driver.py", "views/alerts.py", "views/health.py")


def app(page: str | None = None, role: OperatorRole = OperatorRole.ADMIN, **query: str
        ) -> AppTest:
    """The app run once, logged in with ``role``'s login on its default page, then switched
    to ``page`` (with ``query``)."""
    at = log_in(AppTest.from_file(str(APP), default_timeout=30).run(), *LOGINS[role])
    if page is not None:
        at.query_params.clear()
        at.query_params.update(query)
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest, kind: str) -> list[str]:
    return [str(e.value) for e in at.get(kind)]


def test_fleet_lists_every_driver_worst_first(fleet: Fleet) -> None:
    at = app()
    assert not at.error
    names = [m for m in texts(at, "markdown") if m.startswith("**")]
    assert names == [f"**{n}**" for n in ("Bob Okafor", "Dan Novak", "Carol Diaz", "Alice Martin")]
    # The drowsy driver's card comes first and says so.
    md = texts(at, "markdown")
    first_badge = next(m for m in md[md.index("**Bob Okafor**") :] if "-badge[" in m)
    assert first_badge == ":orange-badge[Drowsy]"
    assert ":gray-badge[Offline]" in md  # Carol: two hours without a window
    metrics = {m.label: m.value for m in at.metric[: 1 + len(queries.STATUSES)]}
    assert metrics["Drivers"] == "4"
    assert metrics["Drowsy"] == metrics["Distracted"] == metrics["Offline"] == "1"


def test_fleet_table_view(fleet: Fleet) -> None:
    at = app()
    at.button_group(key="fleet_view").set_value("Table").run()
    table = at.dataframe[0].value
    table = getattr(table, "data", table)  # a Styler: its frame
    assert list(table["name"]) == ["Bob Okafor", "Dan Novak", "Carol Diaz", "Alice Martin"]
    assert table["status_detail"].iloc[0] == "Drowsy"


def test_fleet_empty_database_explains_what_to_do(empty_store: Store) -> None:
    at = app()
    assert not at.error
    assert any("No drivers yet" in i and "vigil demo" in i for i in texts(at, "info"))


def _chart_frames(chart: object) -> list:
    proto = chart.proto  # type: ignore[attr-defined]
    return [pa.ipc.open_stream(d.data.data).read_pandas() for d in proto.datasets]


def test_driver_page_charts_the_chosen_driver(fleet: Fleet) -> None:
    at = app("views/driver.py", driver="d-bob")
    assert not at.error
    assert [h.value for h in at.subheader] == ["Bob Okafor"]
    charts = at.get("vega_lite_chart")
    titles = [json.loads(c.proto.spec)["title"] for c in charts]
    assert any(t.startswith("PERCLOS") for t in titles)
    for wanted in (
        "Blink rate (per minute)",
        "Blink duration (s)",
        "Fatigue / drowsiness score (0–1)",
        "Alert events",
    ):
        assert wanted in titles
    perclos = charts[titles.index(next(t for t in titles if t.startswith("PERCLOS")))]
    values = [v for f in _chart_frames(perclos) if "value" in f for v in f["value"]]
    assert max(values) == pytest.approx(0.32)  # Bob's, not Alice's 0.03
    # The alert timeline shows both of Bob's alerts, the resolved microsleep included.
    timeline = charts[titles.index("Alert events")]
    reasons = {r for f in _chart_frames(timeline) if "reason" in f for r in f["reason"]}
    assert reasons == {"drowsiness", "microsleep"}

    at.selectbox(key="driver_pick").set_value("d-alice").run()
    assert [h.value for h in at.subheader] == ["Alice Martin"]
    assert at.query_params["driver"] == "d-alice"


def test_driver_page_unknown_driver_warns(fleet: Fleet) -> None:
    at = app("views/driver.py", driver="nobody")
    assert any("nobody" in w for w in texts(at, "warning"))
    assert at.subheader[0].value == sorted(NAMES.values())[0]


def test_alerts_feed_acknowledge_and_flag_write_to_the_store(fleet: Fleet) -> None:
    at = app("views/alerts.py", OperatorRole.OPERATOR)  # dana
    aid = fleet.drowsy_alert
    assert "Drowsy: KSS 9 (fatigue score 0.86)" in texts(at, "markdown")
    assert any("kss 9" in c and "perclos 0.32" in c for c in texts(at, "caption"))

    at.button(key=f"ack-{aid}").click().run()
    stored = fleet.store.alerts.get(aid)
    assert stored is not None and stored.state == AlertState.ACKED and stored.acked_by == "dana"
    assert at.button(key=f"ack-{aid}").disabled  # acked: nothing more to acknowledge
    assert any("acknowledged by dana" in s for s in texts(at, "success"))

    at.text_input(key=f"note-{aid}").input("eyes were closed on the video").run()
    at.button(key=f"false_positive-{aid}").click().run()
    at.button(key=f"true_positive-{aid}").click().run()
    history = fleet.store.alerts.flag_history(aid)
    assert [(f.label, f.flagged_by, f.note) for f in history] == [
        (AlertFlag.FALSE_POSITIVE, "dana", "eyes were closed on the video"),
        (AlertFlag.TRUE_POSITIVE, "dana", None),  # the note went with the first flag
    ]
    stored = fleet.store.alerts.get(aid)
    assert stored is not None and stored.flag == AlertFlag.TRUE_POSITIVE

    at.button(key=f"resolve-{aid}").click().run()
    stored = fleet.store.alerts.get(aid)
    assert stored is not None and stored.state == AlertState.RESOLVED
    assert stored.resolved_by == "dana"
    # The default filter shows unresolved alerts: the resolved one leaves the feed.
    assert f"ack-{aid}" not in [b.key for b in at.button]


def test_alerts_feed_filters(fleet: Fleet) -> None:
    at = app("views/alerts.py")
    keys = {b.key for b in at.button}
    assert {f"ack-{fleet.drowsy_alert}", f"ack-{fleet.distraction_alert}"} <= keys
    at.selectbox(key="f_reason").set_value("distraction").run()
    assert len([b for b in at.button if b.key.startswith("ack-")]) == 2  # Dan's and Carol's
    at.selectbox(key="f_range").set_value("1 h").run()  # Carol's is two hours old
    assert {b.key for b in at.button if b.key.startswith("ack-")} == {
        f"ack-{fleet.distraction_alert}"
    }
    at.selectbox(key="f_state").set_value("resolved")
    at.selectbox(key="f_reason").set_value("any").run()
    assert any("Microsleep" in m for m in texts(at, "markdown"))
    at.selectbox(key="f_severity").set_value("critical").run()
    assert any("No alerts match" in i for i in texts(at, "info"))


def test_system_health_shows_dead_letters_and_deliveries(fleet: Fleet) -> None:
    at = app("views/health.py")
    assert not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Dead letters"] == "6"
    assert metrics["Pending"] == "1" and metrics["Failed"] == "1"
    assert metrics["Drivers streaming"] == "3"  # Carol is offline
    assert float(metrics["Fleet frames/s"]) == pytest.approx(50.0)  # 25 + 15 + 10
    frames = [d.value for d in at.dataframe]
    counts = next(f for f in frames if list(f.columns) == ["reason", "count"])
    assert dict(zip(counts["reason"], counts["count"], strict=True)) == {
        "bad_schema": 3,
        "corrupt_frame": 2,
        "oversized": 1,
    }
    titles = [json.loads(c.proto.spec)["title"] for c in at.get("vega_lite_chart")]
    assert "Dead letters per reason" in titles
    assert any("VIGIL_KAFKA__BOOTSTRAP_SERVERS" in i for i in texts(at, "info"))


def test_system_health_shows_consumer_lag(
    fleet: Fleet, kafka_broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIGIL_KAFKA__BOOTSTRAP_SERVERS", kafka_broker.bootstrap)
    at = app("views/health.py")
    assert not at.error and not at.warning
    lag = next(d.value for d in at.dataframe if "lag" in d.value.columns)
    assert set(lag["group"]) == {"vigil-inference", "vigil-aggregator"}
    assert "vigil.frames.v1" in set(lag["topic"])


def test_system_health_explains_unreachable_kafka(
    fleet: Fleet, dashboard_env: pytest.MonkeyPatch
) -> None:
    dashboard_env.setenv("VIGIL_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
    dashboard_env.setenv("VIGIL_DASHBOARD__KAFKA_TIMEOUT_S", "1")
    at = app("views/health.py")
    assert any("Consumer lag unavailable" in w and "127.0.0.1:1" in w for w in texts(at, "warning"))
    assert at.metric  # the database sections still render


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql+psycopg://postgres@127.0.0.1:1/vigil", "Database unavailable"),
        ("not a database url", "bad setting VIGIL_DATABASE__URL"),
    ],
)
def test_database_outage_shows_an_error_on_every_page(
    url: str, says: str, empty_store: Store, dashboard_env: pytest.MonkeyPatch
) -> None:
    at = app()  # logged in before the outage: the session stays logged in
    dashboard_env.setenv("VIGIL_DATABASE__URL", url)
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, [e.value for e in at.exception]
        errors = texts(at, "error")
        assert errors and all(says in e for e in errors), (page, errors)
    # Nobody can log in meanwhile, and the login page says why.
    fresh = AppTest.from_file(str(APP), default_timeout=30).run()
    assert any(says in e for e in texts(fresh, "error"))
    log_in(fresh, *LOGINS[OperatorRole.ADMIN])
    assert not fresh.exception and fresh.text_input(key="login_name") is not None
    assert any(says in e for e in texts(fresh, "error"))


def test_unmigrated_database_says_how_to_fix_it(
    schema_url: str, dashboard_env: pytest.MonkeyPatch
) -> None:
    dashboard_env.setenv("VIGIL_DATABASE__URL", schema_url)
    at = AppTest.from_file(str(APP), default_timeout=30).run()  # no logins without a schema
    assert any("vigil db migrate" in e for e in texts(at, "error"))
