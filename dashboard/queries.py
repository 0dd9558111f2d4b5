"""Every query of the dashboard: pure functions over a :class:`~streams.store.Store` (and
Kafka's admin API) returning pandas frames or dicts. Pages only render what these return.

Times in the frames are tz-aware UTC timestamps (pandas); ``now`` (epoch seconds) is an
argument wherever "recent" matters, so the results are deterministic in tests.

Nothing here imports Streamlit; ``dashboard.ui`` caches what is worth caching (Kafka lag;
database reads stay fresh so an operator's ack shows at once). Store failures propagate as
the store's errors (:class:`~streams.store.StoreUnavailableError`, ...), all
:class:`models.errors.VigilError`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from models.errors import VigilError
from streams.errors import InputError
from streams.event_clips import UnsafePathError, clip_path
from streams.kafka_clients import client_kwargs
from streams.schemas import (
    AlertReason,
    AlertState,
    DriverState,
    Severity,
    sensing_words,
    state_reason_words,
)
from streams.settings import KafkaSettings, StreamSettings, load_settings
from streams.store import AlertFlag, DeliveryStatus, Store, StoredAlert
from streams.topics import CONSUMER_GROUPS, TopicSpec

log = logging.getLogger(__name__)



# --- driver status ----------------------------------------------------------------------


BadgeColor = Literal["red", "orange", "yellow", "blue", "green", "violet", "gray"]


@dataclass(frozen=True)
class Status:
    key: str
    label: str
    color: BadgeColor  # of st.badge
    hex: str  # the same colour for the cards' stripe and the styled table


# Worst first: the fleet is sorted by this order.
STATUSES: tuple[Status, ...] = (
    Status("unresponsive", "Unresponsive", "red", "#b71c1c"),  # eyes closed or away, no reaction
    Status("asleep", "Asleep", "red", "#d32f2f"),
    Status("drowsy", "Drowsy", "orange", "#ef6c00"),
    Status("distracted", "Distracted", "yellow", "#f9a825"),
    Status("no_face", "No face", "violet", "#7b1fa2"),
    Status("cannot_monitor", "Cannot monitor eyes", "blue", "#1565c0"),
    Status("offline", "Offline", "gray", "#757575"),
    # The latest window was stored before the aggregator decided window states (migration
    # 0007) and nothing else says anything: not known to be awake.
    Status("unknown", "State unknown", "gray", "#9e9e9e"),
    Status("alert", "Awake", "green", "#2e7d32"),  # "alert" as in KSS: no sign of fatigue
)
STATUS = {s.key: s for s in STATUSES}
_RANK = {s.key: i for i, s in enumerate(STATUSES)}

_REASON_STATUS: dict[str, str] = {
    AlertReason.SLEEP: "asleep",
    AlertReason.MICROSLEEP: "asleep",
    AlertReason.UNRESPONSIVE: "unresponsive",
    AlertReason.DROWSINESS: "drowsy",
    AlertReason.DISTRACTION: "distracted",
    AlertReason.NO_FACE: "no_face",
    AlertReason.CAMERA_BLOCKED: "no_face",
    AlertReason.SENSING_DEGRADED: "cannot_monitor",
}
# The state the aggregator decided for a window (WindowMetrics.state) -> the dashboard's.
_WINDOW_STATUS: dict[str, str | None] = {
    DriverState.DROWSY: "drowsy",
    DriverState.NO_FACE: "no_face",
    DriverState.CANNOT_MONITOR: "cannot_monitor",
    DriverState.AWAKE: None,  # says nothing against what the alerts say
}
# drivers.last_state is free-form; these spellings map onto the dashboard's states.
_STATE_SYNONYMS = {
    "ok": "alert",
    "awake": "alert",
    "sleep": "asleep",
    "microsleep": "asleep",
    "drowsiness": "drowsy",
    "distraction": "distracted",
    "no face": "no_face",
    "camera_blocked": "no_face",
    "sensing_degraded": "cannot_monitor",
}


def _worst(keys: Iterable[str]) -> str:
    return min(keys, key=_RANK.__getitem__, default="alert")


def _state_of(last_state: str | None) -> str | None:
    if not last_state:
        return None
    key = last_state.strip().lower()
    key = _STATE_SYNONYMS.get(key, key)
    return key if key in STATUS and key != "unknown" else None  # unknown: about windows


def _ts(epoch: float | None) -> pd.Timestamp | None:
    return None if epoch is None else pd.Timestamp(epoch, unit="s", tz="UTC")


def fleet_status(
    store: Store,
    now: float,
    *,
    offline_after_s: float = 180.0,
    recent_alert_s: float = 300.0,
) -> pd.DataFrame:
    """One row per driver, worst first: ``driver_id, name, vehicle_id, status, status_label,
    status_detail, rank, perclos, fatigue_score, kss, blink_rate_per_min, open_alerts,
    active_reasons, last_seen, seen_ago_s``.

    Status: ``offline`` when nothing was heard from the driver for ``offline_after_s``;
    otherwise the worst of what the unresolved alerts of the last ``recent_alert_s`` say
    (unresponsive, sleep/microsleep -> asleep, drowsiness -> drowsy, distraction ->
    distracted, no face/camera blocked -> no face, sensing degraded -> cannot monitor eyes),
    the state the aggregator stored with the latest window, if it closed within
    ``offline_after_s`` (drowsy, no face, cannot monitor eyes; ``unknown`` for a window stored
    before the aggregator decided states), and the stored ``last_state``; ``alert`` (awake)
    when none of them says anything. Nothing here applies a threshold to the signals: the
    aggregator decided. ``status_detail``: the status in words with its cause where there is
    one ("Cannot monitor eyes — eyes hidden (sunglasses, a hand or glare)"). ``window_state``
    and ``window_reasons``: the latest window's stored state (``unknown`` for a window stored
    before states were decided, None without a window) and its reasons in words.
    """
    entries = store.series.fleet_overview()
    recent = [
        a
        for a in store.alerts.find(since=now - recent_alert_s, limit=None)
        if a.state != AlertState.RESOLVED
    ]
    reasons: dict[str, set[str]] = {}
    sensing: dict[str, str] = {}  # driver -> reason of the newest unresolved degraded alert
    for a in recent:  # newest first
        reasons.setdefault(a.driver_id, set()).add(a.reason.value)
        cause = a.evidence.get("sensing")
        if a.reason is AlertReason.SENSING_DEGRADED and isinstance(cause, str):
            sensing.setdefault(a.driver_id, cause)
    rows = []
    for e in entries:
        m = e.latest
        seen_ago = max(now - e.last_seen, 0.0)
        active = sorted(reasons.get(e.driver_id, set()))
        cause = sensing.get(e.driver_id)
        if seen_ago > offline_after_s:
            status = "offline"
        else:
            said = [_REASON_STATUS[r] for r in active if r in _REASON_STATUS]
            if m is not None and m.window_end >= now - offline_after_s:
                window = "unknown" if m.state is None else _WINDOW_STATUS.get(m.state)
                if window is not None:
                    said.append(window)
                if window == "cannot_monitor":
                    cause = m.sensing or cause
            stored = _state_of(e.last_state)
            if stored is not None:
                said.append(stored)
            status = _worst(said)
        rows.append(
            {
                "driver_id": e.driver_id,
                "name": e.name or e.driver_id,
                "vehicle_id": e.vehicle_id,
                "status": status,
                "status_label": STATUS[status].label,
                "status_detail": _detail(status, cause),
                "rank": _RANK[status],
                "perclos": None if m is None else m.perclos,
                "fatigue_score": None if m is None else m.fatigue_score,
                "fatigue_source": source_words(None if m is None else m.fatigue_source),
                "kss": None if m is None else m.kss,
                "drowsiness_state": None if m is None else m.drowsiness_state,
                "window_state": None if m is None else _window_state(m.state),
                "window_reasons": "" if m is None else _reasons(m.state_reasons),
                "blink_rate_per_min": None if m is None else m.blink_rate_per_min,
                "open_alerts": e.open_alerts,
                "active_reasons": ", ".join(active),
                "last_seen": _ts(e.last_seen),
                "seen_ago_s": seen_ago,
            }
        )
    columns = [
        "driver_id",
        "name",
        "vehicle_id",
        "status",
        "status_label",
        "status_detail",
        "rank",
        "perclos",
        "fatigue_score",
        "fatigue_source",
        "kss",
        "drowsiness_state",
        "window_state",
        "window_reasons",
        "blink_rate_per_min",
        "open_alerts",
        "active_reasons",
        "last_seen",
        "seen_ago_s",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    if frame.empty:
        return frame
    frame = frame.sort_values(
        ["rank", "open_alerts", "fatigue_score", "name"],
        ascending=[True, False, False, True],
        na_position="last",
    )
    return frame.reset_index(drop=True)


def _window_state(state: DriverState | None) -> str:
    return "unknown" if state is None else state.value


def _reasons(codes: Iterable[str]) -> str:
    return ", ".join(state_reason_words(c) for c in codes)


def _detail(status: str, sensing: str | None) -> str:
    label = STATUS[status].label
    if status == "cannot_monitor" and sensing:
        return f"{label} — {sensing_words(sensing)}"
    return label


def status_counts(fleet: pd.DataFrame) -> dict[str, int]:
    """Drivers per status key, every status present (zeros included), worst first."""
    counts = fleet["status"].value_counts() if not fleet.empty else pd.Series(dtype=int)
    return {s.key: int(counts.get(s.key, 0)) for s in STATUSES}


def drivers(store: Store) -> dict[str, str]:
    """driver id -> display label ("Name (id)"), sorted by label."""
    labels = {
        e.driver_id: e.driver_id if not e.name else f"{e.name} ({e.driver_id})"
        for e in store.series.fleet_overview()
    }
    return dict(sorted(labels.items(), key=lambda kv: kv[1].lower()))


# --- one driver ---------------------------------------------------------------------------

SERIES_COLUMNS = (
    "time",
    "window_end",
    "frames",
    "face_frames",
    "perclos",
    "blink_count",
    "blink_rate_per_min",
    "blink_duration_mean_s",
    "blink_duration_max_s",
    "long_closures",
    "yawns",
    "off_road_s",
    "fatigue_score",
    "fatigue_source",
    "au_source",
    "kss",
    "drowsiness_score",
    "drowsiness_kss",
    "drowsiness_state",
    "drowsiness_model",
    "degraded_s",
    "sensing",
    "state",
)


def source_words(source: str | None) -> str:
    """Where a window's figure came from, in an operator's words: the rules, the face mesh's
    blendshape proxies, or the learnt network MODEL@VERSION; "" when unknown."""
    if source is None:
        return ""
    if source in ("rules", "blendshapes"):
        return {"rules": "rules (PERCLOS, closures, yawns)",
                "blendshapes": "face-mesh blendshapes"}[source]
    return f"network {source}"


def driver_series(store: Store, driver_id: str, since: float | None = None) -> pd.DataFrame:
    """The driver's windows since ``since``, oldest first; ``time`` is the window start."""
    rows = [
        {"time": _ts(w.window_start), **w.model_dump(exclude={"schema_", "au_rates"})}
        for w in store.series.of_driver(driver_id, since=since)
    ]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=list(SERIES_COLUMNS))
    frame["window_end"] = pd.to_datetime(frame["window_end"], unit="s", utc=True)
    return frame[list(SERIES_COLUMNS)]


