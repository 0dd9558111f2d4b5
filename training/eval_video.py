"""`vigil eval video`: the deployed perception and alert rules scored on labelled real clips.

A clip runs through exactly what a deployed driver's stream runs through: frame by frame the
worker's :class:`~workers.perception.DriverPerception` (opened as the worker opens it), each
result turned into the :class:`~streams.schemas.Observation` the worker publishes
(:func:`workers.inference.frame_observation`), fed to a
:class:`~streams.aggregator.DriverAggregator` with the shipped drowsiness network, as the
aggregator app does. Capture time is :data:`EPOCH` plus the frame's time in the clip; the app's
1 s timer becomes a ``tick`` at every whole second of capture time. The clip's end is not a
camera going silent: no tick runs past the last frame, so windows still open then are not closed
(a clip under 60 s raises no DROWSINESS) and CAMERA_BLOCKED cannot fire.

Labels: ``training/labels/README.md`` (schema ``vigil.video-labels.v1``); a simulator truth
file (``vigil.sim.truth/1``) is read as labels too, through :func:`labels_from_truth`.

Scoring, per clip (frames are the decoded video's 0-based indices, spans inclusive):

- events are matched one to one by overlap (:func:`training.eval_perception.match_intervals`:
  at least half the shorter span, best overlaps first) after widening each detection by
  :data:`TOLERANCE_FRAMES` on both sides; precision, recall and F1 per event type;
- blinks: detected ``blink`` events against labelled ``blinks``;
- long closures: detected ``microsleep``/``sleep`` events (their closed span, where closure is
  at or above the closed level) against labelled ``long_closures``; each match reports both
  kinds (labelled: sleep from ``AggregatorConfig.sleep_s`` of closed span, else microsleep);
- looking away: runs of ``gaze_off_road`` (face-present frames) lasting at least
  :data:`MIN_LOOK_AWAY_S`, frames without a reading bridged up to the aggregator's
  ``max_gap_s`` as its tracks do, against labelled ``looking_away``;
- yawns: the perception's yawn events (``FrameResult.yawns``) against labelled ``yawns``;
- face presence: per-frame agreement of ``face_present`` with the labelled spans;
- winks: every detected eye event (any kind) overlapping a labelled wink is a false event,
  unless it matched a labelled blink or long closure (a wink that ends in a blink);
- ``ignore`` spans: events overlapping them, on either side, and their frames are not scored.

Alerts: every alert the aggregator raises, with its clip time, frame, reason and severity; on
a clip labelled ``attentive`` every one is false. Over a folder: pooled event counts, and false
alerts per hour of attentive footage, of every reason and of the safety reasons
(:data:`SAFETY_REASONS`) alone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import VigilError
from streams.aggregator import AggregatorConfig, DriverAggregator
from streams.aggregator.drowsiness import DrowsinessEstimator, DrowsinessModel
from streams.errors import InputError
from streams.schemas import Alert, AlertReason, NetworkReading, NetworkRole
from streams.settings import load_settings
from training.eval_perception import TRUTH_SCHEMA, match_intervals, prf
from training.simulator.faces import default_shared_dir
from training.variants import ClipVariant
from workers.inference import frame_observation
from workers.perception import open_perception
from workers.serving import DriverNetworks, MicroBatcher, NetworkSet
from workers.settings import PerceptionSettings, ServingSettings
from workers.signals import EyeEvent
from workers.signals.yawns import YawnEvent
from workers.video import VideoReader

log = logging.getLogger(__name__)

LABELS_SCHEMA = "vigil.video-labels.v1"
SPAN_FIELDS = ("face_present", "blinks", "long_closures", "winks", "looking_away", "yawns",
               "ignore")
EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a multiple of the 60 s windows: clip time 0
TICK_S = 1.0  # the aggregator app's timer period (streams.aggregator.agent)
TOLERANCE_FRAMES = 2
MIN_LOOK_AWAY_S = 0.5
SAFETY_REASONS = frozenset({AlertReason.SLEEP, AlertReason.MICROSLEEP, AlertReason.DISTRACTION,
                            AlertReason.UNRESPONSIVE, AlertReason.DROWSINESS})
VEHICLE_ID = "eval"

Span = tuple[int, int]


def default_video_root() -> Path:
    """``../shared/data/video`` beside the repository: where label files' ``video`` points."""
    return default_shared_dir() / "data" / "video"


