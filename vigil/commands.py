"""The top floor's commands: `vigil demo` (the whole system on this machine) and the benches
(`vigil bench perception`, `pipeline`, `models`), which span the areas.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from streams.cmdline import Subparsers, adder, emit, fmt, stop_on_interrupt_or_term


def cmd_demo(args: argparse.Namespace) -> int:
    import tempfile

    from vigil.demo import Demo

    stop_on_interrupt_or_term()
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


def cmd_bench_perception(args: argparse.Namespace) -> int:
    from workers.bench import bench_perception

    result = bench_perception(frames=args.frames, engine=args.engine, cores=args.cores)
    if args.json:
        emit(result)
    else:
        sys.stdout.write(
            f"{result['engine']}: {result['fps']:.1f} frames/s on {result['cores']} core(s) at "
            f"{result['width']}x{result['height']} (p50 {result['ms_p50']:.2f} ms, "
            f"p99 {result['ms_p99']:.2f} ms per frame, face in {result['face_rate']:.0%})\n"
        )
    return 0


def cmd_bench_pipeline(args: argparse.Namespace) -> int:
    from vigil.bench import bench_pipeline

    result = bench_pipeline(args.drivers, args.fps, args.seconds, args.batch, args.warmup,
                            Path(args.log_dir) if args.log_dir else None)
    if args.json:
        emit(result)
        return 0
    lat = result["latency"]
    sys.stdout.write(
        f"{result['drivers']} drivers x {result['fps_per_driver']:g} fps "
        f"(offered {result['offered_fps']:g} frames/s, captured {result['captured_fps']:.1f}, "
        f"batches of {result['batch']}): {result['throughput_fps']:.1f} frames/s end to end, "
        f"sustained: {result['sustained']}, "
        f"lost {result['lost']} of {result['frames_sent']}\n")
    for stage, st in lat.items():
        sys.stdout.write(f"  {stage:34s} p50 {fmt(st['p50_ms'])} ms  p99 {fmt(st['p99_ms'])} ms"
                         f"  max {fmt(st['max_ms'])} ms  (n={st['n']})\n")
    cpu = ", ".join(f"{k} {v:.1f}" for k, v in result["cpu_ms_per_frame"].items())
    sys.stdout.write(f"  CPU ms per frame: {cpu}\n")
    for failure in result["failed_processes"]:
        sys.stdout.write(f"  FAILED: {failure}\n")
    return 1 if result["failed_processes"] else 0


def cmd_bench_models(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from models.bench import bench_models, format_report

    batches = [int(b) for b in args.gpu_batches.split(",")] if args.gpu_batches else []
    reports = bench_models(args.model, cpu_repeats=args.repeats, gpu_batches=batches)
    if args.json:
        for report in reports:
            emit(asdict(report))
    else:
        sys.stdout.write("\n".join(format_report(reports)) + "\n")
    return 0


def register(sub: Subparsers) -> None:
    """demo, bench (perception, pipeline, models)."""
    add = adder(sub)

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
