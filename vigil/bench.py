"""`vigil bench pipeline`: the whole pipeline under a live load, measured from the records.

N cameras publish in real time for a warm-up plus ``seconds``; the embedded broker,
`vigil worker` and `vigil aggregator` (SQLite store in a temporary directory) run as in
production. Afterwards the topics are read back and each frame is followed by its timestamps:

- capture: the camera's clock when the frame was taken (``captured_at``);
- sent: the frame batch's Kafka timestamp (the producer's clock at send: batching + JPEG);
- processed: the worker's clock when its observation was made (``processed_at``: transit,
  queueing, JPEG decode and perception);
- published: the observation's Kafka timestamp (sending it);
- alert, per reason: the alert record's Kafka timestamp against its ``detected_at`` (the
  capture time of the frame that fired a frame rule; for drowsiness the window end, as it
  fires when the window closes, ``grace_s`` later).

The cameras are the driver simulator, whose rendering costs about as much CPU a frame as the
worker, or a replay of pre-encoded JPEG frames (``--source FILE_OR_DIR``), which costs almost
nothing, so a worker's capacity can be measured on the same machine.

Every frame on the frames topic must be named by an observation, whenever it was captured:
one that none names is lost (the duplicates a rebalance's replay makes are counted apart, so
they hide no loss), and the dead letters say why where a worker knew. Only frames captured
after the warm-up count for latency and throughput, so process start-up (models loading, consumer
groups joining) is not mistaken for steady state. CPU seconds per frame are read from /proc
for each process over the measured span.

With ``networks`` the worker also serves those learnt networks (:mod:`workers.serving`) at the
CPU sizes (``workers.serving_bench.SERVING_SIZES``) from untrained checkpoints: a forward pass
costs the same whatever the weights, so these measure cost, never quality. Their readings are
followed too: capture of a window's last frame to the observation that carries its reading.
"""

from __future__ import annotations

import logging
import resource
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from streams.camera import EncodedFrame
from streams.readback import read_topic
from streams.schemas import (
    Alert,
    DeadLetter,
    NetworkRole,
    Observation,
    SchemaError,
    decode_frame_batch,
    decode_record,
)
from streams.topics import ALERTS, DEAD_LETTERS, FRAMES, OBSERVATIONS
from vigil.local import LocalStack, bench_drivers, cpu_seconds
from workers.serving_bench import cost_checkpoints

log = logging.getLogger(__name__)


def serving_env(checkpoints: dict[NetworkRole, Path], **settings: Any) -> dict[str, str]:
    """The worker's environment serving ``checkpoints`` (plus VIGIL_SERVING__ ``settings``)."""
    env = {"VIGIL_SERVING__NETWORKS": ",".join(r.value for r in checkpoints)}
    env.update({f"VIGIL_SERVING__{r.value.upper()}_CHECKPOINT": str(p)
                for r, p in checkpoints.items()})
    env.update({f"VIGIL_SERVING__{k.upper()}": str(v) for k, v in settings.items()})
    return env


def _stats(values_s: list[float]) -> dict[str, float | int | None]:
    if not values_s:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    ms = np.array(values_s) * 1000
    return {"n": len(values_s), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "max_ms": round(float(ms.max()), 1)}


def rss_mb(pid: int) -> float:
    """Resident memory of a live process in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def stage_seconds(port: int) -> dict[str, float]:
    """The worker's seconds so far in each inference stage and in whole frame batches (the
    sums of its ``/metrics`` histograms); empty when its endpoint does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
            text = page.read().decode()
    except OSError as exc:
        log.warning("worker metrics unreadable (%s): no split by stage", exc)
        return {}
    seconds = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "vigil_inference_stage_seconds_sum":
                seconds[sample.labels["stage"]] = sample.value
            elif sample.name == "vigil_frame_batch_seconds_sum":
                seconds["batch"] = sample.value
    return seconds