# --- labels ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoLabels:
    """One clip's labels. spans: field name (:data:`SPAN_FIELDS`) -> sorted inclusive spans.
    from_simulator: converted from a simulator truth file, whose ``video`` is relative to the
    truth file's folder rather than to the shared video root."""

    video: str
    frames: int
    fps: float
    attentive: bool
    spans: dict[str, list[Span]]
    notes: str = ""
    from_simulator: bool = False


def parse_labels(data: Any, source: str = "labels") -> VideoLabels:
    """A ``vigil.video-labels.v1`` object -> VideoLabels; InputError naming what is wrong."""
    if not isinstance(data, dict) or data.get("schema") != LABELS_SCHEMA:
        schema = data.get("schema") if isinstance(data, dict) else None
        raise InputError(f"{source}: not a video labels file (schema {schema!r}, expected "
                         f"{LABELS_SCHEMA!r})")
    try:
        video, frames, fps = str(data["video"]), int(data["frames"]), float(data["fps"])
        attentive = data["attentive"]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{source}: needs video, frames, fps and attentive ({exc})") from None
    if not isinstance(attentive, bool) or frames < 1 or fps <= 0:
        raise InputError(f"{source}: attentive must be true/false, frames >= 1 and fps > 0")
    if "face_present" not in data:
        raise InputError(f"{source}: face_present is missing (an empty list means no face)")
    spans = {name: _spans(data.get(name, []), frames, f"{source}: {name}")
             for name in SPAN_FIELDS}
    return VideoLabels(video, frames, fps, attentive, spans, str(data.get("notes", "")))


def _spans(value: Any, frames: int, where: str) -> list[Span]:
    if not isinstance(value, list):
        raise InputError(f"{where}: expected a list of [first, last] frame spans")
    spans: list[Span] = []
    for item in value:
        if (not isinstance(item, list | tuple) or len(item) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in item)):
            raise InputError(f"{where}: {item!r} is not a [first, last] pair of frame indices")
        a, b = item
        if not 0 <= a <= b < frames:
            raise InputError(f"{where}: span {[a, b]} is outside frames 0..{frames - 1} or "
                             "reversed")
        if spans and a <= spans[-1][1]:
            raise InputError(f"{where}: span {[a, b]} overlaps or precedes {list(spans[-1])}")
        spans.append((a, b))
    return spans


def _runs(mask: Iterable[bool]) -> list[Span]:
    runs: list[Span] = []
    start = None
    k = -1
    for k, on in enumerate(mask):
        if on and start is None:
            start = k
        elif not on and start is not None:
            runs.append((start, k - 1))
            start = None
    if start is not None:
        runs.append((start, k))
    return runs


def labels_from_truth(truth: dict[str, Any]) -> dict[str, Any]:
    """A simulator truth record (``vigil.sim.truth/1``) -> the labels a careful labeller would
    write for its video: blinks as rendered; long closures as their closed span (closure >= 0.8,
    which is where the lids cover the pupils); the glances away; yawns; face present where the
    renderer says the face is visible. Attentive when the profile is ``alert``. The simulator
    renders no winks and nothing unlabellable, so those lists are empty."""
    if truth.get("schema") != TRUTH_SCHEMA:
        raise InputError(f"not a simulator truth record (schema {truth.get('schema')!r})")
    return {
        "schema": LABELS_SCHEMA,
        "video": truth["video"],
        "frames": int(truth["frame_count"]),
        "fps": float(truth["fps"]),
        "attentive": truth["profile"] == "alert",
        "face_present": [list(r) for r in _runs(truth["frames"]["face_visible"])],
        "blinks": [[b["start_frame"], b["end_frame"]] for b in truth["blinks"]],
        "long_closures": [[c["closed_start_frame"], c["closed_end_frame"]]
                          for c in truth["long_closures"]],
        "winks": [],
        "looking_away": [[d["start_frame"], d["end_frame"]] for d in truth["distractions"]],
        "yawns": [[y["start_frame"], y["end_frame"]] for y in truth["yawns"]],
        "ignore": [],
        "notes": (f"converted from simulator truth: {truth['driver_id']}, profile "
                  f"{truth['profile']}, seed {truth['seed']}, face {truth.get('source_face')}"),
    }