# --- alerts -------------------------------------------------------------------------------

ALERT_COLUMNS = (
    "alert_id",
    "detected",
    "started",
    "driver_id",
    "vehicle_id",
    "reason",
    "severity",
    "state",
    "message",
    "evidence",
    "evidence_summary",
    "acked_by",
    "acked_at",
    "resolved_by",
    "resolved_at",
    "flag",
    "flagged_by",
)
UNRESOLVED = "unresolved"  # the alerts feed's default: open or acked


def _fmt_value(key: str, value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return f"{key} {'yes' if value else 'no'}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if key.endswith("_s"):
            return f"{key.removesuffix('_s')} {value:.1f} s"
        return f"{key} {value:.3g}"
    return f"{key} {value}"


def evidence_summary(evidence: Mapping[str, Any], max_items: int = 6) -> str:
    """A one-line reading of an alert's evidence: the signal values, then the time span."""
    parts = []
    for key, value in evidence.items():
        if key in ("from", "to"):
            continue
        if key == "sensing" and isinstance(value, str):  # SENSING_DEGRADED's cause
            parts.append(f"cause: {sensing_words(value)}")
            continue
        text = _fmt_value(key, value)
        if text is not None:
            parts.append(text.replace("_", " "))
    parts = parts[:max_items]
    start, end = evidence.get("from"), evidence.get("to")
    if isinstance(start, (int, float)) and isinstance(end, (int, float)):
        clock = [datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S") for t in (start, end)]
        parts.append(f"{clock[0]}–{clock[1]} UTC ({end - start:.1f} s)")
    return " · ".join(parts)


def _alert_row(a: StoredAlert) -> dict[str, Any]:
    return {
        "alert_id": a.alert_id,
        "detected": _ts(a.detected_at),
        "started": _ts(a.started_at),
        "driver_id": a.driver_id,
        "vehicle_id": a.vehicle_id,
        "reason": a.reason.value,
        "severity": a.severity.value,
        "state": a.state.value,
        "message": a.message,
        "evidence": a.evidence,
        "evidence_summary": evidence_summary(a.evidence),
        "acked_by": a.acked_by,
        "acked_at": _ts(a.acked_at),
        "resolved_by": a.resolved_by,
        "resolved_at": _ts(a.resolved_at),
        "flag": None if a.flag is None else a.flag.value,
        "flagged_by": a.flagged_by,
    }


def alerts(
    store: Store,
    *,
    state: str | None = UNRESOLVED,
    reason: str | None = None,
    driver_id: str | None = None,
    severity: str | None = None,
    since: float | None = None,
    limit: int = 100,
) -> pd.DataFrame:
    """Alerts matching every filter, newest first (at most ``limit``). ``state`` is an
    :class:`AlertState` value, ``"unresolved"`` (open or acked) or None (any)."""
    states: list[str | None] = (
        [AlertState.OPEN.value, AlertState.ACKED.value] if state == UNRESOLVED else [state]
    )
    if severity is not None and severity not in {s.value for s in Severity}:
        valid = ", ".join(s.value for s in Severity)
        raise InputError(f"unknown severity {severity!r}; valid: {valid}")
    found: list[StoredAlert] = []
    for s in states:
        # Severity is filtered here (the store has no such filter), so fetch all of them.
        found += store.alerts.find(
            state=s,
            reason=reason,
            driver_id=driver_id,
            since=since,
            limit=None if severity else limit,
        )
    found = [a for a in found if severity is None or a.severity.value == severity]
    found.sort(key=lambda a: (-a.detected_at, a.alert_id))
    frame = pd.DataFrame([_alert_row(a) for a in found[:limit]], columns=list(ALERT_COLUMNS))
    return frame


@dataclass(frozen=True)
class ClipView:
    """What the alerts page says about an alert's clip. ``status``: ``available`` (``path``
    is a readable file), ``expired`` (retention deleted it), ``missing`` (recorded, but the
    file is not where the row says: another host's disk, or deleted by hand), ``refused``
    (the row names a file that is not the alert's clip in the clip directory) or ``none``."""

    status: Literal["available", "expired", "missing", "refused", "none"]
    text: str
    path: str | None = None
    blurred: bool = True


def clips(store: Store, alert_ids: Iterable[str], clips_dir: Path) -> dict[str, ClipView]:
    """alert id -> its clip's view, for every id given. Only a recorded clip whose file is
    the alert's own in ``clips_dir`` is available: the page serves that file's bytes."""
    ids = list(alert_ids)
    found = store.clips.for_alerts(ids)
    out: dict[str, ClipView] = {}
    for aid in ids:
        c = found.get(aid)
        if c is None:
            out[aid] = ClipView("none", "No clip")
        elif c.purged_at is not None:
            day = datetime.fromtimestamp(c.purged_at, UTC).strftime("%Y-%m-%d")
            out[aid] = ClipView("expired", f"Clip expired (deleted {day} under the retention "
                                "limit)")
        else:
            try:
                path = clip_path(clips_dir, aid, c.path)
            except UnsafePathError:
                log.warning("alert %s: clip row names %r, outside the clip directory %s; "
                            "not served", aid, c.path, clips_dir)
                out[aid] = ClipView("refused", "Clip not shown: its file is not in the clip "
                                    "directory")
                continue
            if not path.is_file():
                out[aid] = ClipView("missing", "Clip file missing", str(path), c.blurred)
                continue
            seconds = c.ended_at - c.started_at
            faces = "faces blurred" if c.blurred else "faces NOT blurred"
            out[aid] = ClipView("available", f"Clip: {c.frames} frames, {seconds:.1f} s, "
                                f"{faces}", str(path), c.blurred)
    return out


ACTIONS = ("ack", "resolve", AlertFlag.TRUE_POSITIVE.value, AlertFlag.FALSE_POSITIVE.value)


def apply_action(store: Store, alert_id: str, action: str, by: str, note: str | None = None) -> str:
    """An operator's action on an alert (one of ``ACTIONS``) -> what happened, in words."""
    by = by.strip() or "operator"
    if action == "ack":
        done = store.alerts.ack(alert_id, by)
        return "acknowledged" if done else "already acknowledged or resolved"
    if action == "resolve":
        done = store.alerts.resolve(alert_id, by)
        return "resolved" if done else "already resolved"
    if action in (AlertFlag.TRUE_POSITIVE.value, AlertFlag.FALSE_POSITIVE.value):
        entry = store.alerts.flag(alert_id, action, by, note=(note or "").strip() or None)
        return f"flagged {entry.label.value.replace('_', ' ')}"
    raise InputError(f"unknown alert action {action!r}; valid: {', '.join(ACTIONS)}")


# --- system health ------------------------------------------------------------------------


def window_throughput(store: Store, since: float) -> pd.DataFrame:
    """Frames per second of every driver's windows starting at or after ``since``:
    ``driver_id, name, time, frames, face_frames, duration_s, fps``."""
    rows = []
    for e in store.series.fleet_overview():
        if e.last_seen < since:
            continue
        for w in store.series.of_driver(e.driver_id, since=since):
            duration = w.window_end - w.window_start
            rows.append(
                {
                    "driver_id": e.driver_id,
                    "name": e.name or e.driver_id,
                    "time": _ts(w.window_start),
                    "frames": w.frames,
                    "face_frames": w.face_frames,
                    "duration_s": duration,
                    "fps": w.frames / duration if duration > 0 else 0.0,
                }
            )
    columns = ["driver_id", "name", "time", "frames", "face_frames", "duration_s", "fps"]
    return pd.DataFrame(rows, columns=columns)


def throughput_summary(windows: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """(per driver ``driver_id, name, windows, frames, fps, face_share``, fleet frames/s).

    A driver's rate is its frames over the time its windows cover; the fleet's is all frames
    over the span from the first window's start to the last one's end."""
    columns = ["driver_id", "name", "windows", "frames", "fps", "face_share"]
    if windows.empty:
        return pd.DataFrame(columns=columns), 0.0
    per = windows.groupby(["driver_id", "name"], as_index=False).agg(
        windows=("frames", "size"),
        frames=("frames", "sum"),
        face_frames=("face_frames", "sum"),
        duration_s=("duration_s", "sum"),
    )
    per["fps"] = per["frames"] / per["duration_s"].where(per["duration_s"] > 0)
    per["face_share"] = per["face_frames"] / per["frames"].where(per["frames"] > 0)
    ends = windows["time"] + pd.to_timedelta(windows["duration_s"], unit="s")
    span = (ends.max() - windows["time"].min()).total_seconds()
    fleet_fps = float(windows["frames"].sum() / span) if span > 0 else 0.0
    per = per.sort_values("fps", ascending=False, na_position="last")
    return per[columns].reset_index(drop=True), fleet_fps


def dead_letter_counts(store: Store, since: float | None = None) -> pd.DataFrame:
    """``reason, count``, most frequent first."""
    counts = store.dead_letters.counts(since=since)
    frame = pd.DataFrame(
        sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])), columns=["reason", "count"]
    )
    return frame


