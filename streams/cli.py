"""The `vigil` command line.

Errors Vigil raises on purpose (bad input, bad configuration) print one line and exit 2;
anything else prints one line and exits 1 unless ``--debug`` asks for the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from streams.errors import ConfigurationError, VigilError

log = logging.getLogger("vigil")
BLINK_HELP = ("the blink network: a teacher, then a self-distilled student, on trimmed clips "
              "(--data) or the driver simulator (--simulated); --help lists every flag")
FATIGUE_HELP = ("the fatigue network (3D ResNet-18 + non-local block, 0-1 score) on scored "
                "videos (--data) or the driver simulator (--simulated); --help lists every flag")
STRICT_HELP = ("refuse a damaged file (exit 2) when it decodes under 90 %% of the frames it "
               "declares, instead of analysing what decodes and warning")
AU_HELP = ("the AU network (SAT-Net) on frames with per-frame AU labels (--data) or the driver "
           "simulator (--simulated); --help lists every flag")

EYESTATE_HELP = ("the eye-state network (per-eye closure and visibility) on real faces with "
                 "rendered lids, near-infrared/glasses/small-face augmentation and the labelled "
                 "real blinks; --help lists every flag")

# FFmpeg (inside OpenCV) logs every unreadable file on stderr itself; our one-line errors
# say it better, and stderr stays readable.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


def _emit(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")


def cmd_provision(args: argparse.Namespace) -> int:
    from workers.face.provision import face_landmarker_bundle
    from workers.settings import PerceptionSettings

    settings = PerceptionSettings()
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
            _emit(record)
        else:
            s = result.signals
            sys.stdout.write(
                f"{s.frame:6d} t={s.t:7.3f} face={int(s.face_present)} "
                f"closure={_fmt(s.closure)} yaw={_fmt(s.yaw)} pitch={_fmt(s.pitch)} "
                f"off_road={s.gaze_off_road} events={[e.kind for e in result.events]}\n"
            )
    _warn_lost(args.video, analysis.video.frames_lost, analysis.video.declared_frames)
    return 0


def cmd_blinks(args: argparse.Namespace) -> int:
    from workers.perception import blink_report

    report = blink_report(args.video, engine=args.engine, strict=args.strict).to_dict()
    _warn_lost(args.video, report["frames_lost"], report["frames_declared"])
    if args.json:
        _emit(report)
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


def cmd_simulate(args: argparse.Namespace) -> int:
    from training.simulator import simulate_set

    paths = simulate_set(
        Path(args.out), args.drivers, args.seconds, args.seed, args.profile, fps=args.fps
    )
    log.info("wrote %d drivers to %s", len(paths), args.out)
    return 0


def cmd_eval_perception(args: argparse.Namespace) -> int:
    from training.eval_perception import evaluate_simulation

    report = evaluate_simulation(Path(args.sim), engine=args.engine)
    if args.json:
        _emit(report)
        return 0 if report["passed"] else 3
    out = sys.stdout
    out.write(f"{'driver':<11}{'face':<19}{'blinks':>7}{'F1':>7}{'long':>6}"
              f"{'err ms':>14}{'PERCLOS':>9}{'measured':>10}\n")
    for d in report["drivers"]:
        b, lc, pc = d["blinks"], d["long_closures"], d["perclos"]
        errors = ",".join(f"{e:.0f}" for e in lc["abs_errors_ms"]) or "-"
        out.write(f"{d['driver_id']:<11}{d['source_face'] or '?':<19}{b['true']:>7}"
                  f"{b['f1']:>7.3f}{lc['true']:>6}{errors:>14}{pc['true']:>9.3f}"
                  f"{pc['measured']:>10.3f}\n")
    s = report["summary"]
    lc_err = s["long_closure_median_abs_error_ms"]
    out.write(
        f"blink F1 {s['blink_f1']:.3f} (P {s['blink_precision']:.3f}, R {s['blink_recall']:.3f}); "
        f"long closures {s['long_closures_matched']}/{s['long_closures_true']} matched, median "
        f"error {'-' if lc_err is None else f'{lc_err:.0f}'} ms; PERCLOS error max "
        f"{s['perclos_abs_error_max']:.3f}\n"
    )
    for name, ok in report["checks"].items():
        out.write(f"  {'PASS' if ok else 'FAIL'} {name} (target {report['targets'][name]})\n")
    return 0 if report["passed"] else 3


def cmd_eval_video(args: argparse.Namespace) -> int:
    from training.eval_video import (
        evaluate_clip,
        evaluate_folder,
        format_report,
        load_labels,
        video_path,
    )

    if (args.labels is None) == (args.all is None) or (args.all and args.clip):
        raise ConfigurationError("give [CLIP] --labels LABELS.json, or --all LABELS_DIR")
    video_root = Path(args.video_root) if args.video_root else None
    if args.all is not None:
        report = evaluate_folder(Path(args.all), video_root, engine=args.engine,
                                 variant=args.variant)
    else:
        labels = load_labels(Path(args.labels))
        clip = Path(args.clip) if args.clip else video_path(Path(args.labels), labels, video_root)
        report = evaluate_clip(clip, labels, engine=args.engine, variant=args.variant)
    if args.json:
        _emit(report)
    else:
        sys.stdout.write(format_report(report))
    return 0  # a measurement, not a gate


def cmd_bench_perception(args: argparse.Namespace) -> int:
    from workers.bench import bench_perception

    result = bench_perception(frames=args.frames, engine=args.engine, cores=args.cores)
    if args.json:
        _emit(result)
    else:
        sys.stdout.write(
            f"{result['engine']}: {result['fps']:.1f} frames/s on {result['cores']} core(s) at "
            f"{result['width']}x{result['height']} (p50 {result['ms_p50']:.2f} ms, "
            f"p99 {result['ms_p99']:.2f} ms per frame, face in {result['face_rate']:.0%})\n"
        )
    return 0


def _bootstrap(args: argparse.Namespace) -> str:
    from streams.settings import StreamSettings

    bootstrap = args.bootstrap or StreamSettings().kafka.bootstrap_servers
    if not bootstrap:
        raise ConfigurationError(
            "no Kafka broker: pass --bootstrap HOST:PORT or set VIGIL_KAFKA__BOOTSTRAP_SERVERS "
            "(`vigil broker` runs the embedded one)"
        )
    return str(bootstrap)


def cmd_camera(args: argparse.Namespace) -> int:
    from streams.camera import CameraAgent, open_source
    from streams.settings import StreamSettings

    settings = StreamSettings()
    bootstrap = _bootstrap(args)
    source, live = open_source(args.source, args.fps, seed=args.seed,
                               reconnect_for_s=settings.camera.reconnect_for_s)
    agent = CameraAgent(bootstrap, args.driver, args.vehicle, args.fps, args.batch,
                        settings=settings.camera, compression=settings.kafka.compression)
    max_frames = round(args.seconds * args.fps) if args.seconds else None
    log.info("camera %s -> %s as driver %s (vehicle %s), %.1f fps, batches of %d, session %s",
             args.source, bootstrap, args.driver, args.vehicle, args.fps, args.batch,
             agent.session)
    try:
        stats = agent.run(source, paced=not live, max_frames=max_frames)
    except KeyboardInterrupt:
        agent.stop()
        stats = agent.stats
    log.info("camera done: %s", stats)
    return 0


def _run_faust(app: Any, close: Callable[[], None], debug: bool) -> int:
    """Runs a Faust app until it is stopped (Ctrl-C, SIGTERM), then releases its resources."""
    import faust

    try:
        faust.Worker(app, loglevel="DEBUG" if debug else "WARNING",
                     quiet=True).execute_from_commandline()
    finally:
        close()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.agent import build_worker_app

    known = frozenset(d for d in (args.drivers or "").split(",") if d) or None
    app, close = build_worker_app(_bootstrap(args), known_drivers=known)
    return _run_faust(app, close, args.debug)


def cmd_aggregator(args: argparse.Namespace) -> int:
    from streams.aggregator.agent import build_aggregator_app
    from streams.settings import StreamSettings
    from streams.store import Store

    store = Store.from_settings()
    store.migrate()
    app, close = build_aggregator_app(_bootstrap(args), store,
                                      settings=StreamSettings().aggregator)
    return _run_faust(app, close, args.debug)


def cmd_broker(args: argparse.Namespace) -> int:
    import signal
    import time

    from streams.broker import EmbeddedBroker

    # Service managers stop with SIGTERM: leave as cleanly as on Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with EmbeddedBroker(port=args.port) as broker:
        broker.create_topics()
        sys.stdout.write(f"Kafka (Tansu, in memory) on {broker.bootstrap}; Ctrl-C stops it\n")
        sys.stdout.flush()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from streams.store import Store

    with Store.from_settings() as store:
        if args.action == "migrate":
            revision = store.migrate()
            log.info("database %s at revision %s", store.where, revision)
        else:
            _emit({"database": store.where, "revision": store.check_migrated(),
                   "rows": store.row_counts()})
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    """vigil users add NAME --role ROLE | list | remove NAME: the dashboard's local logins."""
    import time
    from dataclasses import asdict

    from streams.errors import InputError
    from streams.store import Store

    with Store.from_settings() as store:
        if args.action == "list":  # a listing never creates or migrates the database
            store.check_migrated()
        else:
            store.migrate()
        if args.action == "add":
            store.set_operator(args.name, args.role, _new_password(args))
        elif args.action == "remove":
            if not store.remove_operator(args.name):
                raise InputError(f"no dashboard login {args.name!r}")
        else:
            for o in store.operators():
                locked = o.locked_until is not None and o.locked_until > time.time()
                sys.stdout.write(json.dumps(asdict(o)) + "\n" if args.json else
                                 f"{o.name:24s} {o.role.value:9s}"
                                 f"{' locked' if locked else ''}\n")
    return 0