def load_labels(path: Path) -> VideoLabels:
    """A labels file, or a simulator truth file read through :func:`labels_from_truth`."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable labels file: {exc}") from None
    if isinstance(data, dict) and data.get("schema") == TRUTH_SCHEMA:
        return replace(parse_labels(labels_from_truth(data), str(path)), from_simulator=True)
    return parse_labels(data, str(path))


def video_path(labels_path: Path, labels: VideoLabels, video_root: Path | None = None) -> Path:
    """Where a labels file's clip is: under ``video_root`` if given; else beside a simulator
    truth file, or under :func:`default_video_root`."""
    if video_root is not None:
        return video_root / labels.video
    if labels.from_simulator:
        return labels_path.parent / labels.video
    return default_video_root() / labels.video


# --- running a clip --------------------------------------------------------------------------


@dataclass
class ClipRun:
    """What the deployed pipeline made of a clip, per decoded frame: indices (N,) frame index
    (frames that did not decode are skipped), times (N,) clip seconds, present (N,)
    face_present, off_road gaze_off_road (None without a reading or a face). total_frames: the
    last decoded frame's index + 1 (frames lost before it included). events: every eye event,
    those still open at the end included; yawns: yawn spans, likewise; alerts: in the order
    raised."""

    fps: float
    total_frames: int
    indices: np.ndarray
    times: np.ndarray
    present: np.ndarray
    off_road: list[bool | None]
    events: list[EyeEvent]
    yawns: list[Span]
    alerts: list[Alert]
    config: AggregatorConfig = field(default_factory=AggregatorConfig)
    # The served networks' readings (VIGIL_SERVING__NETWORKS), those finished after the last
    # frame included; none when no network is served.
    readings: list[NetworkReading] = field(default_factory=list)


def run_clip(video: Path, settings: PerceptionSettings | None = None, engine: str | None = None,
             variant: str | None = None, estimator: DrowsinessEstimator | None = None,
             driver_id: str = "eval", networks: NetworkSet | None = None) -> ClipRun:
    """The clip (or its ``variant``, :mod:`training.variants`) through perception and
    aggregator as deployed (see the module docstring), with the learnt ``networks`` served
    as a worker serves them, if given."""
    settings = settings or load_settings(PerceptionSettings)
    readings: list[NetworkReading] = []
    batcher = None
    aggregator = DriverAggregator(driver_id, VEHICLE_ID, estimator=estimator)
    indices: list[int] = []
    times: list[float] = []
    present: list[bool] = []
    off_road: list[bool | None] = []
    events: list[EyeEvent] = []
    yawns: list[YawnEvent] = []
    alerts: list[Alert] = []
    next_tick = EPOCH + TICK_S
    with VideoReader(video, settings.max_frame_side, settings.max_file_bytes) as reader:
        transform = ClipVariant(variant, video, settings) if variant else None
        perception = None
        try:
            perception = open_perception(settings, reader.fps, engine)
            if networks is not None:
                batcher = MicroBatcher(networks, networks.settings.max_batch,
                                       networks.settings.max_wait_ms)
                perception.networks = DriverNetworks(driver_id, batcher, networks.settings)
            for frame in reader:
                image = frame.image
                if transform is not None:
                    image = transform.apply(image, frame.index, frame.timestamp_ms)
                # The worker stamps frames with their capture time in ms; so do we.
                timestamp_ms = round(EPOCH * 1000) + frame.timestamp_ms
                captured_at = timestamp_ms / 1000.0
                result = perception.process(image, timestamp_ms, frame=frame.index)
                while next_tick <= captured_at:
                    alerts += aggregator.tick(next_tick)[1]
                    next_tick += TICK_S
                obs = frame_observation(driver_id, VEHICLE_ID, captured_at, result, captured_at)
                alerts += aggregator.observe(obs)
                s = result.signals
                indices.append(frame.index)
                times.append(frame.timestamp_ms / 1000.0)
                present.append(s.face_present)
                off_road.append(s.gaze_off_road if s.face_present else None)
                events.extend(result.events)
                yawns.extend(result.yawns)
                readings.extend(result.networks)
            events.extend(perception.finish())
            yawns.extend(perception.yawns.flush())
            if batcher is not None:
                batcher.drain()
                readings.extend(batcher.take(driver_id))
        finally:
            if batcher is not None:
                batcher.close()
            if perception is not None:
                perception.close()
            if transform is not None:
                transform.close()
    # Frames lost after the last decoded one are not counted: a container's declared count is
    # often a few frames off, and labels can only be given to frames that decode.
    total = indices[-1] + 1 if indices else 0
    return ClipRun(reader.fps, total, np.array(indices, dtype=np.int64), np.array(times),
                   np.array(present, dtype=bool), off_road, events,
                   sorted({(y.start_frame, y.end_frame) for y in yawns}),
                   alerts, aggregator.config, readings)


# --- scoring (pure) --------------------------------------------------------------------------


def _overlaps(span: Span, others: Sequence[Span], tolerance: int = 0) -> bool:
    return any(span[0] - tolerance <= b and a <= span[1] + tolerance for a, b in others)


def drop_ignored(spans: Sequence[Span], ignore: Sequence[Span]) -> list[Span]:
    """The spans that overlap no ignore span."""
    return [s for s in spans if not _overlaps(s, ignore)]


def score_events(labelled: Sequence[Span], detected: Sequence[Span], ignore: Sequence[Span] = (),
                 tolerance: int = TOLERANCE_FRAMES) -> dict[str, Any]:
    """Counts, precision/recall/F1 and the unmatched spans of one event type (see the module
    docstring); ``pairs`` lists the matches as (labelled index, detected index) into the
    spans left after dropping the ignored ones (``labelled_spans``, ``detected_spans``)."""
    truth, found = drop_ignored(labelled, ignore), drop_ignored(detected, ignore)
    pairs = match_intervals(truth, found, tolerance=tolerance)
    hit_t, hit_d = {i for i, _ in pairs}, {j for _, j in pairs}
    return {
        "labelled": len(truth), "detected": len(found), "matched": len(pairs),
        **prf(len(pairs), len(truth), len(found)),
        "missed": [list(s) for i, s in enumerate(truth) if i not in hit_t],
        "false": [list(s) for j, s in enumerate(found) if j not in hit_d],
        "pairs": pairs, "labelled_spans": truth, "detected_spans": found,
    }


def look_away_runs(times: np.ndarray, off_road: Sequence[bool | None], fps: float,
                   max_gap_s: float, min_s: float = MIN_LOOK_AWAY_S) -> list[Span]:
    """Frame spans where gaze is off the road for at least ``min_s``. times: (N,) seconds.
    As the aggregator's tracks: a frame without a reading (None) neither ends nor extends a
    run unless nothing but such frames came for more than ``max_gap_s``; an on-road frame ends
    it; a run of n frames lasts from its first frame's time minus one frame interval."""
    runs: list[Span] = []
    start: int | None = None
    last: int | None = None

    def close() -> None:
        nonlocal start, last
        if (start is not None and last is not None
                and times[last] - times[start] + 1.0 / fps >= min_s - 1e-6):
            runs.append((start, last))
        start = last = None

    for k, value in enumerate(off_road):
        gap_too_long = last is not None and times[k] - times[last] > max_gap_s
        if value is True:
            if gap_too_long:
                close()
            if start is None:
                start = k
            last = k
        elif value is False or gap_too_long:
            close()
    close()
    return runs


