"""The dashboard's queries over a real store, and consumer lag against the real broker."""

from __future__ import annotations

import uuid

import pandas as pd
import pytest
from dash_helpers import Fleet, alert, window
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata

from dashboard import queries
from streams.errors import InputError
from streams.schemas import AlertReason, Severity
from streams.store import Store
from streams.topics import TopicSpec


def test_fleet_status_worst_first(fleet: Fleet) -> None:
    table = queries.fleet_status(fleet.store, fleet.now)
    assert list(zip(table["driver_id"], table["status"], strict=True)) == [
        ("d-bob", "drowsy"),
        ("d-dan", "distracted"),
        ("d-carol", "offline"),
        ("d-alice", "alert"),
    ]
    bob = table.iloc[0]
    assert bob["name"] == "Bob Okafor" and bob["vehicle_id"] == "v-102"
    assert bob["perclos"] == pytest.approx(0.32) and bob["kss"] == 8
    assert bob["open_alerts"] == 1 and bob["active_reasons"] == "drowsiness"
    carol = table.set_index("driver_id").loc["d-carol"]
    assert carol["open_alerts"] == 1 and carol["active_reasons"] == ""  # too old to be current
    assert queries.status_counts(table) == {
        "unresponsive": 0,
        "asleep": 0,
        "drowsy": 1,
        "distracted": 1,
        "no_face": 0,
        "cannot_monitor": 0,
        "offline": 1,
        "unknown": 0,
        "alert": 1,
    }
    # The state the aggregator stored with Bob's latest window, and why, as it stored them.
    assert bob["window_state"] == "drowsy"
    assert bob["window_reasons"] == "KSS at the must-warn level, PERCLOS at the drowsy criterion"
    alice = table.set_index("driver_id").loc["d-alice"]
    assert (alice["window_state"], alice["window_reasons"]) == ("awake", "")


def test_fleet_status_from_alerts_windows_and_stored_state(empty_store: Store) -> None:
    now = 1_800_000_000.0
    s = empty_store
    s.series.upsert(
        [
            window("sleepy", "v1", now - 120),
            window("blocked", "v2", now - 120, face_frames=0, perclos=None, kss=None),
            window("tired", "v3", now - 120, kss=7, perclos=0.1),
            window("fine", "v4", now - 120),
            window("marked", "v5", now - 120),
        ]
    )
    s.alerts.upsert(
        alert("sleepy", "v1", AlertReason.SLEEP, Severity.CRITICAL, now - 10, "Eyes closed 3.2 s")
    )
    s.alerts.upsert(
        alert(
            "frozen",
            "v6",
            AlertReason.UNRESPONSIVE,
            Severity.CRITICAL,
            now - 5,
            "Driver unresponsive: no return 3 s after the sleep warning",
        )
    )
    s.series.touch_driver("marked", "v5", now - 30, state="no face")
    table = queries.fleet_status(s, now)
    status = dict(zip(table["driver_id"], table["status"], strict=True))
    assert list(table["driver_id"][:2]) == ["frozen", "sleepy"]  # worst first
    assert status == {
        "sleepy": "asleep",
        "tired": "drowsy",
        "blocked": "no_face",
        "marked": "no_face",
        "fine": "alert",
        "frozen": "unresponsive",
    }
    reasons = dict(zip(table["driver_id"], table["window_reasons"], strict=True))
    assert reasons["tired"] == "KSS at the may-warn level"
    assert reasons["blocked"] == "no face in view"
    assert reasons["frozen"] == ""  # no window at all: no window state either
    assert pd.isna(table.set_index("driver_id").loc["frozen", "window_state"])
    # An acknowledged alert still describes the driver; a resolved one no longer does.
    sleep_id = s.alerts.find(driver_id="sleepy")[0].alert_id
    s.alerts.ack(sleep_id, "ops")
    assert queries.fleet_status(s, now).set_index("driver_id").loc["sleepy", "status"] == "asleep"
    s.alerts.resolve(sleep_id, "ops")
    row = queries.fleet_status(s, now).set_index("driver_id").loc["sleepy"]
    assert row["status"] == "alert"
    # Nothing heard for longer than offline_after_s: offline, whatever came before.
    later = queries.fleet_status(s, now + 600, offline_after_s=180)
    assert set(later["status"]) == {"offline"}


