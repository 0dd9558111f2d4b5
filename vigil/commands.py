"""The top floor's commands: `vigil demo` (the whole system on this machine) and the benches
(`vigil bench perception`, `pipeline`, `models`), which span the areas.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

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
    from streams.camera import load_replay
    from vigil.bench import bench_pipeline
    from workers.settings import ServingSettings

    roles = ServingSettings(networks=args.networks or "").roles
    replay = load_replay(Path(args.source), args.fps) if args.source else []
    counts = sorted({int(n) for n in str(args.drivers).split(",")})
    # With networks: the same load with them off, then on, so the two compare. With several
    # driver counts: each, in order, until one is not sustained.
    configs = {",".join(r.value for r in served) or "none": served
               for served in [()] + ([roles] if roles else [])}
    results, largest = [], dict.fromkeys(configs, 0)
    for name, served in configs.items():
        for n in counts:
            # A worker that starts with many drivers at once starts behind (models loading,
            # the group joining): measured, 6 drivers needed 40 s to catch up, 8 needed 60.
            warmup = args.warmup if args.warmup is not None else 20.0 + 5.0 * n
            result = bench_pipeline(n, args.fps, args.seconds, args.batch, warmup,
                                    Path(args.log_dir) if args.log_dir else None,
                                    networks=served, replay=replay, workers=args.workers)
            results.append(result)
            if args.json:
                emit(result)
            else:
                _write_pipeline(result)
            if not result["sustained"] or result["lost"]:
                break
            largest[name] = n
    if len(counts) > 1:
        if args.json:
            emit({"largest_sustained_drivers": largest})
        else:
            for name, n in largest.items():
                sys.stdout.write(f"networks {name}: {args.workers} worker process(es) sustain "
                                 f"{n} driver(s) at {args.fps:g} fps with 0 lost\n")
    return 1 if any(r["failed_processes"] for r in results) else 0


def _write_pipeline(result: dict[str, Any]) -> None:
    lat = result["latency"]
    served = ", ".join(result["networks"]) or "none"
    sys.stdout.write(
        f"{result['drivers']} drivers x {result['fps_per_driver']:g} fps ({result['source']}) "
        f"on {result['workers']} worker process(es) "
        f"(offered {result['offered_fps']:g} frames/s, captured {result['captured_fps']:.1f}, "
        f"batches of {result['batch']}), networks: {served}: "
        f"{result['throughput_fps']:.1f} frames/s end to end, "
        f"sustained: {result['sustained']}, "
        f"lost {result['lost']} of {result['frames_sent']}\n")
    if result["dead_letters"] or result["duplicate_observations"] or result["lost"]:
        sys.stdout.write(f"  lost before the frames topic {result['lost_before_topic']}, "
                         f"dead letters {result['dead_letters']}, "
                         f"duplicate observations {result['duplicate_observations']}\n")
    for stage, st in lat.items():
        sys.stdout.write(f"  {stage:34s} p50 {fmt(st['p50_ms'])} ms  p99 {fmt(st['p99_ms'])} ms"
                         f"  max {fmt(st['max_ms'])} ms  (n={st['n']})\n")
    cpu = ", ".join(f"{k} {v:.1f}" for k, v in result["cpu_ms_per_frame"].items())
    sys.stdout.write(f"  CPU ms per frame: {cpu}\n")
    by_stage = result["worker_ms_per_frame_by_stage"]
    if by_stage:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in by_stage.items())
        sys.stdout.write(f"  worker ms per frame by stage (wall, inference threads): {stages}\n")
    sys.stdout.write(f"  worker memory: {result['worker_rss_mb']:.0f} MiB resident "
                     f"({result['worker_rss_mb'] / max(1, result['drivers']):.0f} MiB a driver, "
                     f"models included)\n")
    if result["networks"]:
        sys.stdout.write(f"  network readings: {result['network_readings']}, windows skipped: "
                         f"{result['network_windows_skipped']}\n")
    for failure in result["failed_processes"]:
        sys.stdout.write(f"  FAILED: {failure}\n")


def cmd_bench_serving(args: argparse.Namespace) -> int:
    from workers.serving_bench import bench_serving
    from workers.settings import ServingSettings

    roles = ServingSettings(networks=args.networks).roles
    options: dict[str, Any] = {"device": args.device, "precision": args.precision,
                               "channels_last": args.channels_last, "compile": args.compile,
                               "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms,
                               "torch_threads": args.threads}
    for role in roles:
        stride = getattr(args, f"{role.value}_stride")
        if stride is not None:
            options[f"{role.value}_stride_s"] = stride
    drivers = [int(n) for n in args.drivers.split(",")]
    result = bench_serving(drivers, args.seconds, args.sizes, roles, **options)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=1) + "\n")
    if args.json:
        emit(result)
        return 0
    sys.stdout.write(f"{result['device']}, {result['sizes']} sizes, networks "
                     f"{', '.join(result['networks'])}, {result['settings']}\n")
    for run in result["runs"]:
        sys.stdout.write(f"  {run['drivers']:4d} drivers: kept up {run['kept_up']}, "
                         f"backlog {run['backlog_at_end']}, max queue {run['max_queue']}\n")
        for role, st in run["per_network"].items():
            sys.stdout.write(f"      {role:8s} {st['windows']:6d} windows in {st['batches']:5d} "
                             f"passes (mean batch {st['mean_batch']}), "
                             f"{st['forward_ms_per_window']} ms a window, latency p50 "
                             f"{fmt(st['latency_ms_p50'])} ms p99 {fmt(st['latency_ms_p99'])} ms"
                             "\n")
    sys.stdout.write(f"most drivers kept up: {result['most_drivers_kept_up']}\n")
    return 0


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
            "pipeline under live cameras (simulated, or replaying a recording)",
            parent=bench_sub)
    p.add_argument("--drivers", default="4", help="driver count, or comma-separated counts "
                   "run in turn until one is not sustained (the largest sustained is reported)")
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing the "
                   "drivers as one consumer group (default 1)")
    p.add_argument("--source", metavar="FILE_OR_DIR", help="replay this video's frames or "
                   "this folder's JPEGs (encoded once, sent as they are) instead of simulating "
                   "the cameras: almost no camera CPU, so the worker's capacity shows")
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--seconds", type=float, default=60.0, help="measured span after warm-up")
    p.add_argument("--batch", type=int, default=2, help="frames per batch")
    p.add_argument("--warmup", type=float, default=None,
                   help="seconds not measured at start (default: 20 plus 5 a driver)")
    p.add_argument("--log-dir", help="keep the processes' logs here")
    p.add_argument("--networks", help="also run the same load with these learnt networks "
                   "served (e.g. blink,au,fatigue; untrained weights at the CPU sizes: cost "
                   "only)")
    p.add_argument("--json", action="store_true")
    p = add("serving", cmd_bench_serving, "drivers per device of the learnt networks' "
            "micro-batched serving (synthetic windows, no face engine)", parent=bench_sub)
    p.add_argument("--drivers", default="1,2,4,8", help="comma-separated driver counts")
    p.add_argument("--seconds", type=float, default=20.0, help="real time per driver count")
    p.add_argument("--networks", default="blink,au,fatigue")
    p.add_argument("--sizes", choices=("cpu", "paper"), default="cpu",
                   help="clip and crop sizes: the CPU configuration or the papers'")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--max-wait-ms", type=float, default=20.0)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    for role in ("blink", "au", "fatigue"):
        p.add_argument(f"--{role}-stride", type=float, help=f"seconds between {role} readings "
                       "of a driver (default: the serving settings')")
    p.add_argument("--json", action="store_true")
    p.add_argument("--json-out", help="also write the JSON report to this file")
    p = add("models", cmd_bench_models, "parameters, GFLOPs/clip and CPU latency of the "
            "networks; GPU clips/s with --gpu-batches", parent=bench_sub)
    p.add_argument("--model", action="append", help="only this network (repeatable)")
    p.add_argument("--repeats", type=int, default=5, help="timed CPU calls per network")
    p.add_argument("--gpu-batches", help="comma-separated batch sizes to run on CUDA, e.g. 1,8,32")
    p.add_argument("--json", action="store_true")