def face_presence(labelled: Sequence[Span], indices: np.ndarray, present: np.ndarray,
                  total: int, ignore: Sequence[Span] = ()) -> dict[str, Any]:
    """Per-frame agreement of present (N,) bool, at frame indices (N,) of a clip of ``total``
    frames, with the labelled spans; ignore spans and frames that did not decode are left
    out. Also the labelled-present frames found (recall) and faces reported where none is."""
    truth = np.zeros(total, dtype=bool)
    found = np.zeros(total, dtype=bool)
    scored = np.zeros(total, dtype=bool)
    for a, b in labelled:
        truth[a:b + 1] = True
    found[indices] = present
    scored[indices] = True
    for a, b in ignore:
        scored[a:b + 1] = False
    t, p = truth[scored], found[scored]
    return {
        "frames": int(scored.sum()),
        "agreement": float(np.mean(t == p)) if len(t) else None,
        "labelled_present": int(t.sum()),
        "detected_present": int((t & p).sum()),
        "recall": float((t & p).sum() / t.sum()) if t.any() else None,
        "false_present": int((~t & p).sum()),
    }


def closure_kind(span: Span, fps: float, sleep_s: float) -> str:
    """Kind of a labelled long closure from its closed span."""
    return "sleep" if (span[1] - span[0] + 1) / fps >= sleep_s - 1e-6 else "microsleep"


