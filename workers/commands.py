"""The workers' commands: `vigil provision`, `analyze`, `blinks` (perception on a video) and
`worker` (the inference worker: frame batches -> observations).

Thin handlers over :mod:`workers`; heavy imports stay inside them.
"""

from __future__ import annotations

import argparse
import logging
import sys

from streams.cmdline import Subparsers, adder, emit, fmt, kafka_bootstrap, run_faust
from streams.settings import load_settings

log = logging.getLogger("vigil")  # the command line's own voice: "INFO vigil: ..."
STRICT_HELP = ("refuse a damaged file (exit 2) when it decodes under 90 %% of the frames it "
               "declares, instead of analysing what decodes and warning")


def cmd_provision(args: argparse.Namespace) -> int:
    from workers.face.provision import face_landmarker_bundle
    from workers.settings import PerceptionSettings

    settings = load_settings(PerceptionSettings)
    path = face_landmarker_bundle(settings.cache_dir, settings.face_landmarker_path)
    log.info("face landmarker bundle ready: %s", path)
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from workers.perception import VideoAnalysis

    analysis = VideoAnalysis(args.video, engine=args.engine, strict=args.strict)
    for result in analysis:
        record = result.signals.to_dict()
        record["perclos"] = None if result.perclos is None else round(result.perclos, 4)
        record["events"] = [e.to_dict() for e in result.events]
        record["yawns"] = [y.to_dict() for y in result.yawns]
        if args.json:
            emit(record)
        else:
            s = result.signals
            sys.stdout.write(
                f"{s.frame:6d} t={s.t:7.3f} face={int(s.face_present)} "
                f"closure={fmt(s.closure)} yaw={fmt(s.yaw)} pitch={fmt(s.pitch)} "
                f"off_road={s.gaze_off_road} events={[e.kind for e in result.events]}\n"
            )
    _warn_lost(args.video, analysis.video.frames_lost, analysis.video.declared_frames)
    return 0


def cmd_blinks(args: argparse.Namespace) -> int:
    from workers.perception import blink_report

    report = blink_report(args.video, engine=args.engine, strict=args.strict).to_dict()
    _warn_lost(args.video, report["frames_lost"], report["frames_declared"])
    if args.json:
        emit(report)
    else:
        sys.stdout.write(
            f"{report['frames']} frames at {report['fps']} fps, {report['blink_count']} blinks "
            f"({report['blinks_per_min']}/min), {len(report['long_closures'])} long closures, "
            f"{report['yawn_count']} yawns, PERCLOS {report['perclos']}\n"
        )
    return 0


def _warn_lost(video: str, lost: int, declared: int | None) -> None:
    if lost:
        of = f" of {declared} declared" if declared else ""
        log.warning("%s: %d%s frames did not decode", video, lost, of)


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.agent import WorkerEnvironment, build_worker_app

    env = WorkerEnvironment.load()
    known = frozenset(d for d in (args.drivers or "").split(",") if d) or None
    registry = None
    if env.serving.roles:
        # The promoted versions of the served networks. A registry that cannot be read (the
        # database down or not migrated yet) leaves the configured checkpoints serving, and
        # is asked again every VIGIL_SERVING__REFRESH_S.
        from streams.store import Store

        registry = Store.from_settings(env.database).model_versions
    from streams.observability import Health

    app, close = build_worker_app(kafka_bootstrap(args), known_drivers=known,
                                  settings=env.perception, worker=env.worker, clips=env.clips,
                                  records=env.streams.records, serving=env.serving,
                                  registry=registry, kafka=env.streams.kafka)
    # Ready once in its consumer group; the registry (when serving networks) is optional.
    return run_faust(app, close, args.debug, Health("worker"), env.metrics)


def register(sub: Subparsers) -> None:
    """provision, analyze, blinks, worker."""
    add = adder(sub)

    add("provision", cmd_provision, "check and cache the face landmarker bundle")

    p = add("analyze", cmd_analyze, "per-frame driver signals of a video (JSON Lines with --json)")
    p.add_argument("video")
    p.add_argument("--engine", help="face engine: mediapipe (default), insightface, opencv")
    p.add_argument("--json", action="store_true")
    p.add_argument("--strict", action="store_true", help=STRICT_HELP)

    p = add("blinks", cmd_blinks, "blink events, long closures, yawns and PERCLOS of a video")
    p.add_argument("video")
    p.add_argument("--engine")
    p.add_argument("--json", action="store_true")
    p.add_argument("--strict", action="store_true", help=STRICT_HELP)

    p = add("worker", cmd_worker, "run the inference worker: frame batches -> observations")
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (default: settings)")
    p.add_argument("--drivers", help="comma-separated registered driver ids (default: any)")
