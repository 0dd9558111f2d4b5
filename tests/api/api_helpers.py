"""Read-API test helpers: a small fleet (times relative to now) with more alerts than a page,
and the keys the tests send."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.aggregator import decide_window
from streams.schemas import Alert, AlertReason, Severity, WindowMetrics, alert_id
from streams.store import Store

PAGE = 10  # the test apps' VIGIL_API__MAX_PAGE_SIZE
NAMES = {"d-ana": "Ana Lima", "d-ben": "Ben Ode", "d-cat": "Cat Holm"}
VEHICLES = {"d-ana": "v-1", "d-ben": "v-2", "d-cat": "v-3"}
REASONS = [AlertReason.MICROSLEEP, AlertReason.DISTRACTION, AlertReason.DROWSINESS,
           AlertReason.SENSING_DEGRADED]
SEVERITIES = [Severity.CRITICAL, Severity.WARNING, Severity.INFO]


@dataclass(frozen=True)
class Seeded:
    now: float
    drowsy_alert: str  # Ben's open drowsiness alert, the newest alert
    old_alerts: int  # alerts an hour and more ago (besides the drowsy one)


def window(driver: str, start: float, **over: Any) -> WindowMetrics:
    fields: dict[str, Any] = {
        "driver_id": driver, "vehicle_id": VEHICLES[driver], "window_start": start,
        "window_end": start + 60.0, "frames": 900, "face_frames": 890, "perclos": 0.03,
        "blink_count": 15, "blink_rate_per_min": 15.0, "blink_duration_mean_s": 0.15,
        "blink_duration_max_s": 0.3, "long_closures": 0, "yawns": 0, "off_road_s": 1.0,
        "au_rates": {"AU43": 0.02}, "fatigue_score": 0.1, "kss": 3,
    }  # fmt: skip
    fields.update(over)
    return decide_window(WindowMetrics(**fields))


def alert(i: int, driver: str, detected: float, reason: AlertReason | None = None,
          severity: Severity | None = None) -> Alert:
    reason = reason or REASONS[i % len(REASONS)]
    started = detected - 5 - i / 1000  # a distinct onset (and id) per alert
    return Alert(
        alert_id=alert_id(driver, reason, started), driver_id=driver,
        vehicle_id=VEHICLES[driver], reason=reason,
        severity=severity or SEVERITIES[i % len(SEVERITIES)], started_at=started,
        detected_at=detected, message=f"{reason.value} #{i}",
        evidence={"from": started - 60, "to": started, "perclos": 0.2 + i / 100,
                  "closed_s": 1.5})


def seed(store: Store, now: float) -> Seeded:
    """Ana awake, Ben drowsy (rising fatigue, an open drowsiness alert 90 s ago), Cat
    offline for two hours; 25 older alerts of all three, detected in pairs at the same time
    (pages must break ties), some acknowledged or resolved."""
    t0 = (now // 60) * 60 - 10 * 60
    windows = []
    for i in range(10):
        start = t0 + 60 * i
        windows.append(window("d-ana", start))
        windows.append(window("d-ben", start, perclos=0.05 + 0.03 * i,
                              fatigue_score=0.2 + 0.07 * i, kss=min(9, 3 + i)))
    windows += [window("d-cat", now - 2 * 3600 - 60 * k) for k in range(1, 4)]
    store.series.upsert(windows)
    for driver, name in NAMES.items():
        store.series.touch_driver(driver, VEHICLES[driver], now - 3 * 3600, name=name)
    drowsy = alert(0, "d-ben", now - 90, AlertReason.DROWSINESS, Severity.WARNING)
    drivers = list(NAMES)
    old = [alert(i, drivers[i % 3], now - 3600 - 60 * (i // 2)) for i in range(1, 26)]
    store.alerts.upsert_many([drowsy, *old])
    for a in old[:4]:
        store.alerts.ack(a.alert_id, "night-shift")
    for a in old[4:7]:
        store.alerts.resolve(a.alert_id, None)
    return Seeded(now=now, drowsy_alert=drowsy.alert_id, old_alerts=len(old))


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