def _event_span(e: EyeEvent) -> Span:
    """A long closure's closed span when it has one, else the event's span."""
    if e.kind != "blink" and e.closed_start_frame is not None and e.closed_end_frame is not None:
        return e.closed_start_frame, e.closed_end_frame
    return e.start_frame, e.end_frame


def score_clip(labels: VideoLabels, run: ClipRun) -> dict[str, Any]:
    """Every figure of one clip (see the module docstring)."""
    spans, ignore = labels.spans, labels.spans["ignore"]
    blinks = [e for e in run.events if e.kind == "blink"]
    longs = [e for e in run.events if e.kind != "blink"]
    blink = score_events(spans["blinks"], [_event_span(e) for e in blinks], ignore)
    long_ = score_events(spans["long_closures"], [_event_span(e) for e in longs], ignore)
    kept_blinks = [e for e in blinks if not _overlaps(_event_span(e), ignore)]
    kept_longs = [e for e in longs if not _overlaps(_event_span(e), ignore)]
    long_["kinds"] = [
        {"labelled": list(long_["labelled_spans"][i]),
         "labelled_kind": closure_kind(long_["labelled_spans"][i], labels.fps,
                                       run.config.sleep_s),
         "detected": list(long_["detected_spans"][j]), "detected_kind": kept_longs[j].kind}
        for i, j in long_["pairs"]]
    long_["detected_kinds"] = [e.kind for e in kept_longs]
    away = [(int(run.indices[a]), int(run.indices[b]))
            for a, b in look_away_runs(run.times, run.off_road, run.fps, run.config.max_gap_s)]
    looking = score_events(spans["looking_away"], away, ignore)
    yawns = score_events(spans["yawns"], run.yawns, ignore)
    winks = drop_ignored(spans["winks"], ignore)
    # A detection that matched a labelled blink or closure is that event, even when it runs
    # into a wink next to it (a wink that ends in a blink).
    matched = ({id(kept_blinks[j]) for _, j in blink["pairs"]}
               | {id(kept_longs[j]) for _, j in long_["pairs"]})
    on_winks = [e for e in run.events if id(e) not in matched
                and _overlaps(_event_span(e), winks, TOLERANCE_FRAMES)]
    alerts = [_alert_entry(a, run) for a in run.alerts]
    safety = [a for a in run.alerts if a.reason in SAFETY_REASONS]
    seconds = run.total_frames / run.fps if run.fps else 0.0
    for score in (blink, long_, looking, yawns):
        for key in ("pairs", "labelled_spans", "detected_spans"):
            score.pop(key)
    return {
        "frames": run.total_frames,
        "frames_decoded": len(run.indices),
        "fps": round(run.fps, 3),
        "seconds": round(seconds, 3),
        "attentive": labels.attentive,
        "blinks": blink,
        "long_closures": long_,
        "looking_away": looking,
        "yawns": yawns,
        "face_present": face_presence(spans["face_present"], run.indices, run.present,
                                      run.total_frames, ignore),
        "winks": {"labelled": len(winks),
                  "false_events": [{"kind": e.kind, "span": list(_event_span(e))}
                                   for e in on_winks]},
        "alerts": alerts,
        "false_alerts": len(alerts) if labels.attentive else None,
        "false_safety_alerts": len(safety) if labels.attentive else None,
        "networks": score_networks(labels, run),
    }


