"""What every page shares: settings, the store (one per database URL), failures shown as
error boxes instead of tracebacks, status badges, and formatting."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import queries
from dashboard.settings import DashboardSettings
from models.errors import VigilError
from streams.settings import StreamSettings, load_settings
from streams.store import DatabaseSettings, Store, StoreNotMigratedError, StoreUnavailableError

log = logging.getLogger(__name__)

EMPTY_FLEET = (
    "No drivers yet — start cameras with `vigil camera ...` or `vigil demo`. Drivers appear "
    "here as soon as their first window (every 60 s) or alert is stored."
)
# label -> seconds (None: no limit)
RANGES: dict[str, float | None] = {
    "15 min": 15 * 60.0,
    "1 h": 3600.0,
    "6 h": 6 * 3600.0,
    "24 h": 24 * 3600.0,
    "7 days": 7 * 86400.0,
    "All time": None,
}
SEVERITY_COLORS: dict[str, queries.BadgeColor] = {
    "critical": "red",
    "warning": "orange",
    "info": "blue",
}


def settings() -> DashboardSettings:
    return load_settings(DashboardSettings)


def kafka_bootstrap() -> str:
    return load_settings(StreamSettings).kafka.bootstrap_servers.strip()


@st.cache_resource(show_spinner=False)
def _store(url: str) -> Store:
    return Store(url)


def get_store() -> Store:
    """The store of ``VIGIL_DATABASE__URL``, one per URL for the whole server."""
    return _store(load_settings(DatabaseSettings).url.get_secret_value())


@st.cache_data(ttl=10, show_spinner=False)
def consumer_lag(bootstrap: str, timeout_s: float) -> pd.DataFrame:
    """:func:`queries.consumer_lag`, cached for 10 s: it opens connections to Kafka."""
    return queries.consumer_lag(bootstrap, timeout_s)


@contextmanager
def guard() -> Iterator[None]:
    """Shows a failure of the store, Kafka or the settings as an error box, not a traceback
    (the rest of the page still renders)."""
    try:
        yield
    except StoreNotMigratedError as exc:
        log.warning("dashboard: %s", exc)
        st.error(
            f"**The database has no Vigil schema yet.** {exc}. Run `vigil db migrate` "
            "(the aggregator also migrates when it starts).",
            icon=":material/database:",
        )
    except StoreUnavailableError as exc:
        log.warning("dashboard: %s", exc)
        st.error(
            f"**Database unavailable.** {exc}. This page retries on its next refresh.",
            icon=":material/cloud_off:",
        )
    except VigilError as exc:
        log.warning("dashboard: %s", exc)
        st.error(str(exc), icon=":material/error:")


def sidebar(*, admin: bool) -> None:
    """Where the data comes from (for admins: it names the database server)."""
    if admin:
        with st.sidebar, guard():
            st.caption(f"Database: `{get_store().where}`")


def time_range(label: str, key: str, default: str = "1 h", all_time: bool = False) -> float | None:
    """A range picker -> seconds back from now (None: all time)."""
    options = [k for k, v in RANGES.items() if v is not None or all_time]
    choice = st.selectbox(label, options, index=options.index(default), key=key)
    return RANGES[choice]


def status_badge(status: str, label: str | None = None) -> None:
    """The status's badge, saying ``label`` (e.g. the status with its cause) if given."""
    s = queries.STATUS[status]
    st.badge(label or s.label, color=s.color)


def severity_badge(severity: str) -> None:
    st.badge(words(severity), color=SEVERITY_COLORS.get(severity, "gray"))


def status_stripe(status: str) -> None:
    """A thin bar in the status colour (the cards' colour code)."""
    st.markdown(
        f"<div style='height:6px;border-radius:3px;background:{queries.STATUS[status].hex}'></div>",
        unsafe_allow_html=True,
    )


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The frame's rows as dicts, missing values (NaN, NaT) as None."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def words(value: str) -> str:
    """An enum value as words: ``camera_blocked`` -> ``Camera blocked``."""
    return value.replace("_", " ").capitalize()


def driver_identity(row: Mapping[str, Any] | pd.Series, *, large: bool) -> None:
    """A driver's status stripe, name, status badge, ids and when last seen (a fleet card,
    ``large`` for the driver page's header)."""
    status_stripe(row["status"])
    if large:
        st.subheader(escape(row["name"]))
    else:
        st.markdown(f"**{escape(row['name'])}**")
    status_badge(row["status"], row.get("status_detail"))
    st.caption(f"{escape(row['driver_id'])} · vehicle {escape(row['vehicle_id'])} · "
               f"last seen {ago(row['seen_ago_s'])}")


def escape(text: str) -> str:
    """Text shown inside Streamlit markdown as itself."""
    for ch in "\\`*_[]<>#|~$":
        text = text.replace(ch, "\\" + ch)
    return text


def fmt(value: Any, spec: str = ".2f", suffix: str = "") -> str:
    """A number for display; missing values as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    return f"{value:{spec}}{suffix}"


def ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} d ago"


def clock(ts: pd.Timestamp | None) -> str:
    return "–" if ts is None or pd.isna(ts) else ts.strftime("%Y-%m-%d %H:%M:%S UTC")
