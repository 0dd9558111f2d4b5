"""Training's commands: `vigil simulate`, `eval`, `train`, `cv`, `retrain` and `export`.

Thin handlers over :mod:`training` (and :mod:`models` for `export`); torch and the trainers
are imported inside them, so only the command that needs them pays for them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from models.errors import VigilError
from streams.cmdline import Handler, Subparsers, adder, emit
from streams.errors import ConfigurationError

log = logging.getLogger("vigil")  # the command line's own voice: "INFO vigil: ..."
BLINK_HELP = ("the blink network: a teacher, then a self-distilled student, on trimmed clips "
              "(--data) or the driver simulator (--simulated); --help lists every flag")
FATIGUE_HELP = ("the fatigue network (3D ResNet-18 + non-local block, 0-1 score) on scored "
                "videos (--data) or the driver simulator (--simulated); --help lists every flag")
AU_HELP = ("the AU network (SAT-Net) on frames with per-frame AU labels (--data) or the driver "
           "simulator (--simulated); --help lists every flag")
EYESTATE_HELP = ("the eye-state network (per-eye closure and visibility) on real faces with "
                 "rendered lids, near-infrared/glasses/small-face augmentation and the labelled "
                 "real blinks; --help lists every flag")


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
        emit(report)
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
        emit(report)
    else:
        sys.stdout.write(format_report(report))
    return 0  # a measurement, not a gate


def cmd_eval_drowsiness(args: argparse.Namespace) -> int:
    from models.checkpoint import load_checkpoint
    from training.drowsiness import evaluate, load_windows

    model, _ = load_checkpoint(Path(args.ckpt))
    report = evaluate(model, load_windows(Path(args.blinks), Path(args.labels)))
    if args.json:
        emit(report)
    else:
        sys.stdout.write(f"accuracy {report['accuracy']:.3f}  macro-F1 {report['macro_f1']:.3f}  "
                         f"macro ROC-AUC {report['macro_roc_auc']:.3f}\n")
        for name, c in report["per_class"].items():
            sys.stdout.write(f"  {name:13s} recall {c['recall']:.3f}  precision "
                             f"{c['precision']:.3f}  ROC-AUC {c['roc_auc']:.3f}  "
                             f"(n={c['support']})\n")
        sys.stdout.write(f"  confusion (rows true): {report['confusion_matrix']}\n")
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


def trainer_command(network: str, help_: str) -> Handler:
    """The handler of `vigil train NETWORK`: the trainer's many flags live beside it
    (``training.NETWORK.add_arguments``) and are parsed here, so that only this command pays
    for importing torch."""

    def run(args: argparse.Namespace) -> int:
        trainer = importlib.import_module(f"training.{network}")
        parser = argparse.ArgumentParser(prog=f"vigil train {network}", description=help_)
        trainer.add_arguments(parser)
        return int(trainer.run(parser.parse_args(args.flags)))

    return run


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
            store.model_versions.promote(result.registered.name, result.registered.version)
    sys.stdout.write(json.dumps(result.summary(), default=str) + "\n")
    return 0 if result.registered is not None else 3


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


def register(sub: Subparsers) -> None:
    """simulate, eval, train, cv, retrain, export."""
    add = adder(sub)

    p = add("simulate", cmd_simulate, "render labelled driver videos onto real faces")
    p.add_argument("--out", required=True)
    p.add_argument("--drivers", type=int, default=3)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", default="mixed", help="alert, drowsy, distracted or mixed")
    p.add_argument("--fps", type=float, default=30.0)

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

    for network, help_ in (("blink", BLINK_HELP), ("fatigue", FATIGUE_HELP), ("au", AU_HELP),
                           ("eyestate", EYESTATE_HELP)):
        p = train_sub.add_parser(network, help=help_, add_help=False)  # its own --help
        p.set_defaults(fn=trainer_command(network, help_), passthrough=True)

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