def network_blink_spans(readings: Sequence[NetworkReading]) -> list[Span]:
    """The blink network's events: the windows it calls a blink, overlapping or touching ones
    merged (consecutive windows share the blink they both hold)."""
    spans = sorted((r.window_start_seq, r.window_end_seq) for r in readings
                   if r.role is NetworkRole.BLINK and r.skipped is None
                   and r.outputs.get("blink") == 1.0)
    merged: list[Span] = []
    for a, b in spans:
        if merged and a <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def score_networks(labels: VideoLabels, run: ClipRun) -> dict[str, Any]:
    """The served networks' figures on a clip, beside the landmark path's: blink events
    against labelled blinks (a window-long event matches a blink inside it); fatigue readings
    and how many say fatigued (on an attentive clip every one is false); AU readings and each
    AU's mean probability (the clips carry no AU labels)."""
    ignore = labels.spans["ignore"]
    out: dict[str, Any] = {}
    served = {r.role for r in run.readings}
    counted = [r for r in run.readings if not _overlaps((r.window_start_seq, r.window_end_seq),
                                                          ignore)]
    for role in sorted(served):
        mine = [r for r in counted if r.role is role]
        read = [r for r in mine if r.skipped is None]
        entry: dict[str, Any] = {"model": mine[0].model if mine else None,
                                 "versions": sorted({r.version for r in mine}),
                                 "readings": len(read), "skipped": len(mine) - len(read)}
        if role is NetworkRole.BLINK:
            score = score_events(labels.spans["blinks"], network_blink_spans(read), ignore)
            for key in ("pairs", "labelled_spans", "detected_spans"):
                score.pop(key)
            entry["blinks"] = score
        elif role is NetworkRole.FATIGUE:
            entry["fatigued"] = sum(r.outputs.get("fatigued") == 1.0 for r in read)
            entry["mean_score"] = (round(float(np.mean([r.outputs["fatigue_score"]
                                                        for r in read])), 4) if read else None)
        else:
            names = sorted({k for r in read for k in r.outputs})
            entry["mean_probability"] = {k: round(float(np.mean([r.outputs.get(k, 0.0)
                                                                 for r in read])), 4)
                                         for k in names}
        out[role.value] = entry
    return out


def _alert_entry(alert: Alert, run: ClipRun) -> dict[str, Any]:
    """An alert on the clip's clock; frame: the last frame captured by its detection."""
    at = alert.detected_at - EPOCH
    position = int(np.searchsorted(run.times, at + 1e-6, side="right")) - 1
    return {
        "time_s": round(at, 3), "frame": int(run.indices[max(position, 0)]),
        "onset_s": round(alert.started_at - EPOCH, 3), "reason": alert.reason.value,
        "severity": alert.severity.value, "message": alert.message, "alert_id": alert.alert_id,
    }


# --- clips and folders -----------------------------------------------------------------------


def served_networks() -> NetworkSet | None:
    """The networks VIGIL_SERVING__ says to serve (their configured checkpoints), or None."""
    serving = load_settings(ServingSettings)
    return NetworkSet(serving) if serving.roles else None


def evaluate_clip(video: Path, labels: VideoLabels, settings: PerceptionSettings | None = None,
                  engine: str | None = None, variant: str | None = None,
                  estimator: DrowsinessEstimator | None = None,
                  networks: NetworkSet | None = None) -> dict[str, Any]:
    """Runs and scores one clip. Raises InputError when the labels do not fit the video."""
    settings = settings or load_settings(PerceptionSettings)
    if estimator is None:
        estimator = DrowsinessModel.shipped()
    run = run_clip(video, settings, engine, variant, estimator, driver_id=f"eval:{video.stem}",
                   networks=networks)
    if run.total_frames != labels.frames:
        raise InputError(f"{video}: has {run.total_frames} frames but its labels are for "
                         f"{labels.frames}: labels of another file?")
    warnings: list[str] = []
    if abs(run.fps - labels.fps) > 0.01 * labels.fps:
        warnings.append(f"video at {run.fps:.3f} fps, labels say {labels.fps:.3f}")
        log.warning("%s: video at %.3f fps, labels say %.3f", video, run.fps, labels.fps)
    report: dict[str, Any] = {"video": str(video), "labelled_video": labels.video,
                              "engine": engine or settings.engine, "variant": variant,
                              "warnings": warnings}
    report.update(score_clip(labels, run))
    return report


def evaluate_folder(folder: Path, video_root: Path | None = None,
                    settings: PerceptionSettings | None = None, engine: str | None = None,
                    variant: str | None = None) -> dict[str, Any]:
    """Every ``*.json`` labels file in ``folder``; a clip that cannot be evaluated is reported
    with its error and the others go on."""
    paths = sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else []
    if not paths:
        raise InputError(f"{folder}: no labels files (*.json) found")
    settings = settings or load_settings(PerceptionSettings)
    estimator = DrowsinessModel.shipped()
    networks = served_networks()
    clips: list[dict[str, Any]] = []
    for path in paths:
        entry: dict[str, Any] = {"labels": str(path), "clip": path.stem}
        try:
            labels = load_labels(path)
            video = video_path(path, labels, video_root)
            log.info("evaluating %s (%s)", path.stem, video)
            entry.update(evaluate_clip(video, labels, settings, engine, variant, estimator,
                                       networks))
        except VigilError as exc:
            log.warning("%s: not evaluated: %s", path, exc)
            entry["error"] = str(exc)
        clips.append(entry)
    return {"labels_dir": str(folder), "engine": engine or settings.engine, "variant": variant,
            "clips": clips, "totals": totals([c for c in clips if "error" not in c])}


