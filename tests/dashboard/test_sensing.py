"""Degraded sensing on the dashboard: a driver whose eyes cannot be monitored never shows as
awake; the fleet card, the driver page and the alerts feed say why, in words."""

from __future__ import annotations

import time

from dash_helpers import alert, window
from test_pages import app, texts

from dashboard import queries
from streams.schemas import AlertReason, Severity
from streams.store import Store

SHADES = "Cannot monitor eyes — eyes hidden (sunglasses, a hand or glare)"
TURNED = "Cannot monitor eyes — head turned too far away"


def _seed(store: Store, now: float) -> str:
    """shades: the latest window 50 s degraded (its 10 measured seconds look awake); turned:
    an open SENSING_DEGRADED alert; glance: 10 s degraded, the rest measured; sleepy:
    degraded, but asleep is worse. Returns the turned driver's alert id."""
    start = (now // 60) * 60 - 60
    store.series.upsert([
        window("shades", "v1", start, degraded_s=50.0, sensing="eyes_hidden", kss=None),
        window("turned", "v2", start),
        window("glance", "v3", start, degraded_s=10.0, sensing="face_turned"),
        window("sleepy", "v4", start, degraded_s=55.0, sensing="face_small", kss=None),
    ])
    for driver, name in (("shades", "Sam Shades"), ("turned", "Tara Turner"),
                         ("glance", "Gil Glance"), ("sleepy", "Sid Sleeper")):
        store.series.touch_driver(driver, "v0", now - 5, name=name)
    notice = alert("turned", "v2", AlertReason.SENSING_DEGRADED, Severity.WARNING, now - 20,
                   "Cannot monitor the eyes for 5.0 s: head turned too far away (96 % of frames)",
                   degraded_s=5.0, sensing="face_turned", degraded_share=0.96)
    store.alerts.upsert_many([
        notice,
        alert("sleepy", "v4", AlertReason.SLEEP, Severity.CRITICAL, now - 10, "Eyes closed 3.1 s"),
    ])
    return notice.alert_id


def test_fleet_status_says_who_cannot_be_monitored_and_why(empty_store: Store) -> None:
    now = time.time()
    notice = _seed(empty_store, now)
    table = queries.fleet_status(empty_store, now).set_index("driver_id")
    assert dict(table["status"]) == {
        "shades": "cannot_monitor", "turned": "cannot_monitor", "glance": "alert",
        "sleepy": "asleep",
    }
    assert table.loc["shades", "status_detail"] == SHADES
    assert table.loc["turned", "status_detail"] == TURNED
    assert table.loc["glance", "status_detail"] == "Awake"
    # Resolved: the notice no longer describes the driver, and the window was fine.
    empty_store.alerts.resolve(notice, "ops")
    assert queries.fleet_status(empty_store, now).set_index("driver_id").loc[
        "turned", "status"] == "alert"


def test_the_evidence_of_a_notice_reads_in_words() -> None:
    summary = queries.evidence_summary(
        {"from": 0.0, "to": 5.0, "degraded_s": 5.0, "sensing": "eyes_hidden",
         "degraded_share": 1.0, "reasons": {"eyes_hidden": 150}})
    assert summary.startswith("degraded 5.0 s · cause: eyes hidden (sunglasses, a hand or glare)")


def test_pages_show_cannot_monitor_instead_of_awake(empty_store: Store) -> None:
    _seed(empty_store, time.time())
    fleet = app()
    assert not fleet.error
    badges = [m for m in texts(fleet, "markdown") if "-badge[" in m]
    assert f":blue-badge[{SHADES}]" in badges and f":blue-badge[{TURNED}]" in badges
    assert ":green-badge[Awake]" in badges  # glance: 10 s degraded of a measured minute
    assert {m.label: m.value for m in fleet.metric}["Cannot monitor eyes"] == "2"

    driver = app("views/driver.py", driver="shades")
    assert not driver.error
    assert f":blue-badge[{SHADES}]" in texts(driver, "markdown")

    alerts = app("views/alerts.py")
    alerts.selectbox(key="f_reason").set_value("sensing_degraded").run()
    shown = texts(alerts, "markdown")
    assert any(m.startswith("**Sensing degraded** · Tara Turner") for m in shown)
    assert any("head turned too far away" in m for m in shown)
    assert not any("Sid Sleeper" in m for m in shown)  # the filter holds
