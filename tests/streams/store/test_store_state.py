"""The aggregator's window decisions in the store (SQLite and PostgreSQL): the columns of
migration 0007, written by the sink's upsert, and windows stored before it."""

from __future__ import annotations

from sqlalchemy import text
from test_store import T0, window
from test_store_sensing import OLD_WINDOW, _migrate_to

from streams.aggregator import decide_window
from streams.schemas import DriverState, StateReason
from streams.store import Store


def test_decided_windows_round_trip_and_a_replay_updates_them(store: Store) -> None:
    drowsy = decide_window(window("d1", T0, kss=8, perclos=0.2))
    awake = decide_window(window("d2", T0))
    assert drowsy.state is DriverState.DROWSY
    assert drowsy.state_reasons == [StateReason.KSS_WARNING, StateReason.PERCLOS]
    assert (awake.state, awake.state_reasons) == (DriverState.AWAKE, [])
    store.series.upsert([drowsy, awake])
    assert store.series.of_driver("d1") == [drowsy]
    assert store.series.of_driver("d2") == [awake]
    latest = {e.driver_id: e.latest for e in store.series.fleet_overview()}
    assert latest == {"d1": drowsy, "d2": awake}
    # Reprocessing decides again and the row follows (one row per window, as ever).
    again = decide_window(window("d1", T0, kss=5, perclos=0.02))
    store.series.upsert([again])
    assert store.series.of_driver("d1") == [again]
    assert again.state is DriverState.AWAKE


def test_an_undecided_window_stays_undecided(store: Store) -> None:
    w = window("d1", T0, kss=9, perclos=0.5)  # nobody decided it: no state is made up
    store.series.upsert([w])
    (back,) = store.series.of_driver("d1")
    assert (back.state, back.state_reasons) == (None, [])
    assert back == w


def test_windows_stored_before_0007_read_back_undecided(db_url: str) -> None:
    with Store(db_url) as s:
        _migrate_to(s, "0006")
        with s.db.engine.begin() as conn:
            conn.execute(text(OLD_WINDOW), {"start": T0})
        s.migrate()
        (old,) = s.series.of_driver("d-old")
        assert (old.state, old.state_reasons, old.blink_count) == (None, [], 15)
        # Downgrading removes exactly the two columns again.
        _migrate_to(s, "0006", downgrade=True)
        with s.db.engine.connect() as conn:
            columns = conn.execute(text("SELECT * FROM window_metrics")).keys()
        assert "state" not in columns and "state_reasons" not in columns
        assert "sensing" in columns