def test_windows_stored_before_states_were_decided_show_unknown(empty_store: Store) -> None:
    """A window from before migration 0007 carries no decision: the dashboard says so and
    never decides one from its numbers, however drowsy they look; alerts still count."""
    now = 1_800_000_000.0
    s = empty_store
    s.series.upsert(
        [
            window("old", "v1", now - 120, decided=False, kss=9, perclos=0.4),
            window("old-sleepy", "v2", now - 120, decided=False),
            window("old-stale", "v3", now - 600, decided=False),
            window("new", "v4", now - 120),
        ]
    )
    s.series.touch_driver("old-stale", "v3", now - 30)  # heard from, but its window is too old
    s.alerts.upsert(
        alert("old-sleepy", "v2", AlertReason.SLEEP, Severity.CRITICAL, now - 10, "Eyes closed")
    )
    table = queries.fleet_status(s, now).set_index("driver_id")
    assert dict(table["status"]) == {
        "old": "unknown",
        "old-sleepy": "asleep",
        "old-stale": "alert",
        "new": "alert",
    }
    assert table.loc["old", "status_detail"] == "State unknown"
    assert (table.loc["old", "window_state"], table.loc["old", "window_reasons"]) == (
        "unknown", "")
    assert table.loc["old", "kss"] == 9  # its numbers are still shown as stored
    assert list(table.index) == ["old-sleepy", "old", "new", "old-stale"]  # worst first
    counts = queries.status_counts(table.reset_index())
    assert (counts["unknown"], counts["asleep"], counts["alert"]) == (1, 1, 2)


def test_fleet_status_of_an_empty_store(empty_store: Store) -> None:
    table = queries.fleet_status(empty_store, 1_800_000_000.0)
    assert table.empty and "status" in table.columns
    assert set(queries.status_counts(table).values()) == {0}


def test_the_dashboard_says_where_each_fatigue_figure_came_from(empty_store: Store) -> None:
    now = 1_800_000_000.0
    empty_store.series.upsert([
        window("net", "v1", now - 180, fatigue_source="rules", au_source="blendshapes"),
        window("net", "v1", now - 120, fatigue_source="fatigue-nonlocal-r3d18@v4",
               au_source="satnet@v2"),
        window("old", "v2", now - 120),  # stored before sources were recorded
    ])
    table = queries.fleet_status(empty_store, now).set_index("driver_id")
    assert table.loc["net", "fatigue_source"] == "network fatigue-nonlocal-r3d18@v4"
    assert table.loc["old", "fatigue_source"] == ""
    series = queries.driver_series(empty_store, "net")
    assert [queries.source_words(v) for v in series["fatigue_source"]] == [
        "rules (PERCLOS, closures, yawns)", "network fatigue-nonlocal-r3d18@v4"]
    assert list(series["au_source"]) == ["blendshapes", "satnet@v2"]


def test_driver_series_and_alert_feed(fleet: Fleet) -> None:
    series = queries.driver_series(fleet.store, "d-bob", since=fleet.now - 600)
    assert 9 <= len(series) <= 10 and series["time"].is_monotonic_increasing
    assert series["perclos"].iloc[-1] == pytest.approx(0.32)
    assert isinstance(series["time"].dtype, pd.DatetimeTZDtype)
    assert queries.driver_series(fleet.store, "nobody").empty

    feed = queries.alerts(fleet.store)  # unresolved, any age
    assert list(feed["driver_id"]) == ["d-dan", "d-bob", "d-carol"]  # newest first
    assert list(queries.alerts(fleet.store, state=None, driver_id="d-bob")["reason"]) == [
        "drowsiness",
        "microsleep",
    ]
    assert queries.alerts(fleet.store, severity="critical").empty
    assert len(queries.alerts(fleet.store, state=None, limit=2)) == 2
    with pytest.raises(InputError, match="unknown severity 'bad'"):
        queries.alerts(fleet.store, severity="bad")


