"""Alerts feed: filter by state, reason, severity, driver and time; acknowledge, resolve and
flag alerts true or false positive (flags feed retraining); watch the event clip behind an
alert (faces blurred; loaded only when its panel is opened). Actions need the operator role
(checked again when they run) and are written to the store under the login's name."""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from dashboard import auth, queries, ui
from models.errors import VigilError
from streams.event_clips import ClipSettings
from streams.schemas import AlertReason, AlertState, Severity
from streams.settings import load_settings
from streams.store import AlertFlag, OperatorRole

ANY = "any"
STATES = [queries.UNRESOLVED, *(s.value for s in AlertState), ANY]
_FLASH = "alerts_flash"


def render() -> None:
    st.title("Alerts")
    flash = st.session_state.pop(_FLASH, None)
    if flash is not None:
        kind, text = flash
        (st.success if kind == "ok" else st.error)(text)
    with ui.guard():
        store = ui.get_store()
        drivers = queries.drivers(store)
        c = st.columns(6)
        state = c[0].selectbox("State", STATES, key="f_state", format_func=ui.words)
        reason = c[1].selectbox(
            "Reason", [ANY, *(r.value for r in AlertReason)], key="f_reason", format_func=ui.words
        )
        severity = c[2].selectbox(
            "Severity", [ANY, *(s.value for s in Severity)], key="f_severity", format_func=ui.words
        )
        if st.query_params.get("driver") in drivers:  # a link from the driver page
            st.session_state["f_driver"] = st.query_params.pop("driver")
        if st.session_state.get("f_driver", ANY) not in drivers:
            st.session_state["f_driver"] = ANY
        driver = c[3].selectbox(
            "Driver",
            [ANY, *drivers],
            key="f_driver",
            format_func=lambda d: "Any" if d == ANY else drivers[d],
        )
        with c[4]:
            span = ui.time_range("Detected in", key="f_range", default="24 h", all_time=True)
        limit = c[5].selectbox("Show", [50, 100, 500], key="f_limit")
        feed = queries.alerts(
            store,
            state=None if state == ANY else state,
            reason=None if reason == ANY else reason,
            severity=None if severity == ANY else severity,
            driver_id=None if driver == ANY else driver,
            since=None if span is None else time.time() - span,
            limit=limit,
        )
        if feed.empty:
            st.info(
                "No alerts match these filters." if drivers else ui.EMPTY_FLEET,
                icon=":material/notifications_off:",
            )
            return
        with st.container(horizontal=True, vertical_alignment="center"):
            st.caption(f"{len(feed)} alert(s), newest first")
            st.button("Refresh", icon=":material/refresh:", key="alerts_refresh")
        rows = ui.records(feed)
        clips = queries.clips(store, [row["alert_id"] for row in rows],
                              load_settings(ClipSettings).directory)
        for row in rows:
            _alert(row, drivers, clips[row["alert_id"]])


def _alert(a: dict[str, Any], drivers: dict[str, str], clip: queries.ClipView) -> None:
    aid = a["alert_id"]
    who = auth.current()
    viewer = who is None or not who.may(OperatorRole.OPERATOR)
    with st.container(border=True, key=f"alert-{aid}"):
        with st.container(horizontal=True, vertical_alignment="center"):
            ui.severity_badge(a["severity"])
            st.markdown(
                f"**{ui.words(a['reason'])}** · "
                f"{ui.escape(drivers.get(a['driver_id'], a['driver_id']))} · "
                f"vehicle {ui.escape(a['vehicle_id'])}"
            )
            st.badge(ui.words(a["state"]), color="gray")
            if a["flag"]:
                tp = a["flag"] == AlertFlag.TRUE_POSITIVE.value
                st.badge(ui.words(a["flag"]), color="green" if tp else "violet")
        st.markdown(ui.escape(a["message"]))
        lines = [a["evidence_summary"], _lifecycle(a)]
        st.caption("  \n".join(ui.escape(line) for line in lines if line))
        with st.container(horizontal=True, vertical_alignment="bottom"):
            st.text_input(
                "Note",
                key=f"note-{aid}",
                label_visibility="collapsed",
                placeholder="Note (optional, saved with a flag)",
                width=320,
                disabled=viewer,
            )
            open_ = a["state"] == AlertState.OPEN.value
            done = a["state"] == AlertState.RESOLVED.value
            for action, label, icon, disabled in (
                ("ack", "Acknowledge", ":material/done:", not open_),
                ("resolve", "Resolve", ":material/done_all:", done),
                (AlertFlag.TRUE_POSITIVE.value, "True positive", ":material/thumb_up:", False),
                (AlertFlag.FALSE_POSITIVE.value, "False positive", ":material/thumb_down:", False),
            ):
                st.button(
                    label,
                    key=f"{action}-{aid}",
                    icon=icon,
                    disabled=disabled or viewer,
                    help="operators only" if viewer else None,
                    on_click=_act,
                    args=(aid, action),
                )
        _clip(aid, clip)
        with st.expander("Evidence"):
            st.json(a["evidence"])


def _clip(alert_id: str, clip: queries.ClipView) -> None:
    if clip.status != "available" or clip.path is None:
        st.caption(clip.text, help=clip.path)
        return
    # Lazy: the file is read only while the panel is open (a feed may list many alerts).
    panel = st.expander(clip.text, icon=":material/movie:", key=f"clip-{alert_id}",
                        on_change="rerun")
    if panel.open:
        with panel:
            st.video(clip.path, format="video/webm")


def _lifecycle(a: dict[str, Any]) -> str:
    parts = [f"Detected {ui.clock(a['detected'])}"]
    if a["acked_by"]:
        parts.append(f"acknowledged by {a['acked_by']} {ui.clock(a['acked_at'])}")
    if a["resolved_at"] is not None:
        parts.append(f"resolved by {a['resolved_by'] or 'system'} {ui.clock(a['resolved_at'])}")
    if a["flag"]:
        parts.append(f"flagged {ui.words(a['flag']).lower()} by {a['flagged_by']}")
    return " · ".join(parts)


def _act(alert_id: str, action: str) -> None:
    """Button callback (runs before the rerun, so the page shows the new state)."""
    note = st.session_state.get(f"note-{alert_id}")
    try:
        by = auth.require(OperatorRole.OPERATOR).name
        done = queries.apply_action(ui.get_store(), alert_id, action, by, note)
    except VigilError as exc:
        st.session_state[_FLASH] = ("error", f"Alert {alert_id[:8]}: {exc}")
        return
    st.session_state[_FLASH] = ("ok", f"Alert {alert_id[:8]}: {done} by {by}")
    if action in (AlertFlag.TRUE_POSITIVE.value, AlertFlag.FALSE_POSITIVE.value):
        st.session_state[f"note-{alert_id}"] = ""


if __name__ == "__main__":
    render()
