"""The store on real databases: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from models.errors import VigilError
from streams.errors import InputError
from streams.schemas import (
    Alert,
    AlertReason,
    AlertState,
    DeadLetter,
    DeadLetterReason,
    Severity,
    WindowMetrics,
    alert_id,
)
from streams.store import (
    AlertFlag,
    AlertNotFoundError,
    DeliveryNotFoundError,
    DeliveryStatus,
    Store,
    StoreError,
    StoreNotMigratedError,
    StoreUnavailableError,
    head_revision,
)
from streams.store.database import MIGRATIONS_DIR
from streams.store.models import Base

T0 = 1_760_000_000.125  # an epoch time with a fraction that must survive exactly


def window(driver: str, start: float, vehicle: str = "truck-1", **over: Any) -> WindowMetrics:
    fields: dict[str, Any] = {
        "driver_id": driver,
        "vehicle_id": vehicle,
        "window_start": start,
        "window_end": start + 60.0,
        "frames": 1800,
        "face_frames": 1790,
        "perclos": 0.12,
        "blink_count": 17,
        "blink_rate_per_min": 17.0,
        "blink_duration_mean_s": 0.21,
        "blink_duration_max_s": 0.48,
        "long_closures": 0,
        "yawns": 1,
        "off_road_s": 2.5,
        "au_rates": {"AU01": 0.1, "AU43": 0.05},
        "fatigue_score": 0.33,
        "kss": 5,
    }
    fields.update(over)
    return WindowMetrics.model_validate(fields)


def alert(
    driver: str,
    started: float,
    reason: AlertReason = AlertReason.MICROSLEEP,
    vehicle: str = "truck-1",
    **over: Any,
) -> Alert:
    fields: dict[str, Any] = {
        "alert_id": alert_id(driver, reason, started),
        "driver_id": driver,
        "vehicle_id": vehicle,
        "reason": reason,
        "severity": Severity.CRITICAL,
        "started_at": started,
        "detected_at": started + 1.5,
        "message": f"{reason.value} for {driver}",
        "evidence": {"closed_for_s": 1.4, "perclos": 0.31, "window": [started, started + 60]},
    }
    fields.update(over)
    return Alert.model_validate(fields)


# --- schema -----------------------------------------------------------------------------


def test_migrate_twice_is_a_noop(store: Store) -> None:
    store.series.upsert([window("d1", T0)])
    newest = max(p.name[:4] for p in (MIGRATIONS_DIR / "versions").glob("[0-9]*.py"))
    assert store.db.current_revision() == head_revision() == newest  # one chain, newest on top
    assert store.migrate() == head_revision()
    assert store.db.current_revision() == head_revision()
    assert store.row_counts()["window_metrics"] == 1


def test_migrations_match_the_models(store: Store) -> None:
    with store.db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert diff == []


def test_unmigrated_database_says_to_migrate(db_url: str) -> None:
    with Store(db_url) as s:
        assert s.db.current_revision() is None
        with pytest.raises(StoreNotMigratedError, match="run `vigil db migrate`"):
            s.alerts.upsert(alert("d1", T0))


# --- window metrics ---------------------------------------------------------------------


def test_window_metrics_replay_never_duplicates(store: Store) -> None:
    batch = [window("d1", T0), window("d1", T0 + 60), window("d2", T0, vehicle="van-7")]
    assert store.series.upsert(batch) == 3
    store.series.upsert(batch)  # replayed topic
    store.series.upsert(batch[:1] * 3)  # duplicates inside one batch
    assert store.row_counts()["window_metrics"] == 3
    # A recomputed window replaces the stored values.
    store.series.upsert([window("d1", T0, perclos=0.5, kss=8)])
    series = store.series.of_driver("d1")
    assert [w.window_start for w in series] == [T0, T0 + 60]
    assert (series[0].perclos, series[0].kss) == (0.5, 8)
    assert store.row_counts()["window_metrics"] == 3
    assert store.series.upsert([]) == 0


def test_window_metrics_round_trip_exactly(store: Store) -> None:
    w = window("d1", T0, au_rates={"AU01": 1 / 3, "AU12": 0.0}, perclos=None, kss=None)
    served = window("d1", T0 + 60, fatigue_source="fatigue-nonlocal-r3d18@v3",
                    au_source="blendshapes")
    store.series.upsert([w, served])
    assert store.series.of_driver("d1") == [w, served]


def test_concurrent_replays_neither_duplicate_nor_deadlock(store: Store) -> None:
    batch = [window(f"d{i % 7}", T0 + 60 * i) for i in range(140)]
    errors: list[BaseException] = []

    def replay(items: list[WindowMetrics]) -> None:
        try:
            for _ in range(3):
                store.series.upsert(items)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=replay, args=(batch if i % 2 else batch[::-1],)) for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.row_counts()["window_metrics"] == 140
    assert store.row_counts()["drivers"] == 7


def test_non_finite_numbers_are_stored_alike_on_both_backends(store: Store) -> None:
    w = window("d1", T0, perclos=math.nan, fatigue_score=math.inf, au_rates={"AU01": math.nan})
    store.series.upsert([w])
    (back,) = store.series.of_driver("d1")
    assert (back.perclos, back.fatigue_score, back.au_rates) == (None, None, {})
    a = alert("d1", T0, evidence={"ear": math.nan, "trace": [1.0, math.inf]})
    store.alerts.upsert(a)
    stored = store.alerts.get(a.alert_id)
    assert stored is not None and stored.evidence == {"ear": None, "trace": [1.0, None]}
    with pytest.raises(InputError, match="off_road_s"):
        store.series.upsert([window("d1", T0 + 60, off_road_s=math.nan)])


def test_driver_series_filters_by_time(store: Store) -> None:
    store.series.upsert([window("d1", T0 + 60 * i) for i in (3, 0, 2, 1)])
    store.series.upsert([window("d2", T0)])
    assert [w.window_start for w in store.series.of_driver("d1", since=T0 + 60)] == [
        T0 + 60,
        T0 + 120,
        T0 + 180,
    ]
    assert [w.window_start for w in store.series.of_driver("d1", T0 + 60, T0 + 180)] == [
        T0 + 60,
        T0 + 120,
    ]
    assert store.series.of_driver("nobody") == []


# --- alerts -----------------------------------------------------------------------------


def test_alert_replay_never_duplicates_and_keeps_lifecycle_and_flags(store: Store) -> None:
    a = alert("d1", T0)
    assert store.alerts.upsert(a) is True
    assert store.alerts.ack(a.alert_id, "ops-anna", at=T0 + 10)
    store.alerts.flag(a.alert_id, AlertFlag.FALSE_POSITIVE, "ops-anna", at=T0 + 20)
    assert store.alerts.upsert(a) is False  # replay
    later = alert("d1", T0 + 100)
    assert store.alerts.upsert_many([a, a, later]) == [later.alert_id]
    stored = store.alerts.get(a.alert_id)
    assert stored is not None
    assert (stored.state, stored.acked_by, stored.acked_at) == (
        AlertState.ACKED,
        "ops-anna",
        T0 + 10,
    )
    assert (stored.flag, stored.flagged_at) == (AlertFlag.FALSE_POSITIVE, T0 + 20)
    assert stored.to_alert() == a
    assert store.row_counts()["alerts"] == 2


def test_lifecycle_open_acked_resolved(store: Store) -> None:
    a = alert("d1", T0)
    store.alerts.upsert(a)
    assert store.alerts.get(a.alert_id).state == AlertState.OPEN  # type: ignore[union-attr]
    assert store.alerts.ack(a.alert_id, "ops-anna", at=T0 + 5) is True
    assert store.alerts.ack(a.alert_id, "ops-ben", at=T0 + 6) is False  # already acked
    assert store.alerts.resolve(a.alert_id, "ops-ben", at=T0 + 30) is True
    assert store.alerts.resolve(a.alert_id, "ops-ben", at=T0 + 31) is False
    assert store.alerts.ack(a.alert_id, "ops-carl") is False  # resolved is final
    s = store.alerts.get(a.alert_id)
    assert s is not None
    assert (s.state, s.acked_by, s.acked_at, s.resolved_by, s.resolved_at) == (
        AlertState.RESOLVED,
        "ops-anna",
        T0 + 5,
        "ops-ben",
        T0 + 30,
    )
    # The system resolves an alert nobody acked when the condition clears.
    b = alert("d1", T0 + 100, AlertReason.DISTRACTION)
    store.alerts.upsert(b)
    assert store.alerts.resolve(b.alert_id, None, at=T0 + 110) is True
    s = store.alerts.get(b.alert_id)
    assert s is not None
    assert (s.state, s.acked_at, s.resolved_by, s.resolved_at) == (
        AlertState.RESOLVED,
        None,
        None,
        T0 + 110,
    )


def test_lifecycle_of_an_unknown_alert_raises(store: Store) -> None:
    with pytest.raises(AlertNotFoundError, match="no alert with id 'nope'") as info:
        store.alerts.ack("nope", "ops-anna")
    assert isinstance(info.value, StoreError) and isinstance(info.value, InputError)
    assert not info.value.retryable
    with pytest.raises(AlertNotFoundError):
        store.alerts.resolve("nope")
    with pytest.raises(InputError, match="by must be"):
        store.alerts.ack("nope", "")


def test_flag_history_and_latest_flag(store: Store) -> None:
    a, b = alert("d1", T0), alert("d2", T0)
    store.alerts.upsert_many([a, b])
    store.alerts.flag(a.alert_id, "true_positive", "ops-anna", at=T0 + 10)
    store.alerts.flag(a.alert_id, "false_positive", "ops-ben", "glasses glare", at=T0 + 20)
    # A flag whose time is older than the latest goes to the history only.
    store.alerts.flag(a.alert_id, "true_positive", "ops-carl", at=T0 + 15)
    history = store.alerts.flag_history(a.alert_id)
    assert [(f.label, f.flagged_by, f.note, f.flagged_at) for f in history] == [
        (AlertFlag.TRUE_POSITIVE, "ops-anna", None, T0 + 10),
        (AlertFlag.TRUE_POSITIVE, "ops-carl", None, T0 + 15),
        (AlertFlag.FALSE_POSITIVE, "ops-ben", "glasses glare", T0 + 20),
    ]
    s = store.alerts.get(a.alert_id)
    assert s is not None
    assert (s.flag, s.flagged_by, s.flagged_at) == (AlertFlag.FALSE_POSITIVE, "ops-ben", T0 + 20)
    store.alerts.flag(b.alert_id, AlertFlag.TRUE_POSITIVE, "ops-anna", at=T0 + 30)
    assert [x.alert_id for x in store.alerts.flagged()] == [a.alert_id, b.alert_id]
    assert [x.alert_id for x in store.alerts.flagged("true_positive")] == [b.alert_id]
    assert [x.alert_id for x in store.alerts.flagged(since=T0 + 25)] == [b.alert_id]
    assert store.row_counts()["alert_flags"] == 4


def test_flagging_an_unknown_alert_or_with_a_bad_label_raises(store: Store) -> None:
    a = alert("d1", T0)
    store.alerts.upsert(a)
    with pytest.raises(AlertNotFoundError, match="no alert with id 'missing'"):
        store.alerts.flag("missing", "true_positive", "ops-anna")
    with pytest.raises(InputError, match="valid labels: true_positive, false_positive"):
        store.alerts.flag(a.alert_id, "maybe", "ops-anna")
    assert store.row_counts()["alert_flags"] == 0
    assert store.alerts.get(a.alert_id).flag is None  # type: ignore[union-attr]


def test_alert_queries_filter(store: Store) -> None:
    a1 = alert("d1", T0, AlertReason.MICROSLEEP)
    a2 = alert("d1", T0 + 100, AlertReason.DISTRACTION, severity=Severity.WARNING)
    a3 = alert("d2", T0 + 200, AlertReason.MICROSLEEP, vehicle="van-7")
    store.alerts.upsert_many([a1, a2, a3])
    store.alerts.ack(a1.alert_id, "ops-anna")

    def ids(**filters: Any) -> list[str]:
        return [x.alert_id for x in store.alerts.find(**filters)]

    assert ids() == [a3.alert_id, a2.alert_id, a1.alert_id]  # newest first
    assert ids(state="open") == [a3.alert_id, a2.alert_id]
    assert ids(state=AlertState.ACKED) == [a1.alert_id]
    assert ids(reason="microsleep") == [a3.alert_id, a1.alert_id]
    assert ids(driver_id="d1") == [a2.alert_id, a1.alert_id]
    assert ids(vehicle_id="van-7") == [a3.alert_id]
    assert ids(since=a2.detected_at) == [a3.alert_id, a2.alert_id]
    assert ids(driver_id="d1", reason=AlertReason.MICROSLEEP, state="acked") == [a1.alert_id]
    assert ids(limit=1) == [a3.alert_id]
    (stored,) = store.alerts.find(driver_id="d1", reason="distraction")
    assert stored.to_alert() == a2 and stored.severity == Severity.WARNING
    with pytest.raises(InputError, match="unknown state 'closed'"):
        store.alerts.find(state="closed")


# --- fleet overview ---------------------------------------------------------------------


def test_fleet_overview(store: Store) -> None:
    store.series.upsert([window("d1", T0 + 60 * i, perclos=0.1 * i) for i in range(3)])
    store.series.upsert([window("d2", T0, vehicle="van-7")])
    a1, a2, a3 = alert("d1", T0), alert("d1", T0 + 100), alert("d1", T0 + 200)
    store.alerts.upsert_many([a1, a2, a3, alert("d2", T0 + 10, vehicle="van-7")])
    store.alerts.ack(a2.alert_id, "ops-anna")
    store.alerts.resolve(a3.alert_id)
    store.series.touch_driver("d1", "truck-1", T0 + 400, "drowsy", name="Dana")
    store.series.touch_driver("d1", "truck-9", T0 + 5, "ok")  # late replay: changes nothing
    store.series.touch_driver("d3", "car-2", T0 + 50)

    fleet = {e.driver_id: e for e in store.series.fleet_overview()}
    assert sorted(fleet) == ["d1", "d2", "d3"]
    d1 = fleet["d1"]
    assert (d1.name, d1.vehicle_id, d1.first_seen, d1.last_seen, d1.last_state) == (
        "Dana",
        "truck-1",
        T0,
        T0 + 400,
        "drowsy",
    )
    assert d1.latest == window("d1", T0 + 120, perclos=0.1 * 2)
    assert d1.open_alerts == 1
    assert fleet["d2"].open_alerts == 1 and fleet["d2"].vehicle_id == "van-7"
    assert fleet["d3"].latest is None and fleet["d3"].open_alerts == 0
    assert fleet["d1"].to_dict()["latest"]["window_start"] == T0 + 120
    assert store.row_counts()["vehicles"] == 4  # truck-1, van-7, truck-9, car-2


# --- dead letters -----------------------------------------------------------------------


def test_dead_letters_are_idempotent(store: Store) -> None:
    def dl(offset: int, reason: DeadLetterReason, at: float) -> DeadLetter:
        return DeadLetter.model_validate(
            {
                "reason": reason,
                "error": f"offset {offset} is bad",
                "source_topic": "vigil.frames.v1",
                "partition": 3,
                "offset": offset,
                "key": "d1",
                "failed_at": at,
            }
        )

    first = dl(10, DeadLetterReason.BAD_SCHEMA, T0)
    assert store.dead_letters.record(first) is True
    assert store.dead_letters.record(first) is False  # replay
    assert store.dead_letters.record(dl(10, DeadLetterReason.OVERSIZED, T0 + 1)) is True
    assert store.dead_letters.record(dl(11, DeadLetterReason.BAD_SCHEMA, T0 + 100)) is True
    assert store.row_counts()["dead_letters"] == 3
    assert store.dead_letters.counts() == {"bad_schema": 2, "oversized": 1}
    assert store.dead_letters.counts(since=T0 + 50) == {"bad_schema": 1}
    assert store.dead_letters.find(limit=1) == [dl(11, DeadLetterReason.BAD_SCHEMA, T0 + 100)]
    assert store.dead_letters.find(since=T0 + 1000) == []


# --- webhook deliveries -----------------------------------------------------------------

HOOK = "https://fleet.example/hooks/vigil"


def test_the_outbox_leases_due_deliveries_once_and_never_resends_a_delivered_one(
    store: Store,
) -> None:
    a = alert("d1", T0)
    body = a.to_bytes()
    assert store.deliveries.enqueue(a.alert_id, [HOOK, HOOK + "/backup"], body, at=T0) == 2
    assert store.deliveries.enqueue(a.alert_id, [HOOK], b"replayed", at=T0 + 5) == 0  # replay
    (due,) = store.deliveries.claim_due(HOOK, 10, lease_s=60, at=T0 + 1)
    assert (due.alert_id, due.endpoint, due.attempts, due.retry_from, due.payload) == (
        a.alert_id, HOOK, 0, T0, body)
    # Leased: neither this nor another dispatcher (a second store) takes it again...
    assert store.deliveries.claim_due(HOOK, 10, lease_s=60, at=T0 + 2) == []
    with Store(store.url) as other:
        assert other.deliveries.claim_due(HOOK, 10, lease_s=60, at=T0 + 2) == []
        # ...until the lease runs out (its dispatcher died).
        due = other.deliveries.claim_due(HOOK, 10, lease_s=60, at=T0 + 62)
        assert [d.alert_id for d in due] == [a.alert_id]
    store.deliveries.reschedule(a.alert_id, HOOK, T0 + 100)
    assert store.deliveries.claim_due(HOOK, 10, lease_s=60, at=T0 + 99) == []  # not due yet
    d = store.deliveries.get(a.alert_id, HOOK)
    assert d is not None and (d.status, d.next_attempt_at) == (DeliveryStatus.PENDING, T0 + 100)
    assert len(store.deliveries.claim_due(HOOK, 10, lease_s=60, at=T0 + 100)) == 1
    store.deliveries.mark_delivered(a.alert_id, HOOK, at=T0 + 101)
    store.deliveries.mark_failed(a.alert_id, HOOK, "late failure")  # delivered stays delivered
    assert store.deliveries.redeliver(a.alert_id) == 0  # and is never sent again
    assert store.deliveries.claim_due(HOOK, 10, lease_s=60, at=T0 + 10_000) == []
    d = store.deliveries.get(a.alert_id, HOOK)
    assert d is not None
    assert (d.status, d.created_at, d.delivered_at) == (DeliveryStatus.DELIVERED, T0, T0 + 101)
    assert [p.endpoint for p in store.deliveries.find(DeliveryStatus.PENDING)] == [HOOK + "/backup"]


def test_a_failed_delivery_waits_for_redeliver(store: Store) -> None:
    a, b = alert("d1", T0).alert_id, alert("d2", T0).alert_id
    for x in (a, b):
        store.deliveries.enqueue(x, [HOOK], b"{}", at=T0)
        store.deliveries.mark_failed(x, HOOK, "HTTP 503 after 5 attempts")
    d = store.deliveries.get(a, HOOK)
    assert d is not None and (d.status, d.last_error) == (
        DeliveryStatus.FAILED,
        "HTTP 503 after 5 attempts",
    )
    store.deliveries.enqueue(a, [HOOK], b"{}")  # a replayed alert does not revive it
    assert store.deliveries.claim_due(HOOK, 10, lease_s=60) == []
    assert store.deliveries.redeliver(a, at=T0 + 500) == 1
    (due,) = store.deliveries.claim_due(HOOK, 10, lease_s=60, at=T0 + 500)
    assert (due.alert_id, due.retry_from) == (a, T0 + 500)  # a fresh retry schedule
    assert store.deliveries.redeliver(endpoint="elsewhere") == 0
    assert store.deliveries.redeliver() == 1  # --all: the other one
    assert [d.status for d in store.deliveries.find()] == [DeliveryStatus.PENDING] * 2


def test_stored_delivery_errors_never_keep_a_token(store: Store) -> None:
    a = alert("d1", T0).alert_id
    store.deliveries.enqueue(a, [HOOK], b"{}")
    leak = "ClientResponseError: 400, url=URL('https://fleet.example/hooks?token=s3cr3t-tok')"
    store.deliveries.record_attempt(a, HOOK, 1, None, leak, 3.0)
    assert "s3cr3t-tok" not in (store.deliveries.attempts(a, HOOK)[0].error or "")
    store.deliveries.mark_failed(a, HOOK, f"gave up: {leak}")
    d = store.deliveries.get(a, HOOK)
    assert d is not None and d.last_error is not None
    assert "s3cr3t-tok" not in d.last_error and "fleet.example" in d.last_error


def test_attempts_are_recorded_in_order(store: Store) -> None:
    a = alert("d1", T0).alert_id
    with pytest.raises(DeliveryNotFoundError, match="enqueue it first"):
        store.deliveries.record_attempt(a, HOOK, 1, 500, "boom", 12.0)
    store.deliveries.enqueue(a, [HOOK], b"{}")
    store.deliveries.record_attempt(a, HOOK, 1, 503, "HTTP 503", 120.5, at=T0 + 1)
    store.deliveries.record_attempt(a, HOOK, 2, None, "timed out after 5 s", 5000.0, at=T0 + 3)
    store.deliveries.record_attempt(a, HOOK, 3, 204, None, 80.0, at=T0 + 7)
    store.deliveries.mark_delivered(a, HOOK, at=T0 + 7)
    attempts = store.deliveries.attempts(a, HOOK)
    assert [(x.attempt_no, x.status_code, x.error, x.duration_ms, x.at) for x in attempts] == [
        (1, 503, "HTTP 503", 120.5, T0 + 1),
        (2, None, "timed out after 5 s", 5000.0, T0 + 3),
        (3, 204, None, 80.0, T0 + 7),
    ]
    d = store.deliveries.get(a, HOOK)
    assert d is not None
    assert (d.status, d.attempts, d.last_status_code, d.last_error) == (
        DeliveryStatus.DELIVERED,
        3,
        204,
        None,
    )
    # Attempts after a redeliver go on counting.
    b = alert("d2", T0).alert_id
    store.deliveries.enqueue(b, [HOOK], b"{}")
    for no in (1, 2):
        store.deliveries.record_attempt(b, HOOK, no, 503, "HTTP 503", 10.0)
    store.deliveries.mark_failed(b, HOOK, "gave up")
    assert store.deliveries.redeliver(b) == 1
    store.deliveries.record_attempt(b, HOOK, 3, 200, None, 10.0)
    assert [x.attempt_no for x in store.deliveries.attempts(b, HOOK)] == [1, 2, 3]
    assert store.deliveries.get(b, HOOK).attempts == 3  # type: ignore[union-attr]
    with pytest.raises(DeliveryNotFoundError):
        store.deliveries.mark_delivered(a, "https://elsewhere.example")
    with pytest.raises(DeliveryNotFoundError):
        store.deliveries.mark_failed(a, "https://elsewhere.example", "x")


# --- outages ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("postgresql+psycopg://postgres@127.0.0.1:1/x", "127.0.0.1:1/x"),
        ("sqlite:////nonexistent-vigil-dir/sub/vigil.db", "/nonexistent-vigil-dir/sub/vigil.db"),
    ],
    ids=["postgresql", "sqlite"],
)
def test_database_outage_raises_a_one_line_store_error(url: str, where: str) -> None:
    with Store(url) as s:
        for call in (
            s.migrate,
            lambda: s.series.upsert([window("d1", T0)]),
            lambda: s.alerts.upsert(alert("d1", T0)),
            s.series.fleet_overview,
        ):
            with pytest.raises(StoreUnavailableError) as info:
                call()
            message = str(info.value)
            assert isinstance(info.value, VigilError) and info.value.retryable
            assert "\n" not in message
            assert message.startswith("database unavailable: ") and where in message
            assert message.endswith("(retry later)")


def test_password_never_appears_in_errors() -> None:
    with Store("postgresql://vigil:s3cret@127.0.0.1:1/x") as s:
        assert s.url.startswith("postgresql+psycopg://")
        with pytest.raises(StoreUnavailableError) as info:
            s.series.fleet_overview()
    assert "s3cret" not in str(info.value) and "s3cret" not in repr(s)