def dead_letters(store: Store, since: float | None = None, limit: int = 50) -> pd.DataFrame:
    """The latest dead letters: ``failed, reason, where, key, error``."""
    rows = [
        {
            "failed": _ts(d.failed_at),
            "reason": d.reason.value,
            "where": d.where,
            "key": d.key,
            "error": d.error,
        }
        for d in store.dead_letters.find(since=since, limit=limit)
    ]
    return pd.DataFrame(rows, columns=["failed", "reason", "where", "key", "error"])


def deliveries(store: Store, limit: int = 100) -> dict[str, Any]:
    """Webhook deliveries: ``{"counts": {status: n}, "pending": frame, "failed": frame}``
    (frames: ``alert_id, endpoint, attempts, last_status_code, last_error, created``)."""
    columns = ["alert_id", "endpoint", "attempts", "last_status_code", "last_error", "created"]

    def frame(items: Iterable[Any]) -> pd.DataFrame:
        return pd.DataFrame(
            [
                (
                    d.alert_id,
                    d.endpoint,
                    d.attempts,
                    d.last_status_code,
                    d.last_error,
                    _ts(d.created_at),
                )
                for d in items
            ],
            columns=columns,
        )

    return {"counts": store.deliveries.counts(),
            "pending": frame(store.deliveries.find(DeliveryStatus.PENDING, limit)),
            "failed": frame(store.deliveries.find(DeliveryStatus.FAILED, limit))}


