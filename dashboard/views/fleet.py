"""Fleet overview (the default page): every driver's current state, worst first, as
colour-coded cards or a table; refreshes itself every ``VIGIL_DASHBOARD__REFRESH_S``."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import queries, ui

CARDS_PER_ROW = 4
DRIVER_PAGE = "views/driver.py"


def render() -> None:
    st.title("Fleet overview")
    refresh_s = 5.0
    with ui.guard():
        refresh_s = ui.settings().refresh_s
    st.fragment(run_every=refresh_s)(_live)()


def _live() -> None:
    with ui.guard():
        cfg = ui.settings()
        fleet = queries.fleet_status(
            ui.get_store(),
            time.time(),
            offline_after_s=cfg.offline_after_s,
            recent_alert_s=cfg.recent_alert_s,
        )
        if fleet.empty:
            st.info(ui.EMPTY_FLEET, icon=":material/directions_car:")
        else:
            _summary(fleet)
            view = st.segmented_control(
                "View",
                ["Cards", "Table"],
                default="Cards",
                key="fleet_view",
                label_visibility="collapsed",
            )
            if view == "Table":
                _table(fleet)
            else:
                _cards(fleet)
        updated = datetime.now(UTC).strftime("%H:%M:%S UTC")
        st.caption(f"Updated {updated} · refreshes every {cfg.refresh_s:g} s")


def _summary(fleet: pd.DataFrame) -> None:
    counts = queries.status_counts(fleet)
    with st.container(horizontal=True):
        st.metric("Drivers", len(fleet), border=True)
        for status in queries.STATUSES:
            st.metric(status.label, counts[status.key], border=True)


def _cards(fleet: pd.DataFrame) -> None:
    rows = ui.records(fleet)
    for start in range(0, len(rows), CARDS_PER_ROW):
        columns = st.columns(CARDS_PER_ROW)
        for column, row in zip(columns, rows[start : start + CARDS_PER_ROW], strict=False):
            with column, st.container(border=True):
                _card(row)


def _card(row: dict[str, Any]) -> None:
    ui.driver_identity(row, large=False)
    with st.container(horizontal=True):
        st.metric("PERCLOS", ui.fmt(row["perclos"], ".0%"))
        st.metric("Fatigue", ui.fmt(row["fatigue_score"]))
        st.metric("KSS", ui.fmt(row["kss"], ".0f"))
    n = row["open_alerts"]
    if n:
        reasons = f" · {row['active_reasons'].replace('_', ' ')}" if row["active_reasons"] else ""
        st.markdown(f":red[**{n} open alert{'s' if n != 1 else ''}**]{reasons}")
    else:
        st.caption("No open alerts")
    st.page_link(
        DRIVER_PAGE,
        label="Details",
        icon=":material/monitoring:",
        query_params={"driver": row["driver_id"]},
    )


def _table(fleet: pd.DataFrame) -> None:
    shown = fleet[
        [
            "name",
            "driver_id",
            "vehicle_id",
            "status_detail",
            "perclos",
            "fatigue_score",
            "kss",
            "blink_rate_per_min",
            "open_alerts",
            "active_reasons",
            "last_seen",
        ]
    ]
    colours = {
        detail: queries.STATUS[key].hex
        for detail, key in zip(fleet["status_detail"], fleet["status"], strict=True)
    }
    styled = shown.style.map(
        lambda v: f"background-color:{colours.get(v, '')};color:white", subset=["status_detail"]
    )
    st.dataframe(
        styled,
        hide_index=True,
        column_config={
            "name": "Driver",
            "driver_id": "ID",
            "vehicle_id": "Vehicle",
            "status_detail": "Status",
            "perclos": st.column_config.NumberColumn("PERCLOS", format="percent"),
            "fatigue_score": st.column_config.ProgressColumn(
                "Fatigue", min_value=0.0, max_value=1.0, format="%.2f"
            ),
            "kss": st.column_config.NumberColumn("KSS", format="%d"),
            "blink_rate_per_min": st.column_config.NumberColumn("Blinks/min", format="%.1f"),
            "open_alerts": "Open alerts",
            "active_reasons": "Recent reasons",
            "last_seen": st.column_config.DatetimeColumn("Last seen", format="HH:mm:ss"),
        },
    )


if __name__ == "__main__":
    render()
