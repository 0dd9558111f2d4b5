"""System health: frames per second per driver and fleet-wide, dead letters, webhook
deliveries, and Kafka consumer lag per group and topic. The details (dead-letter errors, failed
deliveries and their endpoints, table sizes, the broker's address) are for admins."""

from __future__ import annotations

import time

import streamlit as st

from dashboard import auth, charts, queries, ui
from streams.redaction import redact
from streams.store import OperatorRole, Store


def render() -> None:
    st.title("System health")
    span = ui.time_range("Over the last", key="health_range", default="15 min") or 900.0
    since = time.time() - span
    who = auth.current()
    admin = who is not None and who.may(OperatorRole.ADMIN)
    if not admin:
        st.caption("Errors, failed deliveries and table sizes are shown to admins only.")
    with ui.guard():
        store = ui.get_store()
        _throughput(store, since)
        _dead_letters(store, since, admin)
        _webhooks(store, admin)
        if admin:
            with st.expander("Rows per table"):
                st.dataframe(store.row_counts())
    _kafka(admin)


def _throughput(store: Store, since: float) -> None:
    st.subheader("Frames per second")
    windows = queries.window_throughput(store, since)
    if windows.empty:
        st.info("No windows closed in this range (each driver's window closes every 60 s).")
        return
    per, fleet_fps = queries.throughput_summary(windows)
    with st.container(horizontal=True):
        st.metric("Fleet frames/s", ui.fmt(fleet_fps, ".1f"), border=True)
        st.metric("Drivers streaming", int((per["fps"] > 0).sum()), border=True)
        st.metric("Frames", int(per["frames"].sum()), border=True)
    left, right = st.columns([2, 3])
    left.dataframe(
        per,
        hide_index=True,
        column_config={
            "name": "Driver",
            "driver_id": "ID",
            "fps": st.column_config.NumberColumn("frames/s", format="%.1f"),
            "face_share": st.column_config.NumberColumn("face in frame", format="percent"),
        },
    )
    right.altair_chart(charts.fps_chart(windows))


def _dead_letters(store: Store, since: float, admin: bool) -> None:
    st.subheader("Dead letters")
    counts = queries.dead_letter_counts(store, since=since)
    if counts.empty:
        st.success("No dead letters in this range.", icon=":material/check_circle:")
        return
    st.metric("Dead letters", int(counts["count"].sum()), border=True)
    left, right = st.columns([2, 3])
    left.altair_chart(charts.dead_letter_bars(counts))
    right.dataframe(counts, hide_index=True)
    if not admin:  # the errors and keys quote what the records carried
        return
    st.caption("Latest dead letters")
    st.dataframe(queries.dead_letters(store, since=since, limit=50), hide_index=True)


def _webhooks(store: Store, admin: bool) -> None:
    st.subheader("Webhook deliveries")
    found = queries.deliveries(store)
    counts = found["counts"]
    with st.container(horizontal=True):
        for status, n in counts.items():
            st.metric(ui.words(status), n, border=True)
    for status in ("pending", "failed"):
        frame = found[status]
        if admin and not frame.empty:
            # Errors stored before redaction existed may quote an endpoint URL and its token.
            frame["last_error"] = frame["last_error"].map(
                lambda e: None if e is None else redact(str(e)))
            st.caption(f"{ui.words(status)} deliveries")
            st.dataframe(frame, hide_index=True)


def _kafka(admin: bool) -> None:
    st.subheader("Kafka consumer lag")
    with ui.guard():
        bootstrap = ui.kafka_bootstrap()
        if not bootstrap:
            st.info(
                "No Kafka broker configured: set `VIGIL_KAFKA__BOOTSTRAP_SERVERS` "
                "(`vigil demo` sets it) to see consumer lag.",
                icon=":material/info:",
            )
            return
        try:
            lag = ui.consumer_lag(bootstrap, ui.settings().kafka_timeout_s)
        except queries.LagUnavailableError as exc:
            st.warning(f"Consumer lag unavailable: {exc}", icon=":material/cloud_off:")
            return
        where = f"Broker {bootstrap} · " if admin else ""
        st.caption(f"{where}messages not yet processed per consumer group")
        with st.container(horizontal=True):
            for group, total in lag.groupby("group", sort=False)["lag"].sum().items():
                st.metric(f"{group} lag", int(total), border=True)
        st.dataframe(lag, hide_index=True)


if __name__ == "__main__":
    render()
