"""Keyset pages of alerts (what the read API lists and exports) and the known-driver check
(SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest

from streams.errors import InputError
from streams.schemas import Alert, AlertReason, AlertState, Severity, alert_id
from streams.store import Store, StoredAlert

T0 = 1_800_000_000.25
REASONS = [AlertReason.MICROSLEEP, AlertReason.DISTRACTION, AlertReason.DROWSINESS]
SEVERITIES = [Severity.CRITICAL, Severity.WARNING, Severity.INFO]


def alert(i: int, detected: float) -> Alert:
    driver = f"d{i % 2}"
    reason = REASONS[i % 3]
    started = T0 + i  # distinct ids
    return Alert(alert_id=alert_id(driver, reason, started), driver_id=driver,
                 vehicle_id=f"v{i % 2}", reason=reason, severity=SEVERITIES[i % 3],
                 started_at=started, detected_at=detected, message=f"alert {i}",
                 evidence={"i": i})


@pytest.fixture
def seeded(store: Store) -> Store:
    # 23 alerts; detected times repeat in threes, so pages must break ties by id.
    store.alerts.upsert_many(alert(i, T0 + 100 + i // 3) for i in range(23))
    newest = store.alerts.find(limit=None)
    store.alerts.ack(newest[0].alert_id, "ana")
    store.alerts.resolve(newest[1].alert_id, "ana")
    return store


def pages(store: Store, size: int, **filters: Any) -> list[list[StoredAlert]]:
    out: list[list[StoredAlert]] = []
    after = None
    while True:
        page = store.alerts.page(**filters, after=after, limit=size)
        if not page:
            return out
        out.append(page)
        after = (page[-1].detected_at, page[-1].alert_id)


def test_pages_cover_every_alert_once_in_the_order_of_find(seeded: Store) -> None:
    everything = seeded.alerts.find(limit=None)
    assert len(everything) == 23
    for size in (1, 4, 7, 23, 50):
        got = [a.alert_id for page in pages(seeded, size) for a in page]
        assert got == [a.alert_id for a in everything], size
        assert all(len(p) <= size for p in pages(seeded, size))


def test_an_alert_arriving_between_pages_neither_repeats_nor_shifts_them(seeded: Store) -> None:
    before = [a.alert_id for a in seeded.alerts.find(limit=None)]
    first = seeded.alerts.page(limit=5)
    late = alert(99, T0 + 1_000)  # newer than everything: it belongs before the cursor
    seeded.alerts.upsert(late)
    after = (first[-1].detected_at, first[-1].alert_id)
    rest = [a.alert_id for a in seeded.alerts.page(after=after, limit=100)]
    assert [a.alert_id for a in first] + rest == before
    assert late.alert_id == seeded.alerts.page(limit=1)[0].alert_id  # a fresh listing has it


def test_filters_combine(seeded: Store) -> None:
    everything = seeded.alerts.find(limit=None)

    def ids(**filters: Any) -> set[str]:
        return {a.alert_id for p in pages(seeded, 4, **filters) for a in p}

    assert ids(severity="warning") == {a.alert_id for a in everything
                                       if a.severity is Severity.WARNING}
    assert ids(driver_id="d1", reason=AlertReason.DISTRACTION) == {
        a.alert_id for a in everything
        if a.driver_id == "d1" and a.reason is AlertReason.DISTRACTION}
    assert ids(vehicle_id="v0") == {a.alert_id for a in everything if a.vehicle_id == "v0"}
    assert ids(states=["acked", AlertState.RESOLVED]) == {everything[0].alert_id,
                                                          everything[1].alert_id}
    assert len(ids(states=[AlertState.OPEN])) == 21
    # since inclusive, until exclusive
    window = ids(since=T0 + 102, until=T0 + 104)
    assert window == {a.alert_id for a in everything if T0 + 102 <= a.detected_at < T0 + 104}
    assert len(window) == 6
    assert ids(severity="warning", states=["resolved"], driver_id="d0") <= ids(
        severity="warning")


def test_bad_filters_and_limits_are_refused(seeded: Store) -> None:
    with pytest.raises(InputError, match="unknown severity"):
        seeded.alerts.page(severity="loud")
    with pytest.raises(InputError, match="unknown state"):
        seeded.alerts.page(states=["gone"])
    with pytest.raises(InputError, match="limit"):
        seeded.alerts.page(limit=0)


def test_has_driver(seeded: Store) -> None:
    assert seeded.series.has_driver("d0") and seeded.series.has_driver("d1")
    assert not seeded.series.has_driver("d2")