# --- Kafka consumer lag -------------------------------------------------------------------


class LagUnavailableError(VigilError):
    """Consumer lag could not be read (broker unreachable, a request failed)."""


def _offset_bounds(
    bootstrap: str, tps: list[Any], timeout_ms: int, kafka: KafkaSettings
) -> tuple[dict[Any, int], dict[Any, int]]:
    """(earliest offsets, log-end offsets) of ``tps``; no consumer group is joined.

    ListOffsets(latest) alone is not enough: Tansu answers it with the last record *batch*'s
    base offset + 1, short of the end whenever that batch holds several records. So every
    non-empty partition is also fetched once from there, and the fetch response's high
    watermark (which Tansu gets right) wins when larger."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="vigil-dashboard",
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=max(timeout_ms, 1000) + 1000,
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=64 * 1024,
        **client_kwargs(kafka, "kafka-python"),
    )
    try:
        starts: dict[Any, int] = consumer.beginning_offsets(tps)
        listed: dict[Any, int] = consumer.end_offsets(tps)
        probe = [tp for tp in tps if listed[tp] > starts[tp]]
        if probe:
            consumer.assign(probe)
            for tp in probe:
                consumer.seek(tp, listed[tp] - 1)
            deadline = time.monotonic() + timeout_ms / 1000
            while time.monotonic() < deadline and any(
                consumer.highwater(tp) is None for tp in probe
            ):
                consumer.poll(timeout_ms=100)
        seen = {tp: consumer.highwater(tp) or 0 for tp in probe}
        ends = {tp: max(listed[tp], seen.get(tp, 0)) for tp in tps}
        return starts, ends
    finally:
        consumer.close()


def consumer_lag(
    bootstrap: str,
    timeout_s: float = 3.0,
    groups: Mapping[str, tuple[TopicSpec, ...]] = CONSUMER_GROUPS,
    kafka: KafkaSettings | None = None,
) -> pd.DataFrame:
    """Lag of each consumer group on each topic it consumes: ``group, topic, partitions,
    committed_partitions, end_offset, committed, lag`` (offset sums over the partitions).

    A partition the group never committed counts from its earliest offset (the workers start
    there: ``auto_offset_reset=earliest``). Raises LagUnavailableError naming the problem.
    ``kafka``: the security settings (None: ``VIGIL_KAFKA__*``)."""
    from kafka import KafkaAdminClient, TopicPartition
    from kafka.errors import KafkaError

    kafka = kafka or load_settings(StreamSettings).kafka
    timeout_ms = int(timeout_s * 1000)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="vigil-dashboard",
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
            **client_kwargs(kafka, "kafka-python"),
        )
    except (KafkaError, OSError) as exc:
        raise LagUnavailableError(f"cannot reach Kafka at {bootstrap}: {exc}") from None
    try:
        committed: dict[str, dict[Any, Any]] = {}
        for group in groups:  # one group per request: older brokers accept no more
            committed.update(admin.list_group_offsets({group: None}))
        wanted = {g: {t.name for t in specs} for g, specs in groups.items()}
        for group, offsets in committed.items():
            wanted[group] |= {tp.topic for tp in offsets}
        existing = set(admin.list_topics())
        names = sorted({t for ts in wanted.values() for t in ts} & existing)
        partitions = {
            d["name"]: sorted(p["partition_index"] for p in d["partitions"])
            for d in admin.describe_topics(names)
        }
        tps = [TopicPartition(t, p) for t in names for p in partitions.get(t, [])]
        starts, ends = _offset_bounds(bootstrap, tps, timeout_ms, kafka)
    except (KafkaError, OSError) as exc:
        raise LagUnavailableError(
            f"reading consumer offsets from {bootstrap} failed: {exc!r}"
        ) from None
    finally:
        admin.close()
    rows = []
    for group, topics in wanted.items():
        offsets = committed.get(group, {})
        for topic in sorted(topics):
            if topic not in partitions:
                continue
            end = done = lag = have = 0
            for p in partitions[topic]:
                tp = TopicPartition(topic, p)
                mark = offsets.get(tp)
                position = mark.offset if mark is not None and mark.offset >= 0 else None
                end += ends[tp]
                if position is not None:
                    have += 1
                    done += position
                lag += max(ends[tp] - (starts[tp] if position is None else position), 0)
            rows.append(
                {
                    "group": group,
                    "topic": topic,
                    "partitions": len(partitions[topic]),
                    "committed_partitions": have,
                    "end_offset": end,
                    "committed": done,
                    "lag": lag,
                }
            )
    columns = [
        "group",
        "topic",
        "partitions",
        "committed_partitions",
        "end_offset",
        "committed",
        "lag",
    ]
    return pd.DataFrame(rows, columns=columns)
