"""One driver: state now, PERCLOS, blink rate, blink duration and fatigue over time, with
the alerts marked; reachable as ``/driver?driver=ID``; refreshes itself."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from dashboard import charts, queries, ui
from streams.schemas import PERCLOS_DROWSY
from streams.store import Store


def render() -> None:
    st.title("Driver")
    with ui.guard():
        store = ui.get_store()
        options = queries.drivers(store)
        if not options:
            st.info(ui.EMPTY_FLEET, icon=":material/person:")
            return
        ids = list(options)
        wanted = st.query_params.get("driver")
        if wanted in options:  # the URL names the driver (links from the other pages)
            st.session_state["driver_pick"] = wanted
        else:
            if wanted:
                st.warning(f"No driver with id {ui.escape(wanted)}.")
            if st.session_state.get("driver_pick") not in options:
                st.session_state["driver_pick"] = ids[0]
        left, right = st.columns([3, 1])
        driver_id = left.selectbox(
            "Driver", ids, key="driver_pick", format_func=options.__getitem__, on_change=_picked
        )
        st.query_params["driver"] = driver_id
        with right:
            span = ui.time_range("Time range", key="driver_range", default="1 h")
        # Windows close every 60 s: refreshing at twice the fleet page's period keeps up.
        live = st.fragment(run_every=2 * ui.settings().refresh_s)(_driver)
        live(store, driver_id, span or 3600.0)


def _picked() -> None:
    st.query_params["driver"] = st.session_state["driver_pick"]


def _driver(store: Store, driver_id: str, span: float) -> None:
    with ui.guard():  # a fragment: its reruns happen outside render()'s guard
        _charts(store, driver_id, span)


def _charts(store: Store, driver_id: str, span: float) -> None:
    cfg = ui.settings()
    now = time.time()
    since = now - span
    fleet = queries.fleet_status(
        store, now, offline_after_s=cfg.offline_after_s, recent_alert_s=cfg.recent_alert_s
    )
    me = fleet[fleet["driver_id"] == driver_id].iloc[0]
    _header(me)
    series = queries.driver_series(store, driver_id, since=since)
    events = queries.alerts(store, state=None, driver_id=driver_id, since=since, limit=500)
    domain = (pd.Timestamp(since, unit="s", tz="UTC"), pd.Timestamp(now, unit="s", tz="UTC"))
    if series.empty:
        st.info(
            f"No windows in this range; {me['name']} was last seen "
            f"{ui.ago(me['seen_ago_s'])}. Pick a longer time range."
        )
    else:
        left, right = st.columns(2)
        left.altair_chart(
            charts.metric_chart(
                series,
                {"perclos": "PERCLOS"},
                "PERCLOS (share of time eyes ≥ 80 % closed)",
                events,
                domain,
                threshold=PERCLOS_DROWSY,
                y_format="%",
            )
        )
        right.altair_chart(
            charts.metric_chart(
                series,
                {"fatigue_score": _fatigue_label(series),
                 "drowsiness_score": "network (blinks vs. baseline)"},
                "Fatigue / drowsiness score (0–1)",
                events,
                domain,
            )
        )
        left.altair_chart(
            charts.metric_chart(
                series,
                {"blink_rate_per_min": "blinks/min"},
                "Blink rate (per minute)",
                events,
                domain,
            )
        )
        right.altair_chart(
            charts.metric_chart(
                series,
                {"blink_duration_mean_s": "mean", "blink_duration_max_s": "max"},
                "Blink duration (s)",
                events,
                domain,
            )
        )
    if events.empty:
        st.caption("No alerts in this range.")
        return
    st.altair_chart(charts.alert_timeline(events, domain))
    st.dataframe(
        events[["detected", "reason", "severity", "state", "message", "evidence_summary", "flag"]],
        hide_index=True,
        column_config={
            "detected": st.column_config.DatetimeColumn("Detected", format="HH:mm:ss"),
            "evidence_summary": "Evidence",
        },
    )
    st.page_link(
        "views/alerts.py",
        label="Handle these alerts",
        icon=":material/notifications:",
        query_params={"driver": driver_id},
    )


def _fatigue_label(series: pd.DataFrame) -> str:
    """The fatigue line's legend: the sources of the figures it plots."""
    sources = sorted({queries.source_words(v) for v in series["fatigue_source"].dropna()} - {""})
    return "fatigue score: " + (", ".join(sources) if sources else "rules")


def _header(me: pd.Series) -> None:
    with st.container(border=True):
        ui.driver_identity(me, large=True)
        with st.container(horizontal=True):
            st.metric("PERCLOS", ui.fmt(me["perclos"], ".0%"))
            st.metric("Fatigue score", ui.fmt(me["fatigue_score"]),
                      help=f"from {me.get('fatigue_source') or 'no source recorded'}")
            st.metric("KSS", ui.fmt(me["kss"], ".0f"))
            st.metric("Blinks look", _state_label(me.get("drowsiness_state")),
                      help="the drowsiness network on the driver's latest 30 blinks, "
                      "normalised against the start of the shift")
            st.metric("Blinks/min", ui.fmt(me["blink_rate_per_min"], ".1f"))
            st.metric("Open alerts", int(me["open_alerts"]))
        if isinstance(me.get("window_state"), str):
            st.caption(_window_words(me))


def _window_words(me: pd.Series) -> str:
    """What the aggregator decided about the latest window, as it stored it."""
    state = str(me["window_state"])
    if state == "unknown":
        return "Latest window: state unknown (stored before the aggregator decided states)"
    reasons = me.get("window_reasons") or ""
    said = state.replace("_", " ")
    return f"Latest window: {said} ({reasons})" if reasons else f"Latest window: {said}"


def _state_label(state: object) -> str:
    return state.replace("_", " ") if isinstance(state, str) else "—"


if __name__ == "__main__":
    render()