def _new_password(args: argparse.Namespace) -> str:
    """From stdin (--password-stdin), VIGIL_USER_PASSWORD or a prompt: never from argv, which
    other users of the machine can read."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if os.environ.get("VIGIL_USER_PASSWORD"):
        return os.environ["VIGIL_USER_PASSWORD"]
    if not sys.stdin.isatty():
        raise ConfigurationError("no terminal to ask for the password: pipe it in with "
                                 "--password-stdin or set VIGIL_USER_PASSWORD")
    import getpass

    password = getpass.getpass(f"Password for {args.name}: ")
    if getpass.getpass("Again: ") != password:
        raise ConfigurationError("the two passwords differ")
    return password


def cmd_dashboard(args: argparse.Namespace) -> int:
    from dashboard.launch import serve

    return serve(args.port, args.host)


def cmd_demo(args: argparse.Namespace) -> int:
    import signal
    import tempfile

    from streams.demo import Demo

    # A service manager's SIGTERM stops the demo as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if not args.debug:  # the terminal shows the demo's own lines; the logs hold the rest
        logging.getLogger().setLevel(logging.WARNING)
        logging.getLogger("kafka").setLevel(logging.ERROR)
    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="vigil-demo-"))

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    demo = Demo(log_dir, fps=args.fps, dashboard_port=args.port,
                dashboard=not args.no_dashboard, watch_dashboard=args.watch_dashboard,
                bootstrap=args.bootstrap, say=say,
                debug=args.debug)
    try:
        demo.run(args.seconds)
    except KeyboardInterrupt:
        say("stopping...")
    say("summary " + json.dumps(demo.report.to_dict(), sort_keys=True))
    return 0


def cmd_bench_pipeline(args: argparse.Namespace) -> int:
    from streams.bench import bench_pipeline

    result = bench_pipeline(args.drivers, args.fps, args.seconds, args.batch, args.warmup,
                            Path(args.log_dir) if args.log_dir else None)
    if args.json:
        _emit(result)
        return 0
    lat = result["latency"]
    sys.stdout.write(
        f"{result['drivers']} drivers x {result['fps_per_driver']:g} fps "
        f"(offered {result['offered_fps']:g} frames/s, captured {result['captured_fps']:.1f}, "
        f"batches of {result['batch']}): {result['throughput_fps']:.1f} frames/s end to end, "
        f"sustained: {result['sustained']}, "
        f"lost {result['lost']} of {result['frames_sent']}\n")
    for stage, st in lat.items():
        sys.stdout.write(f"  {stage:34s} p50 {_fmt(st['p50_ms'])} ms  p99 {_fmt(st['p99_ms'])} ms"
                         f"  max {_fmt(st['max_ms'])} ms  (n={st['n']})\n")
    cpu = ", ".join(f"{k} {v:.1f}" for k, v in result["cpu_ms_per_frame"].items())
    sys.stdout.write(f"  CPU ms per frame: {cpu}\n")
    for failure in result["failed_processes"]:
        sys.stdout.write(f"  FAILED: {failure}\n")
    return 1 if result["failed_processes"] else 0


def cmd_models(args: argparse.Namespace) -> int:
    from models import create_model, list_models

    if args.action is not None:
        return cmd_model_versions(args)
    for entry in list_models():
        params = sum(p.numel() for p in create_model(entry.name).parameters())
        sys.stdout.write(f"{entry.name:28s} {params / 1e6:7.2f} M params  {entry.summary}\n")
    return 0


def cmd_model_versions(args: argparse.Namespace) -> int:
    """vigil models versions | promote VERSION | rollback: the model-version registry."""
    from dataclasses import asdict

    from streams.store import Store

    # Never migrates: listing a registry must not create a database (`vigil db migrate` does).
    with Store.from_settings() as store:
        store.check_migrated()
        if args.action == "promote":
            served = store.promote_model(args.model, args.version)
            log.info("%s %s promoted; aggregators serve it within their refresh interval",
                     args.model, served.version)
        elif args.action == "rollback":
            back = store.rollback_model(args.model)
            log.info("%s rolled back to %s", args.model,
                     "the shipped weights" if back is None else back.version)
        for v in store.model_versions(args.model):
            f1 = v.metrics.get("held_out", {}).get("macro_f1")
            sys.stdout.write(json.dumps(asdict(v)) + "\n" if args.json else
                             f"{v.version:6s} {v.status:12s} parent {v.parent or '-':8s} "
                             f"held-out macro-F1 {'-' if f1 is None else f'{f1:.3f}'}  "
                             f"data {v.data_hash[:12]}  {v.note or ''}\n")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from streams.store import Store
    from training.drowsiness import DrowsinessConfig, load_rldd
    from training.retrain import RetrainConfig, retrain

    config = RetrainConfig(holdout_fraction=args.holdout, min_examples=args.min_examples,
                           gan=args.gan, training=DrowsinessConfig(epochs=args.epochs),
                           seed=args.seed)
    replay = load_rldd(Path(args.replay), _folds(args.replay_folds)) if args.replay else None
    with Store.from_settings() as store:
        store.migrate()
        result = retrain(store, config, replay=replay, note=args.note)
        if result.registered is not None and args.promote:
            store.promote_model(result.registered.name, result.registered.version)
    sys.stdout.write(json.dumps(result.summary(), default=str) + "\n")
    return 0 if result.registered is not None else 3


def cmd_bench_models(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from models.bench import bench_models, format_report

    batches = [int(b) for b in args.gpu_batches.split(",")] if args.gpu_batches else []
    reports = bench_models(args.model, cpu_repeats=args.repeats, gpu_batches=batches)
    if args.json:
        for report in reports:
            _emit(asdict(report))
    else:
        sys.stdout.write("\n".join(format_report(reports)) + "\n")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from models.checkpoint import load_checkpoint
    from models.export import TOLERANCE, compare_export, export_model, save_export
    from models.registry import create_model, model_entry

    source = Path(args.model)
    if source.is_file():
        model, meta = load_checkpoint(source)
        name = meta["name"]
    else:
        name = args.model
        model = create_model(name).eval()
    inputs = model_entry(name).example_inputs(args.batch)
    program = export_model(model, inputs)
    # Checked at another batch size than traced: the batch dimension must have stayed dynamic.
    check = compare_export(model, program, model_entry(name).example_inputs(args.batch + 1))
    if not check.within_tolerance:
        raise VigilError(f"the export of {name} differs from the eager model by up to "
                         f"{check.max_abs_difference:.3g}, beyond {TOLERANCE}; not saved")
    save_export(program, Path(args.out))
    log.info("exported %s to %s; largest difference from eager %.3g (tolerance %s)", name,
             args.out, check.max_abs_difference, TOLERANCE)
    return 0


def _drowsiness_config(args: argparse.Namespace, gan: bool = False) -> Any:
    from training.drowsiness import DrowsinessConfig

    return DrowsinessConfig(model_args={"core": args.core}, epochs=args.epochs, seed=args.seed,
                            gan=gan)


def _folds(text: str) -> list[int]:
    try:
        return [int(k) for k in text.split(",")]
    except ValueError:
        raise ConfigurationError(f"--folds takes comma-separated fold numbers, not {text!r}")\
            from None


def cmd_train_drowsiness(args: argparse.Namespace) -> int:
    from training.drowsiness import evaluate, load_rldd, save_model, train_drowsiness

    folds = _folds(args.folds)
    data = load_rldd(Path(args.data), folds)
    config = _drowsiness_config(args, gan=args.gan)
    model, history = train_drowsiness(data, config)
    metrics = {"training_folds": folds, "train": evaluate(model, data), "history": history}
    save_model(Path(args.out), model, config, folds, metrics)
    log.info("trained on folds %s (%d windows, GAN %s): %s", folds, len(data),
             "on" if config.gan else "off", args.out)
    return 0


def cmd_train_blink(args: argparse.Namespace) -> int:
    # The trainer's many flags live beside it; parsed here so that only this command pays
    # for importing torch.
    from training import blink

    parser = argparse.ArgumentParser(prog="vigil train blink", description=BLINK_HELP)
    blink.add_arguments(parser)
    return blink.run(parser.parse_args(args.flags))


def cmd_train_fatigue(args: argparse.Namespace) -> int:
    from training import fatigue  # imports torch: only this command pays for it

    parser = argparse.ArgumentParser(prog="vigil train fatigue", description=FATIGUE_HELP)
    fatigue.add_arguments(parser)
    return fatigue.run(parser.parse_args(args.flags))


def cmd_train_au(args: argparse.Namespace) -> int:
    from training import au  # imports torch: only this command pays for it

    parser = argparse.ArgumentParser(prog="vigil train au", description=AU_HELP)
    au.add_arguments(parser)
    return au.run(parser.parse_args(args.flags))


def cmd_train_eyestate(args: argparse.Namespace) -> int:
    from training import eyestate

    parser = argparse.ArgumentParser(prog="vigil train eyestate", description=EYESTATE_HELP)
    eyestate.add_arguments(parser)
    return eyestate.run(parser.parse_args(args.flags))


def cmd_eval_drowsiness(args: argparse.Namespace) -> int:
    from models.checkpoint import load_checkpoint
    from training.drowsiness import evaluate, load_windows

    model, _ = load_checkpoint(Path(args.ckpt))
    report = evaluate(model, load_windows(Path(args.blinks), Path(args.labels)))
    if args.json:
        _emit(report)
    else:
        sys.stdout.write(f"accuracy {report['accuracy']:.3f}  macro-F1 {report['macro_f1']:.3f}  "
                         f"macro ROC-AUC {report['macro_roc_auc']:.3f}\n")
        for name, c in report["per_class"].items():
            sys.stdout.write(f"  {name:13s} recall {c['recall']:.3f}  precision "
                             f"{c['precision']:.3f}  ROC-AUC {c['roc_auc']:.3f}  "
                             f"(n={c['support']})\n")
        sys.stdout.write(f"  confusion (rows true): {report['confusion_matrix']}\n")
    return 0


def cmd_cv_drowsiness(args: argparse.Namespace) -> int:
    from training.drowsiness import cross_validate

    settings = {"both": (False, True), "on": (True,), "off": (False,)}[args.gan]
    report = cross_validate(Path(args.data), _folds(args.folds), _drowsiness_config(args),
                            Path(args.out), settings)
    for name, result in report["settings"].items():
        folds = "  ".join(f"fold {k} {r['accuracy']:.3f}/{r['macro_f1']:.3f}"
                          for k, r in result["per_fold"].items())
        mean = result["mean"]
        sys.stdout.write(f"{name:7s} {folds}  mean accuracy {mean['accuracy']:.3f} macro-F1 "
                         f"{mean['macro_f1']:.3f} alert recall {mean['recall_alert']:.3f} "
                         f"({result['seconds']:.0f} s)\n")
    return 0


def cmd_clips_purge(args: argparse.Namespace) -> int:
    from streams.clips import ClipSettings, purge_clips
    from streams.store import Store

    settings = ClipSettings()
    with Store.from_settings() as store:
        store.check_migrated()
        report = purge_clips(store, settings, dry_run=args.dry_run)
    _emit(report.to_dict())
    return 1 if report.failed else 0


def cmd_webhooks(args: argparse.Namespace) -> int:
    from streams.errors import InputError
    from streams.store import DeliveryStatus, Store

    # Neither action migrates: an unmigrated database is reported, not changed.
    with Store.from_settings() as store:
        store.check_migrated()
        if args.action == "list-failed":
            for d in store.deliveries(DeliveryStatus.FAILED, limit=args.limit):
                _emit({"alert_id": d.alert_id, "endpoint": d.endpoint, "attempts": d.attempts,
                       "last_status_code": d.last_status_code, "last_error": d.last_error,
                       "created_at": d.created_at})
            return 0
        if args.all == (args.alert_id is not None):
            raise InputError("name one delivery (ALERT_ID, optionally --endpoint NAME) or "
                             "pass --all")
        count = store.redeliver(args.alert_id, args.endpoint)
        if not count and args.alert_id is not None:
            raise InputError(f"no failed delivery of alert {args.alert_id!r}"
                             + (f" to {args.endpoint!r}" if args.endpoint else "")
                             + " (a delivered one is never sent again)")
        log.info("%d delivery(ies) pending again; running dispatchers send them within "
                 "their poll interval", count)
        _emit({"redelivered": count})
    return 0


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vigil", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str,
            parent: Any = sub) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help_, description=help_)
        p.set_defaults(fn=fn)
        return p

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

    p = add("simulate", cmd_simulate, "render labelled driver videos onto real faces")
    p.add_argument("--out", required=True)
    p.add_argument("--drivers", type=int, default=3)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", default="mixed", help="alert, drowsy, distracted or mixed")
    p.add_argument("--fps", type=float, default=30.0)

    p = add("camera", cmd_camera, "publish a camera's frames to Kafka as frame batches")
    p.add_argument("--source", required=True,
                   help="video FILE, device index, RTSP/HTTP URL, or sim:PROFILE[:SEED]")
    p.add_argument("--driver", required=True)
    p.add_argument("--vehicle", required=True)
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, help="stop after this much footage")
    p.add_argument("--seed", type=int, default=0, help="simulator seed when not in --source")
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (default: settings)")

    p = add("worker", cmd_worker, "run the inference worker: frame batches -> observations")
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (default: settings)")
    p.add_argument("--drivers", help="comma-separated registered driver ids (default: any)")

    p = add("aggregator", cmd_aggregator,
            "run the aggregator and sinks: observations -> windows, alerts, store, webhooks")
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (default: settings)")

    p = add("broker", cmd_broker, "run the embedded Kafka broker (Tansu) in the foreground")
    p.add_argument("--port", type=int, default=9092)

    p = add("demo", cmd_demo, "the whole system with simulated drivers: broker, worker, "
            "aggregator, store, webhooks, dashboard")
    p.add_argument("--seconds", type=float, help="stop after this long (default: Ctrl-C)")
    p.add_argument("--fps", type=float, default=10.0, help="frames/s of each simulated camera")
    p.add_argument("--port", type=int, default=8501, help="dashboard port")
    p.add_argument("--no-dashboard", action="store_true")
    p.add_argument("--watch-dashboard", action="store_true",
                   help="read the fleet page in headless Chromium and report when each "
                   "driver's alert shows there (needs Debian's chromium)")
    p.add_argument("--bootstrap", help="use this Kafka instead of the embedded broker")
    p.add_argument("--log-dir", help="where the processes' logs go (default: a temp dir)")

    models_cmd = add("models", cmd_models, "the registered networks with their parameter counts; "
                 "the trained versions of one (versions, promote, rollback)")
    models_sub = models_cmd.add_subparsers(dest="action")
    for action, help_ in (("versions", "registered versions, with status and held-out metrics"),
                          ("promote", "serve VERSION from now on (aggregators pick it up "
                           "without a restart)"),
                          ("rollback", "serve the version promoted before the current one "
                           "(or the shipped weights)")):
        p = add(action, cmd_model_versions, help_, parent=models_sub)
        if action == "promote":
            p.add_argument("version", help="v3 or 3")
        p.add_argument("--model", default="drowsiness-blinks")
        p.add_argument("--json", action="store_true")

    p = add("retrain", cmd_retrain, "fine-tune the drowsiness network on operator-flagged "
            "alerts (+ GAN-balanced synthetic windows); registers a version if it is not worse "
            "than the served one on held-out flags (exit 3 when it is)")
    p.add_argument("--holdout", type=float, default=0.3, help="share of flags held out")
    p.add_argument("--min-examples", type=int, default=10)
    p.add_argument("--gan", action=argparse.BooleanOptionalAction, default=True,
                   help="top up sparse classes with GAN-synthesised windows")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replay", help="UTA-RLDD-layout directory mixed into training, so the "
                   "network keeps what the flags do not show")
    p.add_argument("--replay-folds", default="1,2,3,4")
    p.add_argument("--note", help="kept with the version")
    p.add_argument("--promote", action="store_true", help="promote the new version at once")
    p = add("export", cmd_export, "torch.export a network (registry name or checkpoint) to a "
            ".pt2, checked against the eager model")
    p.add_argument("model", help="registry name (untrained weights) or checkpoint path")
    p.add_argument("out", help="where the .pt2 goes")
    p.add_argument("--batch", type=int, default=2, help="example batch size (at least 2)")

    p = add("db", cmd_db, "database schema: migrate to the latest, or show status")
    p.add_argument("action", choices=["migrate", "status"])

    p = add("dashboard", cmd_dashboard, "run the operator dashboard in the foreground (local "
            "logins, or OIDC from VIGIL_DASHBOARD__OIDC__*)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--host", default="127.0.0.1")

    users = add("users", lambda a: 2, "the dashboard's local logins (roles: viewer, operator, "
                "admin)")
    users_sub = users.add_subparsers(dest="action", required=True)
    p = add("add", cmd_users, "create a login, or give it a new role and password; the "
            "password comes from a prompt, --password-stdin or VIGIL_USER_PASSWORD",
            parent=users_sub)
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=["viewer", "operator", "admin"])
    p.add_argument("--password-stdin", action="store_true", help="read it from stdin's first line")
    p = add("list", cmd_users, "every login with its role", parent=users_sub)
    p.add_argument("--json", action="store_true")
    p = add("remove", cmd_users, "delete a login", parent=users_sub)
    p.add_argument("name")

    ev = add("eval", lambda a: 2, "evaluate a subsystem")
    ev_sub = ev.add_subparsers(dest="target", required=True)
    p = add("perception", cmd_eval_perception, "blink F1, long-closure and PERCLOS error on a "
            "simulator set", parent=ev_sub)
    p.add_argument("--sim", required=True, help="directory written by `vigil simulate`")
    p.add_argument("--engine")
    p.add_argument("--json", action="store_true")

    p = add("video", cmd_eval_video, "the deployed perception and alert rules on labelled "
            "real clips: per-event precision/recall/F1, the alerts raised, false alerts per hour "
            "on attentive footage (labels: training/labels/README.md)", parent=ev_sub)
    p.add_argument("clip", nargs="?", help="the video (the labels' `video` field when empty)")
    p.add_argument("--labels", help="the clip's labels JSON (or a simulator truth JSON)")
    p.add_argument("--all", metavar="LABELS_DIR", help="every labels file in this folder")
    p.add_argument("--video-root", help="where labels' `video` paths start (default: "
                   "../shared/data/video beside the repository)")
    p.add_argument("--variant", help="a synthetic variant of each clip: grayscale, dark, nir, "
                   "rot35, face30, face45, face60, sunglasses")
    p.add_argument("--engine")
    p.add_argument("--json", action="store_true")

    p = add("drowsiness", cmd_eval_drowsiness, "a drowsiness checkpoint on blink windows: "
            "accuracy, macro-F1, per-class recall, ROC-AUC, confusion", parent=ev_sub)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--blinks", required=True, help=".npy (N, 30, 4) blink windows")
    p.add_argument("--labels", required=True, help=".npy (N,) in {0, 5, 10}")
    p.add_argument("--json", action="store_true")

    train = add("train", lambda a: 2, "train a network")
    train_sub = train.add_subparsers(dest="target", required=True)
    p = add("drowsiness", cmd_train_drowsiness, "the drowsiness network on UTA-RLDD-layout "
            "blink windows", parent=train_sub)
    p.add_argument("--data", required=True, help="directory of BlinksTest_30_FoldK.npy files")
    p.add_argument("--folds", default="1,2,3,4")
    p.add_argument("--gan", action=argparse.BooleanOptionalAction, default=False,
                   help="balance classes with the jointly trained GAN")
    p.add_argument("--core", choices=["tcn", "stats"], default="stats")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="checkpoint path")

    p = train_sub.add_parser("blink", help=BLINK_HELP, add_help=False)
    p.set_defaults(fn=cmd_train_blink, passthrough=True)  # its flags: see cmd_train_blink
    p = train_sub.add_parser("fatigue", help=FATIGUE_HELP, add_help=False)
    p.set_defaults(fn=cmd_train_fatigue, passthrough=True)  # flags: training.fatigue
    p = train_sub.add_parser("au", help=AU_HELP, add_help=False)
    p.set_defaults(fn=cmd_train_au, passthrough=True)  # flags: training.au
    p = train_sub.add_parser("eyestate", help=EYESTATE_HELP, add_help=False)
    p.set_defaults(fn=cmd_train_eyestate, passthrough=True)  # flags: training.eyestate

    p = add("cv", lambda a: 2, "cross-validation")
    cv_sub = p.add_subparsers(dest="target", required=True)
    p = add("drowsiness", cmd_cv_drowsiness, "leave-one-fold-out over the UTA-RLDD folds, "
            "with and without GAN balancing; report.json and report.png", parent=cv_sub)
    p.add_argument("--data", required=True)
    p.add_argument("--folds", default="1,2,3,4")
    p.add_argument("--gan", choices=["both", "on", "off"], default="both")
    p.add_argument("--core", choices=["tcn", "stats"], default="stats")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="report directory")

    clips = add("clips", lambda a: 2, "the event clips kept behind alerts")
    clips_sub = clips.add_subparsers(dest="action", required=True)
    p = add("purge", cmd_clips_purge, "delete clips past their retention (VIGIL_CLIP_RETENTION_"
            "DAYS, VIGIL_FLAGGED_CLIP_RETENTION_DAYS for flagged alerts) and orphan files; "
            "prints what was done as JSON", parent=clips_sub)
    p.add_argument("--dry-run", action="store_true", help="only report what would go")

    hooks = add("webhooks", lambda a: 2, "the webhook outbox: deliveries that failed for good")
    hooks_sub = hooks.add_subparsers(dest="action", required=True)
    p = add("list-failed", cmd_webhooks, "failed deliveries as JSON Lines, oldest first "
            "(reads only)", parent=hooks_sub)
    p.add_argument("--limit", type=int, default=1000)
    p = add("redeliver", cmd_webhooks, "make failed deliveries pending again with a fresh "
            "retry schedule (delivered ones are never sent again)", parent=hooks_sub)
    p.add_argument("alert_id", nargs="?", help="the alert whose failed delivery to retry")
    p.add_argument("--endpoint", help="only to this endpoint (its configured name)")
    p.add_argument("--all", action="store_true", help="every failed delivery")

    bench = add("bench", lambda a: 2, "measure speed")
    bench_sub = bench.add_subparsers(dest="target", required=True)
    p = add("perception", cmd_bench_perception, "frames/s of face engine + signals at 640x360",
            parent=bench_sub)
    p.add_argument("--frames", type=int, default=900)
    p.add_argument("--engine")
    p.add_argument("--cores", type=int, default=1)
    p.add_argument("--json", action="store_true")
    p = add("pipeline", cmd_bench_pipeline, "end-to-end frames/s and latency of the whole "
            "pipeline under live simulated cameras", parent=bench_sub)
    p.add_argument("--drivers", type=int, default=4)
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--seconds", type=float, default=60.0, help="measured span after warm-up")
    p.add_argument("--batch", type=int, default=2, help="frames per batch")
    p.add_argument("--warmup", type=float, default=20.0, help="seconds not measured at start")
    p.add_argument("--log-dir", help="keep the processes' logs here")
    p.add_argument("--json", action="store_true")
    p = add("models", cmd_bench_models, "parameters, GFLOPs/clip and CPU latency of the "
            "networks; GPU clips/s with --gpu-batches", parent=bench_sub)
    p.add_argument("--model", action="append", help="only this network (repeatable)")
    p.add_argument("--repeats", type=int, default=5, help="timed CPU calls per network")
    p.add_argument("--gpu-batches", help="comma-separated batch sizes to run on CUDA, e.g. 1,8,32")
    p.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.flags = extra
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Alembic and kafka-python narrate every connection and plugin at INFO.
    for noisy in ("alembic", "kafka", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        code: int = args.fn(args)
        return code
    except VigilError as exc:
        sys.stderr.write(f"vigil: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if args.debug:
            raise
        sys.stderr.write(f"vigil: internal error: {type(exc).__name__}: {exc} (--debug shows "
                         "the traceback)\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