def totals(clips: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pooled figures over evaluated clips, and false alerts per hour of attentive footage."""
    out: dict[str, Any] = {"clips": len(clips),
                           "seconds": round(sum(c["seconds"] for c in clips), 3)}
    for name in ("blinks", "long_closures", "looking_away", "yawns"):
        scored = [c[name] for c in clips]
        n = {k: sum(s[k] for s in scored) for k in ("labelled", "detected", "matched")}
        out[name] = {**n, **prf(n["matched"], n["labelled"], n["detected"])}
    out["long_closures_kind_agreement"] = _kind_agreement(clips)
    frames = sum(c["face_present"]["frames"] for c in clips)
    agree = sum((c["face_present"]["agreement"] or 0.0) * c["face_present"]["frames"]
                for c in clips)
    out["face_present_agreement"] = agree / frames if frames else None
    out["wink_false_events"] = sum(len(c["winks"]["false_events"]) for c in clips)
    attentive = [c for c in clips if c["attentive"]]
    hours = sum(c["seconds"] for c in attentive) / 3600.0
    false_all = sum(c["false_alerts"] for c in attentive)
    false_safety = sum(c["false_safety_alerts"] for c in attentive)
    out["attentive_hours"] = round(hours, 5)
    out["false_alerts"] = false_all
    out["false_safety_alerts"] = false_safety
    out["false_alerts_per_hour"] = round(false_all / hours, 1) if hours else None
    out["false_safety_alerts_per_hour"] = round(false_safety / hours, 1) if hours else None
    out["networks"] = _network_totals(clips)
    return out


def _network_totals(clips: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pooled network figures: blink events as the landmark path's are pooled; fatigue
    readings that say fatigued on attentive clips (all false)."""
    out: dict[str, Any] = {}
    blink = [c["networks"]["blink"]["blinks"] for c in clips if "blink" in c.get("networks", {})]
    if blink:
        n = {k: sum(s[k] for s in blink) for k in ("labelled", "detected", "matched")}
        out["blink"] = {**n, **prf(n["matched"], n["labelled"], n["detected"])}
    fatigue = [c["networks"]["fatigue"] for c in clips
               if c["attentive"] and "fatigue" in c.get("networks", {})]
    if fatigue:
        out["fatigue_on_attentive"] = {"readings": sum(f["readings"] for f in fatigue),
                                       "fatigued": sum(f["fatigued"] for f in fatigue)}
    return out


def _kind_agreement(clips: Sequence[dict[str, Any]]) -> str | None:
    kinds = [k for c in clips for k in c["long_closures"]["kinds"]]
    if not kinds:
        return None
    same = sum(k["labelled_kind"] == k["detected_kind"] for k in kinds)
    return f"{same}/{len(kinds)}"


# --- text report -----------------------------------------------------------------------------


def _event_row(name: str, s: dict[str, Any], extra: str = "") -> str:
    return (f"  {name:<14}{s['labelled']:>9}{s['detected']:>9}{s['matched']:>9}"
            f"{s['precision']:>10.3f}{s['recall']:>8.3f}{s['f1']:>8.3f}{extra}\n")


def _kinds(s: dict[str, Any]) -> str:
    if not s["kinds"] and not s["detected_kinds"]:
        return ""
    matched = ", ".join(f"{k['labelled_kind']}->{k['detected_kind']}" for k in s["kinds"])
    return f"   matched kinds: {matched or '-'}; detected: {', '.join(s['detected_kinds']) or '-'}"


def format_clip(c: dict[str, Any]) -> str:
    if "error" in c:
        return f"{c['clip']}: not evaluated: {c['error']}\n"
    lost = c["frames"] - c["frames_decoded"]
    head = (f"{Path(c['video']).stem}  {c['labelled_video']}  {c['frames']} frames "
            f"{f'({lost} lost) ' if lost else ''}at "
            f"{c['fps']} fps ({c['seconds']:.1f} s), "
            f"{'attentive' if c['attentive'] else 'not attentive'}, engine {c['engine']}, "
            f"variant {c['variant'] or '-'}\n")
    lines = [head, f"  {'event':<14}{'labelled':>9}{'detected':>9}{'matched':>9}"
                   f"{'precision':>10}{'recall':>8}{'F1':>8}\n",
             _event_row("blinks", c["blinks"]),
             _event_row("long closures", c["long_closures"], _kinds(c["long_closures"])),
             _event_row("looking away", c["looking_away"]),
             _event_row("yawns", c["yawns"])]
    fp = c["face_present"]
    agreement = "-" if fp["agreement"] is None else f"{fp['agreement']:.3f}"
    lines.append(f"  face present  agreement {agreement} over {fp['frames']} frames "
                 f"(labelled present {fp['labelled_present']}, found in {fp['detected_present']};"
                 f" face reported where none: {fp['false_present']})\n")
    w = c["winks"]
    if w["labelled"]:
        false = ", ".join(f"{e['kind']} {e['span'][0]}-{e['span'][1]}" for e in w["false_events"])
        lines.append(f"  winks         {w['labelled']} labelled; eye events on them (false): "
                     f"{false or 'none'}\n")
    alerts = c["alerts"]
    verdict = " (all false: attentive clip)" if c["attentive"] and alerts else ""
    lines.append(f"  alerts        {len(alerts)}{verdict}\n")
    for a in alerts:
        lines.append(f"    {a['time_s']:8.2f} s  frame {a['frame']:>6}  {a['reason']:<13}"
                     f"{a['severity']:<9} {a['message']}\n")
    for role, n in c.get("networks", {}).items():
        what = f"  network {role:<8}{n['model']} {'/'.join(n['versions'])}: {n['readings']} " \
               f"readings, {n['skipped']} skipped"
        if "blinks" in n:
            b = n["blinks"]
            what += (f"; blinks {b['matched']}/{b['labelled']} found, {b['detected']} events, "
                     f"F1 {b['f1']:.3f}")
        if "fatigued" in n:
            what += f"; fatigued {n['fatigued']}, mean score {n['mean_score']}"
        lines.append(what + "\n")
    for warning in c["warnings"]:
        lines.append(f"  warning: {warning}\n")
    return "".join(lines)


def format_report(report: dict[str, Any]) -> str:
    """The text `vigil eval video` prints: each clip, then (for a folder) the totals."""
    clips = report.get("clips", [report])
    text = "".join(format_clip(c) for c in clips)
    if "totals" not in report:
        return text
    t = report["totals"]
    minutes = t["seconds"] / 60.0
    lines = [f"\nall {t['clips']} evaluated clips ({minutes:.1f} min; "
             f"{t['attentive_hours'] * 60:.1f} min attentive)\n",
             f"  {'event':<14}{'labelled':>9}{'detected':>9}{'matched':>9}"
             f"{'precision':>10}{'recall':>8}{'F1':>8}\n"]
    for name, key in (("blinks", "blinks"), ("long closures", "long_closures"),
                      ("looking away", "looking_away"), ("yawns", "yawns")):
        extra = ""
        if key == "long_closures" and t["long_closures_kind_agreement"]:
            extra = f"   kinds agree {t['long_closures_kind_agreement']}"
        lines.append(_event_row(name, t[key], extra))
    fpa = t["face_present_agreement"]
    lines.append(f"  face present agreement {'-' if fpa is None else f'{fpa:.3f}'}; eye events "
                 f"on winks {t['wink_false_events']}\n")
    per_hour = t["false_alerts_per_hour"]
    safety_per_hour = t["false_safety_alerts_per_hour"]
    lines.append(
        f"  false alerts on attentive footage: {t['false_alerts']} "
        f"({'-' if per_hour is None else per_hour} /h); safety alerts "
        f"{t['false_safety_alerts']} ({'-' if safety_per_hour is None else safety_per_hour} /h)"
        "\n")
    nets = t.get("networks", {})
    if "blink" in nets:
        lines.append(_event_row("blinks (net)", nets["blink"]))
    if "fatigue_on_attentive" in nets:
        f = nets["fatigue_on_attentive"]
        lines.append(f"  fatigue network on attentive footage: {f['fatigued']} of "
                     f"{f['readings']} readings say fatigued (all false)\n")
    return text + "".join(lines)