def _summed(parts: Iterable[dict[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for part in parts:
        for key, value in part.items():
            total[key] = total.get(key, 0.0) + value
    return total


def _wait_for_observations(stack: LocalStack, expected: int, timeout_s: float) -> int:
    """Waits until the worker has published an observation per frame sent (or timeout)."""
    deadline = time.monotonic() + timeout_s
    seen = 0
    while time.monotonic() < deadline:
        seen = len(read_topic(stack.bootstrap, OBSERVATIONS.name, idle_s=1.0))
        if seen >= expected:
            break
        time.sleep(2.0)
    return seen


def bench_pipeline(drivers: int = 4, fps: float = 10.0, seconds: float = 60.0,
                   batch: int = 2, warmup_s: float = 20.0,
                   log_dir: Path | None = None,
                   networks: Sequence[NetworkRole] = (),
                   replay: Sequence[EncodedFrame] = (), workers: int = 1) -> dict[str, Any]:
    """Runs the load and returns the figures (see the module docstring). ``replay``: frames
    every camera sends over and over instead of the simulator's (:func:`load_replay`).
    ``workers``: worker processes sharing the drivers (one consumer group); their CPU,
    stages and memory are added up under ``worker``."""
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        logs = log_dir or Path(tmp) / "logs"
        env = {"VIGIL_DATABASE__URL": f"sqlite:///{Path(tmp) / 'bench.db'}",
               "VIGIL_WEBHOOKS__ENABLED": "false"}
        if networks:
            env.update(serving_env(cost_checkpoints(Path(tmp), networks)))
        with LocalStack(logs, env) as stack:
            stack.start_pipeline(workers)
            worker_names = [n for n in stack.metrics_ports if n.startswith("worker")]
            cams = [stack.start_camera(d, fps, batch, warmup_s + seconds, replay)
                    for d in bench_drivers(drivers)]
            measured_from = time.time() + warmup_s
            time.sleep(warmup_s)
            pids = {**{n: stack.pid(n) for n in worker_names},
                    "aggregator": stack.pid("aggregator")}
            if stack.broker_pid is not None:
                pids["broker"] = stack.broker_pid
            cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
            stages0 = _summed(stage_seconds(stack.metrics_ports[n]) for n in worker_names)
            self0 = resource.getrusage(resource.RUSAGE_SELF)
            stack.wait_cameras()
            self1 = resource.getrusage(resource.RUSAGE_SELF)  # before reading topics back
            sent = sum(c.stats.frames_sent for c in cams)
            observed = _wait_for_observations(stack, sent, timeout_s=120.0)
            # A window closes and its alerts fire a tick after the last frame.
            time.sleep(3.0)
            cpu1 = {k: cpu_seconds(p) for k, p in pids.items()}
            stages1 = _summed(stage_seconds(stack.metrics_ports[n]) for n in worker_names)
            worker_rss_mb = sum(rss_mb(pids[n]) for n in worker_names)
            failed = stack.failed_children()
            frames = read_topic(stack.bootstrap, FRAMES.name)
            observations = read_topic(stack.bootstrap, OBSERVATIONS.name)
            alerts = read_topic(stack.bootstrap, ALERTS.name)
            dead_letters = read_topic(stack.bootstrap, DEAD_LETTERS.name)

    sent_at: dict[tuple[str, int], float] = {}
    for rec in frames:
        try:
            header, _ = decode_frame_batch(rec.value)
        except SchemaError:
            continue
        for info in header.frames:
            sent_at[(header.driver_id, info.seq)] = rec.timestamp / 1000
    stages: dict[str, list[float]] = {k: [] for k in
                                      ("capture_to_sent", "sent_to_processed",
                                       "processed_to_published", "capture_to_observation")}
    measured: list[Observation] = []
    readings: dict[str, list[float]] = {}
    skipped: dict[str, int] = {}
    observed_frames: set[tuple[str, int]] = set()
    for rec in observations:
        obs = decode_record(Observation, rec.value)
        observed_frames.add((obs.driver_id, obs.seq))
        if obs.captured_at < measured_from:
            continue
        measured.append(obs)
        published = rec.timestamp / 1000
        for reading in obs.networks:
            if reading.skipped is None:
                readings.setdefault(reading.role.value, []).append(
                    published - reading.window_end_at)
            else:
                skipped[reading.role.value] = skipped.get(reading.role.value, 0) + 1
        sent_ts = sent_at.get((obs.driver_id, obs.seq))
        if sent_ts is not None:
            stages["capture_to_sent"].append(sent_ts - obs.captured_at)
            stages["sent_to_processed"].append(obs.processed_at - sent_ts)
        stages["processed_to_published"].append(published - obs.processed_at)
        stages["capture_to_observation"].append(published - obs.captured_at)
    alert_latency: dict[str, list[float]] = {}
    for rec in alerts:
        a = decode_record(Alert, rec.value)
        if a.detected_at >= measured_from:
            alert_latency.setdefault(a.reason.value, []).append(rec.timestamp / 1000
                                                                - a.detected_at)
    measured_frames = len(measured)
    def rate(times: list[float]) -> float:
        return (len(times) - 1) / (max(times) - min(times)) if len(times) > 1 else 0.0

    captured_fps = rate([o.captured_at for o in measured])
    throughput = rate([o.processed_at for o in measured])
    p99_s = (_stats(stages["capture_to_observation"])["p99_ms"] or 0) / 1000
    camera_cpu = ((self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime))
    cpu = {"worker": sum(cpu1[n] - cpu0[n] for n in worker_names),
           **{k: cpu1[k] - cpu0[k] for k in cpu0 if not k.startswith("worker")}}
    cpu["cameras_replaying" if replay else "cameras_and_simulator"] = camera_cpu
    offered = drivers * fps
    lost_before_topic = max(0, sent - len(sent_at))  # sent, but not on the frames topic
    # A frame on the topic that no observation names (a rebalance's duplicates hide none).
    lost = len(set(sent_at) - observed_frames) + lost_before_topic
    # Wall time in the worker's inference threads, per frame: decode, face, signals, and the
    # rest of handling a batch (records, lanes, observations).
    stage_ms = {k: 1000 * (stages1[k] - stages0.get(k, 0.0)) / max(1, measured_frames)
                for k in stages1}
    if "batch" in stage_ms:
        stage_ms["other"] = stage_ms.pop("batch") - sum(stage_ms.values())
    return {
        "drivers": drivers, "workers": workers, "fps_per_driver": fps, "batch": batch,
        "seconds": seconds,
        "source": f"replay of {len(replay)} frames" if replay else "simulator",
        "warmup_s": warmup_s, "offered_fps": offered,
        "frames_sent": sent, "observations": observed,
        "lost": lost, "lost_before_topic": lost_before_topic,
        "duplicate_observations": len(observations) - len(observed_frames),
        "dead_letters": dict(Counter(decode_record(DeadLetter, r.value).reason.value
                                     for r in dead_letters)),
        "measured_frames": measured_frames,
        "captured_fps": round(captured_fps, 2),
        "throughput_fps": round(throughput, 2),
        # Kept pace: every frame observed, as fast as the cameras captured, within a second.
        "sustained": (lost == 0 and throughput >= 0.97 * captured_fps
                      and p99_s < 1.0),
        "latency": {**{k: _stats(v) for k, v in stages.items()},
                    **{f"capture_to_alert[{r}]": _stats(v)
                       for r, v in sorted(alert_latency.items())},
                    **{f"window_end_to_reading[{r}]": _stats(v)
                       for r, v in sorted(readings.items())}},
        "networks": [r.value for r in networks],
        "network_readings": {r: len(v) for r, v in sorted(readings.items())},
        "network_windows_skipped": skipped,
        "worker_rss_mb": worker_rss_mb,
        "alerts": len(alerts),
        "cpu_ms_per_frame": {k: round(1000 * v / max(1, measured_frames), 2)
                             for k, v in cpu.items()},
        "worker_ms_per_frame_by_stage": {k: round(v, 2) for k, v in stage_ms.items()},
        "failed_processes": failed,
    }

