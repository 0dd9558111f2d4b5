"""`vigil bench serving`: the learnt networks' micro-batched serving alone, on CPU or GPU.

Synthetic windows of N drivers fall due at each network's stride, in real time, and go through
one :class:`workers.serving.MicroBatcher`. Per N it reports whether serving kept up (the
backlog did not grow, every reading within its stride), the batches it formed, the forward
time a window and the latency from a window's submission to its reading: drivers per device,
with no face engine in the way. It needs only torch, numpy, pydantic(-settings) and OpenCV, so
it runs on a GPU machine with a CUDA build of torch (``scripts/bench-serving-gpu.sh``).

The checkpoints are untrained (:func:`cost_checkpoints`): a forward pass costs the same
whatever the weights, so these measure cost, never quality.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.checkpoint import save_checkpoint
from models.registry import create_model
from streams.schemas import NetworkRole
from workers.serving import ROLE_MODELS, MicroBatcher, NetworkSet, WindowRequest
from workers.settings import ServingSettings

# Per role: (clip frames, crop size (H, W), the builder's overrides). "cpu": what fits beside
# the face engine on a 2-core worker (README, "The learnt networks in the worker"); "paper":
# the papers' sizes, for GPUs.
SERVING_SIZES: dict[str, dict[NetworkRole, tuple[int, tuple[int, int], dict[str, Any]]]] = {
    "cpu": {NetworkRole.BLINK: (10, (96, 72), {"region_size": 40}),
            NetworkRole.AU: (4, (112, 112), {}),
            NetworkRole.FATIGUE: (8, (112, 112), {})},
    "paper": {NetworkRole.BLINK: (10, (256, 192), {}),
              NetworkRole.AU: (16, (224, 224), {}),
              NetworkRole.FATIGUE: (32, (224, 224), {})},
}
_IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def serving_preprocessing(role: NetworkRole, frames: int, size: tuple[int, int],
                          region_size: int = 100, fps: float = 10.0) -> dict[str, Any]:
    """The part of a checkpoint's preprocessing that serving reads, as the role's trainer
    writes it (``training.{blink,au,fatigue}.preprocessing``; a test keeps them alike)."""
    if role is NetworkRole.BLINK:
        return {"clip_length": frames, "face_size": list(size), "region_size": region_size,
                "mean": [0.4814576470588235, 0.4546921568627451, 0.40384352941176466],
                "std": [1.0, 1.0, 1.0], "labels": ["no_blink", "blink"], "fps": fps,
                "crop": "workers.face.crops.eye_regions"}
    layout = "(B, T, 3, H, W)" if role is NetworkRole.AU else "(B, 3, T, H, W)"
    return {"clip_length": frames, "size": list(size), "layout": layout, **_IMAGENET,
            "fps": fps, "crop": "workers.face.crops.align_face"}


def cost_checkpoints(out_dir: Path, roles: Sequence[NetworkRole], sizes: str = "cpu",
                     fps: float = 10.0) -> dict[NetworkRole, Path]:
    """Untrained checkpoints of the served networks at ``SERVING_SIZES[sizes]``: for measuring
    cost only, never for readings."""
    out: dict[NetworkRole, Path] = {}
    for role in roles:
        frames, size, args = SERVING_SIZES[sizes][role]
        pre = serving_preprocessing(role, frames, size, int(args.get("region_size", 100)), fps)
        pre["note"] = "untrained: for measuring cost only"
        name = ROLE_MODELS[role]
        out[role] = out_dir / f"{role.value}-{sizes}-untrained.pt"
        save_checkpoint(out[role], create_model(name, **args), name, args, pre)
    return out


def bench_serving(drivers: Sequence[int], seconds: float = 20.0, sizes: str = "cpu",
                  roles: Sequence[NetworkRole] = tuple(NetworkRole), fps: float = 10.0,
                  **settings: Any) -> dict[str, Any]:
    """Synthetic windows of each N in ``drivers`` at every role's stride, for ``seconds`` of
    real time, through one batcher built from ``settings`` (ServingSettings fields: device,
    precision, channels_last, compile, max_batch, max_wait_ms, strides). See the module
    docstring."""
    import torch

    config = ServingSettings(networks=",".join(r.value for r in roles), **settings)
    torch.set_num_threads(config.torch_threads)
    with tempfile.TemporaryDirectory(prefix="vigil-serving-") as tmp:
        paths = cost_checkpoints(Path(tmp), roles, sizes, fps)
        config = config.model_copy(update={f"{r.value}_checkpoint": p for r, p in paths.items()})
        networks = NetworkSet(config)
    rng = np.random.default_rng(0)
    results = []
    device = str(torch.cuda.get_device_name(0)) if config.device.startswith("cuda") else "cpu"
    for n in drivers:
        batcher = MicroBatcher(networks, config.max_batch, config.max_wait_ms)
        inputs = {}
        for role in roles:
            net = networks.get(role)
            assert net is not None
            inputs[role] = (net.spec, net.spec.example(rng))
        # Each driver's windows fall due at its stride, drivers spread over the stride.
        due = [(k * config.stride_s(r) / n, k, r) for k in range(n) for r in roles]
        due.sort(key=lambda item: item[0])
        start = time.perf_counter()
        submitted = 0
        max_queue = 0
        while True:
            now = time.perf_counter() - start
            if now >= seconds:
                break
            while due and due[0][0] <= now:
                at, k, role = due.pop(0)
                spec, clip_inputs = inputs[role]
                batcher.submit(WindowRequest(f"d{k}", role, int(at * fps), at, clip_inputs, spec,
                                             time.perf_counter()))
                submitted += 1
                due.append((at + config.stride_s(role), k, role))
                due.sort(key=lambda item: item[0])
            max_queue = max(max_queue, batcher.queued())
            time.sleep(0.001)
        backlog = batcher.queued()
        batcher.drain(timeout_s=120.0)
        batcher.close()
        summary = batcher.stats.summary()
        kept_up = backlog <= n * len(roles) and all(
            (s["latency_ms_p99"] or 0) / 1000 < config.stride_s(NetworkRole(r))
            for r, s in summary.items())
        results.append({"drivers": n, "kept_up": kept_up, "windows_submitted": submitted,
                        "backlog_at_end": backlog, "max_queue": max_queue,
                        "per_network": summary})
    sustained = [n for n, r in zip(drivers, results, strict=True) if r["kept_up"]]
    return {"device": device, "sizes": sizes, "fps": fps,
            "settings": json.loads(config.model_dump_json(
                include={"precision", "channels_last", "compile", "max_batch", "max_wait_ms",
                         "blink_stride_s", "au_stride_s", "fatigue_stride_s",
                         "torch_threads"})),
            "networks": [r.value for r in roles],
            "most_drivers_kept_up": max(sustained) if sustained else 0, "runs": results}
