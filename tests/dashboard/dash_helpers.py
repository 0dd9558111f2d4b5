"""Dashboard test helpers: a small seeded fleet (times relative to now) and where things are."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streams.aggregator import decide_window
from streams.schemas import (
    Alert,
    AlertReason,
    DeadLetter,
    DeadLetterReason,
    Severity,
    WindowMetrics,
    alert_id,
)
from streams.store import OperatorRole, Store

if TYPE_CHECKING:
    from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

# role -> (name, password): the local logins every dashboard test database has
LOGINS = {
    OperatorRole.ADMIN: ("ada", "ada-admin-pass"),
    OperatorRole.OPERATOR: ("dana", "dana-operator-pass"),
    OperatorRole.VIEWER: ("vic", "vic-viewer-pass"),
}

NAMES = {
    "d-alice": "Alice Martin",
    "d-bob": "Bob Okafor",
    "d-carol": "Carol Diaz",
    "d-dan": "Dan Novak",
}


@dataclass(frozen=True)
class Fleet:
    """What the seed wrote: the store, its URL, and the ids the tests act on."""

    url: str
    store: Store
    now: float
    drowsy_alert: str  # Bob's open drowsiness alert
    distraction_alert: str  # Dan's open distraction alert


def add_logins(store: Store) -> None:
    for role, (name, password) in LOGINS.items():
        store.operators.set(name, role, password)


def log_in(at: AppTest, name: str, password: str) -> AppTest:
    """Fills in and submits the login form, as a person would."""
    at.text_input(key="login_name").input(name)
    at.text_input(key="login_password").input(password)
    next(b for b in at.button if b.label == "Log in").click().run()
    return at


def window(
    driver: str, vehicle: str, start: float, *, decided: bool = True, **over: Any
) -> WindowMetrics:
    """A closed window as the aggregator emits it: with the state it decided on it (through
    the aggregator's own decision), or, ``decided=False``, as stored before it decided states
    (migration 0007)."""
    fields: dict[str, Any] = {
        "driver_id": driver,
        "vehicle_id": vehicle,
        "window_start": start,
        "window_end": start + 60.0,
        "frames": 900,
        "face_frames": 895,
        "perclos": 0.03,
        "blink_count": 16,
        "blink_rate_per_min": 16.0,
        "blink_duration_mean_s": 0.15,
        "blink_duration_max_s": 0.3,
        "long_closures": 0,
        "yawns": 0,
        "off_road_s": 1.0,
        "au_rates": {"AU43": 0.02},
        "fatigue_score": 0.11,
        "kss": 3,
    }
    fields.update(over)
    metrics = WindowMetrics(**fields)
    return decide_window(metrics) if decided else metrics


def alert(
    driver: str,
    vehicle: str,
    reason: AlertReason,
    severity: Severity,
    at: float,
    message: str,
    **evidence: Any,
) -> Alert:
    return Alert(
        alert_id=alert_id(driver, reason, at - 5),
        driver_id=driver,
        vehicle_id=vehicle,
        reason=reason,
        severity=severity,
        started_at=at - 5,
        detected_at=at,
        message=message,
        evidence={"from": at - 65, "to": at - 5, **evidence},
    )


def seed(store: Store, now: float) -> Fleet:
    """Alice is alert, Bob drowsy (open drowsiness alert, PERCLOS rising), Dan distracted
    (open distraction alert), Carol offline for two hours with an old open alert."""
    t0 = (now // 60) * 60 - 30 * 60  # 30 closed one-minute windows up to about now
    windows = []
    for i in range(30):
        start = t0 + 60 * i
        windows.append(window("d-alice", "v-101", start))
        p = 0.04 + 0.28 * i / 29
        windows.append(
            window(
                "d-bob",
                "v-102",
                start,
                frames=1500,
                face_frames=1490,
                perclos=round(p, 3),
                blink_rate_per_min=14.0 + 8 * i / 29,
                blink_duration_mean_s=0.18 + 0.3 * i / 29,
                blink_duration_max_s=0.4 + 0.8 * i / 29,
                fatigue_score=round(0.1 + 0.76 * i / 29, 3),
                kss=min(9, 3 + i // 5),
                long_closures=1 if i > 25 else 0,
            )
        )
        windows.append(window("d-dan", "v-104", start, frames=600, face_frames=560))
    old = now - 2 * 3600
    windows += [window("d-carol", "v-103", old - 60 * k) for k in range(1, 6)]
    store.series.upsert(windows)
    for driver, name in NAMES.items():
        store.series.touch_driver(
            driver,
            {"d-alice": "v-101", "d-bob": "v-102", "d-carol": "v-103", "d-dan": "v-104"}[driver],
            old - 600,
            name=name,
        )

    drowsy = alert(
        "d-bob",
        "v-102",
        AlertReason.DROWSINESS,
        Severity.WARNING,
        now - 90,
        "Drowsy: KSS 9 (fatigue score 0.86)",
        kss=9,
        fatigue_score=0.86,
        perclos=0.32,
        long_closures=1,
    )
    earlier = alert(
        "d-bob",
        "v-102",
        AlertReason.MICROSLEEP,
        Severity.WARNING,
        now - 1500,
        "Microsleep: eyes closed 1.4 s",
        closed_s=1.4,
    )
    distracted = alert(
        "d-dan",
        "v-104",
        AlertReason.DISTRACTION,
        Severity.WARNING,
        now - 60,
        "Eyes off the road for 3.4 s",
        off_road_s=3.4,
        rule="continuous",
    )
    stale = alert(
        "d-carol",
        "v-103",
        AlertReason.DISTRACTION,
        Severity.WARNING,
        old,
        "Eyes off the road for 4.0 s",
        off_road_s=4.0,
    )
    store.alerts.upsert_many([drowsy, earlier, distracted, stale])
    store.alerts.resolve(earlier.alert_id, "night-shift")

    for i, reason in enumerate(
        [DeadLetterReason.BAD_SCHEMA] * 3
        + [DeadLetterReason.CORRUPT_FRAME] * 2
        + [DeadLetterReason.OVERSIZED]
    ):
        store.dead_letters.record(
            DeadLetter(
                reason=reason,
                error=f"{reason.value} #{i}",
                source_topic="vigil.frames.v1",
                partition=i % 2,
                offset=100 + i,
                key="d-alice",
                failed_at=now - 60 - i,
            )
        )
    store.deliveries.enqueue(drowsy.alert_id, ["fleet-ops"], drowsy.to_bytes())
    store.deliveries.enqueue(distracted.alert_id, ["fleet-ops"], distracted.to_bytes())
    store.deliveries.record_attempt(distracted.alert_id, "fleet-ops", 1, 503, "HTTP 503", 12.0)
    store.deliveries.mark_failed(distracted.alert_id, "fleet-ops", "HTTP 503 after 1 attempt")
    return Fleet(store.url, store, now, drowsy.alert_id, distracted.alert_id)