def test_apply_action(fleet: Fleet) -> None:
    aid = fleet.drowsy_alert
    assert queries.apply_action(fleet.store, aid, "ack", "ops") == "acknowledged"
    assert queries.apply_action(fleet.store, aid, "ack", "ops") == (
        "already acknowledged or resolved"
    )
    assert queries.apply_action(fleet.store, aid, "false_positive", " ", "  ") == (
        "flagged false positive"
    )
    entry = fleet.store.alerts.flag_history(aid)[-1]
    assert entry.flagged_by == "operator" and entry.note is None  # blank name and note
    with pytest.raises(InputError, match="valid: ack, resolve"):
        queries.apply_action(fleet.store, aid, "delete", "ops")


def test_evidence_summary() -> None:
    text = queries.evidence_summary(
        {
            "from": 1_800_000_000.0,
            "to": 1_800_000_060.0,
            "kss": 9,
            "perclos": 0.31234,
            "closed_s": 3.25,
            "rule": "continuous",
            "confirmed_by_frames": False,
            "yaw": None,
        }
    )
    assert text == (
        "kss 9 · perclos 0.312 · closed 3.2 s · rule continuous · "
        "confirmed by frames no · 08:00:00–08:01:00 UTC (60.0 s)"
    )
    assert queries.evidence_summary({}) == ""


def test_throughput(fleet: Fleet) -> None:
    windows = queries.window_throughput(fleet.store, since=fleet.now - 600)
    assert set(windows["driver_id"]) == {"d-alice", "d-bob", "d-dan"}  # Carol: offline
    per, fleet_fps = queries.throughput_summary(windows)
    assert list(per["driver_id"]) == ["d-bob", "d-alice", "d-dan"]
    assert list(per["fps"]) == pytest.approx([25.0, 15.0, 10.0])
    assert fleet_fps == pytest.approx(50.0)
    empty, zero = queries.throughput_summary(windows.iloc[0:0])
    assert empty.empty and zero == 0.0


def test_dead_letters_and_deliveries(fleet: Fleet) -> None:
    counts = queries.dead_letter_counts(fleet.store)
    assert list(counts.itertuples(index=False, name=None)) == [
        ("bad_schema", 3),
        ("corrupt_frame", 2),
        ("oversized", 1),
    ]
    latest = queries.dead_letters(fleet.store, limit=2)
    assert list(latest["where"]) == ["vigil.frames.v1[0]@100", "vigil.frames.v1[1]@101"]
    found = queries.deliveries(fleet.store)
    assert found["counts"] == {"pending": 1, "delivered": 0, "failed": 1}
    assert list(found["failed"]["alert_id"]) == [fleet.distraction_alert]
    assert found["failed"]["last_status_code"].iloc[0] == 503


def test_consumer_lag_counts_every_record_on_tansu(kafka_broker) -> None:
    """Tansu's ListOffsets answers the last batch's base offset + 1; the lag must still count
    every record of multi-record batches."""
    topic, group = f"lag-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
        producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, linger_ms=100)
        for partition, n in ((0, 7), (1, 3)):
            for _ in range(n):
                producer.send(topic, partition=partition, value=b"x")
            producer.flush()  # one batch per partition
        producer.close()
        admin.alter_group_offsets(group, {TopicPartition(topic, 0): OffsetAndMetadata(2, "", -1)})
    finally:
        admin.close()
    spec = TopicSpec(topic, 2, 3_600_000, "test")
    lag = queries.consumer_lag(kafka_broker.bootstrap, 5.0, {group: (spec,), "idle": (spec,)})
    rows = {r.group: r for r in lag.itertuples()}
    assert (rows[group].end_offset, rows[group].committed, rows[group].lag) == (10, 2, 8)
    assert rows[group].committed_partitions == 1
    assert (rows["idle"].committed_partitions, rows["idle"].lag) == (0, 10)


def test_consumer_lag_unreachable_broker() -> None:
    with pytest.raises(queries.LagUnavailableError, match=r"cannot reach Kafka at 127\.0\.0\.1:1"):
        queries.consumer_lag("127.0.0.1:1", timeout_s=0.5)
