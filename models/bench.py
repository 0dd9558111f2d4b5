"""``vigil bench models``: size and speed of every registered network at the size it is
deployed at (each registry entry's example inputs: the papers' clip lengths and resolutions).

Per network: parameters; GFLOPs per clip from torch's flop counter (a multiply-add counts 2);
CPU latency at batch 1 (median of timed calls after a warm-up); and, on CUDA, throughput in
clips/s at deployment batch sizes under each configuration of bf16 autocast, channels-last
weights and ``torch.compile``, with the fraction of the GPU's dense tensor-core peak that the
achieved FLOP rate is. Every call goes through :class:`~models.predictor.ClipPredictor`, the
path the workers take.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

from models.predictor import ClipPredictor
from models.registry import ModelError, create_model, list_models, model_entry

log = logging.getLogger(__name__)

# (precision, channels_last, compile): fp32 eager first, as the baseline.
GPU_CONFIGS: tuple[tuple[str, bool, bool], ...] = (
    ("fp32", False, False), ("bf16", False, False), ("bf16", True, False),
    ("bf16", False, True), ("bf16", True, True))

# Dense tensor-core peaks in TFLOP/s from NVIDIA's data sheets: bf16, and TF32 (what cuDNN
# runs fp32 convolutions on by default). The first name contained in the device's wins.
PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H200", {"bf16": 989.4, "fp32": 494.7}),
    ("H100 PCIe", {"bf16": 756.5, "fp32": 378.0}),
    ("H100 NVL", {"bf16": 835.5, "fp32": 417.5}),
    ("H100", {"bf16": 989.4, "fp32": 494.7}),  # SXM5
    ("A100", {"bf16": 312.0, "fp32": 156.0}),
    ("L4", {"bf16": 121.0, "fp32": 60.0}),
)


def peak_tflops(device_name: str, precision: str) -> float | None:
    for name, peaks in PEAK_TFLOPS:
        if name in device_name:
            return peaks.get(precision)
    return None


@dataclass
class GpuRun:
    batch: int
    precision: str
    channels_last: bool
    compiled: bool
    clips_per_s: float
    tflops: float
    peak_fraction: float | None


@dataclass
class ModelBench:
    name: str
    params: int
    input_shapes: list[list[int]]
    gflops_per_clip: float
    cpu_ms_batch1: float
    gpu_device: str | None = None
    gpu: list[GpuRun] = field(default_factory=list)


def count_flops(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """FLOPs of one forward call (torch's counter: matmuls and convolutions, 2 per MAC)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(*inputs)
    return int(counter.get_total_flops())


def time_calls(call: Callable[[], object], repeats: int, warmup: int,
               sync: Callable[[], None] = lambda: None) -> list[float]:
    """Seconds taken by each of ``repeats`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - start)
    return times


def gpu_throughput(name: str, batch: int, precision: str, channels_last: bool, compiled: bool,
                   min_seconds: float = 2.0) -> float:
    """Clips/s of ``name`` on CUDA at ``batch`` in one configuration."""
    predictor = ClipPredictor(create_model(name), device="cuda", precision=precision,
                              channels_last=channels_last, compile=compiled, max_batch=batch)
    inputs = tuple(x.cuda() for x in model_entry(name).example_inputs(batch))

    def call() -> object:
        return predictor.run_batch(*inputs)

    sync = torch.cuda.synchronize
    first = time_calls(call, repeats=1, warmup=3, sync=sync)[0]  # compiles, tunes
    repeats = max(5, int(min_seconds / max(first, 1e-4)))
    return batch * repeats / sum(time_calls(call, repeats=repeats, warmup=0, sync=sync))


def bench_model(name: str, cpu_repeats: int = 5, gpu_batches: Sequence[int] = (),
                gpu_configs: Sequence[tuple[str, bool, bool]] = GPU_CONFIGS) -> ModelBench:
    """One network's report; the GPU part only when ``gpu_batches`` is given."""
    model = create_model(name).eval()
    inputs = model_entry(name).example_inputs(1)
    flops = count_flops(model, inputs)
    predictor = ClipPredictor(model)
    cpu = time_calls(lambda: predictor.run_batch(*inputs), repeats=cpu_repeats, warmup=1)
    report = ModelBench(name, sum(p.numel() for p in model.parameters()),
                        [list(x.shape[1:]) for x in inputs], flops / 1e9,
                        statistics.median(cpu) * 1e3)
    if gpu_batches:
        if not torch.cuda.is_available():
            raise ModelError("GPU throughput asked for, but torch sees no CUDA device")
        report.gpu_device = torch.cuda.get_device_name()
        torch.backends.cudnn.benchmark = True
        for batch in gpu_batches:
            for precision, channels_last, compiled in gpu_configs:
                rate = gpu_throughput(name, batch, precision, channels_last, compiled)
                torch.cuda.empty_cache()
                tflops = rate * flops / 1e12
                peak = peak_tflops(report.gpu_device, precision)
                report.gpu.append(GpuRun(batch, precision, channels_last, compiled, rate,
                                         tflops, tflops / peak if peak else None))
                log.info("%s batch %d %s%s%s: %.1f clips/s", name, batch, precision,
                         " channels-last" if channels_last else "",
                         " compiled" if compiled else "", rate)
    return report


def bench_models(names: Sequence[str] | None = None, cpu_repeats: int = 5,
                 gpu_batches: Sequence[int] = ()) -> list[ModelBench]:
    return [bench_model(name, cpu_repeats, gpu_batches)
            for name in (names or [e.name for e in list_models()])]


def format_report(reports: Sequence[ModelBench]) -> list[str]:
    """Human-readable lines: one per network, then one per GPU configuration."""
    lines = [f"{torch.get_num_threads()} CPU threads"]
    for r in reports:
        shapes = " + ".join("x".join(map(str, s)) for s in r.input_shapes)
        lines.append(f"{r.name:24s} {r.params / 1e6:6.2f} M params  {r.gflops_per_clip:8.2f} "
                     f"GFLOPs/clip ({shapes})  CPU batch 1: {r.cpu_ms_batch1:9.1f} ms")
        if r.gpu:
            lines.append(f"  on {r.gpu_device}:")
        for g in r.gpu:
            config = "+".join([g.precision] + ["channels-last"] * g.channels_last
                              + ["compile"] * g.compiled)
            peak = f"{100 * g.peak_fraction:5.1f} % of peak" if g.peak_fraction else ""
            lines.append(f"    batch {g.batch:3d} {config:30s} {g.clips_per_s:9.1f} clips/s "
                         f"{g.tflops:7.1f} TFLOP/s {peak}")
    return lines
