"""The learnt networks in the worker's serving path: blinks (paper 004), action units (SAT-Net)
and fatigue (the non-local 3D ResNet), micro-batched across drivers, off the event loop.

- :class:`ServedNetwork`: one version of one network, loaded from its checkpoint (which says
  what its inputs are, :class:`workers.windows.InputSpec`) into a
  :class:`models.predictor.ClipPredictor` on the configured device and precision.
- :class:`NetworkSet`: the version served for each role; :meth:`NetworkSet.refresh` swaps in
  a version newly promoted in the registry between two forward passes, so a stream never
  stops and no frame is lost (a version whose inputs differ restarts the drivers' windows).
- :class:`MicroBatcher`: one thread. Drivers' lanes :meth:`~MicroBatcher.submit` their due
  windows and go on at once; the thread runs one forward pass per network over every
  driver's window that is waiting, as soon as ``max_batch`` are waiting or the oldest has
  waited ``max_wait_ms``, and leaves each reading in its driver's outbox.
- :class:`DriverNetworks`: one driver's windows, fed from the frame and detection the
  perception has just used; each stride it submits the window, or, when the window is not
  full of usable crops, a skipped reading saying why. :meth:`~DriverNetworks.take` hands the
  readings finished since the last call to the driver's next observation.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from models.checkpoint import load_checkpoint
from models.errors import VigilError
from models.predictor import ClipPredictor
from streams.errors import ConfigurationError
from streams.observability import (
    NETWORK_FORWARD,
    NETWORK_LATENCY,
    NETWORK_WINDOWS,
    model_served,
)
from streams.schemas import NetworkReading, NetworkRole
from workers.face.engine import FaceDetection
from workers.settings import ServingSettings
from workers.windows import CropWindow, InputSpec

log = logging.getLogger(__name__)

# The registry name of the network each role serves (its checkpoints carry that name).
ROLE_MODELS: dict[NetworkRole, str] = {
    NetworkRole.BLINK: "blink-eyelid-motion",
    NetworkRole.AU: "satnet",
    NetworkRole.FATIGUE: "fatigue-nonlocal-r3d18",
}
MAX_LATENCIES = 4096


def _outputs(role: NetworkRole, readout: Mapping[str, torch.Tensor],
             labels: list[str], threshold: float) -> dict[str, float]:
    """One driver's readout -> the reading's outputs (rounded: they travel as JSON)."""
    if role is NetworkRole.BLINK:
        p = float(readout["blink_probability"].max())  # per-eye: the more certain eye
        return {"blink_probability": round(p, 4), "blink": float(p >= threshold)}
    if role is NetworkRole.AU:
        last = readout["probabilities"][-1]  # (K,) the window's newest frame
        names = labels if len(labels) == len(last) else [f"AU{i}" for i in range(len(last))]
        return {name: round(float(v), 4) for name, v in zip(names, last.tolist(), strict=True)}
    score = float(readout["score"])
    return {"fatigue_score": round(score, 4),
            "fatigue_bin": float(int(torch.argmax(readout["bin_probabilities"]))),
            "fatigued": float(score >= threshold)}


@dataclass
class ServedNetwork:
    """One version of one role's network, ready to run (see the module docstring)."""

    role: NetworkRole
    version: str
    predictor: ClipPredictor
    spec: InputSpec
    labels: list[str] = field(default_factory=list)
    # A blink reading >= this is a blink; a fatigue score >= this is "fatigued" (the
    # checkpoint's own ``threshold`` or ``fatigued_threshold``, else 0.5).
    threshold: float = 0.5

    @property
    def model(self) -> str:
        return ROLE_MODELS[self.role]

    @classmethod
    def load(cls, role: NetworkRole, checkpoint: Path | bytes, version: str,
             settings: ServingSettings) -> ServedNetwork:
        """Loads ``checkpoint`` (a path or the registry's bytes); raises ConfigurationError
        when it is not ``role``'s network or its inputs are not servable."""
        source = io.BytesIO(checkpoint) if isinstance(checkpoint, bytes) else checkpoint
        try:
            model, meta = load_checkpoint(source)
        except (VigilError, OSError) as exc:
            raise ConfigurationError(f"{role.value} network version {version}: {exc}") from None
        if meta["name"] != ROLE_MODELS[role]:
            raise ConfigurationError(f"{role.value} network version {version} holds "
                                     f"{meta['name']!r}, not {ROLE_MODELS[role]!r}")
        spec = InputSpec.from_preprocessing(meta.get("preprocessing") or {})
        predictor = ClipPredictor(model, device=settings.device, precision=settings.precision,
                                  channels_last=settings.channels_last,
                                  compile=settings.compile, max_batch=settings.max_batch,
                                  preprocessing=meta.get("preprocessing"))
        pre = meta.get("preprocessing") or {}
        labels = [str(v) for v in pre.get("labels", [])]
        threshold = float(pre.get("fatigued_threshold", pre.get("threshold", 0.5)))
        if settings.compile:  # the compiled graph must read what the eager model reads
            example = spec.example(np.random.default_rng(0))
            batch = [torch.from_numpy(np.stack([x, x])) for x in example]
            tolerance = 1e-3 if settings.precision == "fp32" else 3e-2
            try:
                worst = predictor.check_compiled(*batch, atol=tolerance, rtol=tolerance)
            except VigilError as exc:
                raise ConfigurationError(f"{role.value} network version {version}: {exc}"
                                         ) from None
            log.info("%s version %s compiled; readouts within %.2g of eager inference",
                     ROLE_MODELS[role], version, worst)
        return cls(role, version, predictor, spec, labels, threshold)


class PromotedModelSource(Protocol):
    """Where promoted versions come from (``store.model_versions`` in production)."""

    def promoted(self, name: str) -> tuple[str, bytes] | None: ...


class NetworkSet:
    """The version served for each enabled role: the registry's promoted one when a source is
    given and something is promoted, else the configured checkpoint. Reads and swaps are
    atomic (one attribute), so the batcher always runs a whole version."""

    def __init__(self, settings: ServingSettings,
                 source: PromotedModelSource | None = None) -> None:
        self.settings = settings
        self._source = source
        self._served: dict[NetworkRole, ServedNetwork] = {}
        self._failed: dict[NetworkRole, str] = {}
        self.swaps = 0
        for role in settings.roles:
            path = settings.checkpoint(role)
            if path is not None:
                self._served[role] = ServedNetwork.load(role, path, f"file:{path.name}",
                                                        settings)
        self.refresh()
        for network in self._served.values():
            model_served(network.model, network.version)
        missing = [r.value for r in settings.roles if r not in self._served]
        if missing:
            raise ConfigurationError(
                f"networks {missing} are enabled but have no weights: set "
                f"VIGIL_SERVING__<ROLE>_CHECKPOINT or promote a version in the registry")

    def get(self, role: NetworkRole) -> ServedNetwork | None:
        return self._served.get(role)

    @property
    def roles(self) -> list[NetworkRole]:
        return list(self._served)

    def versions(self) -> dict[str, str]:
        return {role.value: net.version for role, net in self._served.items()}

    def refresh(self) -> list[NetworkRole]:
        """Loads every newly promoted version and swaps it in; returns the roles swapped. A
        version that fails to load is logged once and the current one stays in service."""
        if self._source is None:
            return []
        swapped: list[NetworkRole] = []
        for role in self.settings.roles:
            try:
                promoted = self._source.promoted(ROLE_MODELS[role])
            except VigilError as exc:
                log.warning("model registry unreadable, serving what is loaded: %s", exc)
                return swapped
            current = self._served.get(role)
            if promoted is None or promoted[0] in (current and current.version,
                                                   self._failed.get(role)):
                continue
            version, blob = promoted
            try:
                network = ServedNetwork.load(role, blob, version, self.settings)
            except ConfigurationError as exc:
                self._failed[role] = version
                log.error("promoted %s version %s does not load, still serving %s: %s",
                          ROLE_MODELS[role], version, current and current.version, exc)
                continue
            log.info("serving %s version %s (was %s)", network.model, version,
                     current and current.version)
            self._served[role] = network
            model_served(network.model, version)
            self.swaps += 1
            swapped.append(role)
        return swapped


@dataclass(frozen=True)
class WindowRequest:
    """One driver's due window: frames ``first_seq``..``seq`` (captured ``first_at``..
    ``captured_at``) as the network's ``inputs``; ``submitted``: perf_counter."""

    driver: str
    role: NetworkRole
    seq: int
    captured_at: float
    inputs: tuple[np.ndarray, ...]
    spec: InputSpec
    submitted: float
    first_seq: int = 0
    first_at: float = 0.0


@dataclass
class ServingStats:
    """Counters and recent latencies of the batcher (read by the bench and tests)."""

    batches: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    windows: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    skipped: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rejected: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    forward_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    # submit -> reading in the outbox, seconds, per role (the newest MAX_LATENCIES)
    latencies: dict[str, deque[float]] = field(
        default_factory=lambda: defaultdict(lambda: deque(maxlen=MAX_LATENCIES)))

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for role in sorted(set(self.batches) | set(self.skipped)):
            lat = np.asarray(self.latencies.get(role, ()), dtype=float)
            out[role] = {
                "batches": self.batches.get(role, 0), "windows": self.windows.get(role, 0),
                "mean_batch": round(self.windows.get(role, 0) / max(1, self.batches.get(role, 0)),
                                    2),
                "skipped": self.skipped.get(role, 0), "rejected": self.rejected.get(role, 0),
                "forward_ms_per_window": round(1000 * self.forward_s.get(role, 0.0)
                                               / max(1, self.windows.get(role, 0)), 2),
                "latency_ms_p50": round(1000 * float(np.percentile(lat, 50)), 1)
                if lat.size else None,
                "latency_ms_p99": round(1000 * float(np.percentile(lat, 99)), 1)
                if lat.size else None,
            }
        return out


class MicroBatcher:
    """Gathers due windows of every driver and runs them, one forward pass per network per
    batch, in its own thread (see the module docstring)."""

    def __init__(self, networks: NetworkSet, max_batch: int = 16, max_wait_ms: float = 20.0,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.networks = networks
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.clock = clock
        self.stats = ServingStats()
        self._queues: dict[NetworkRole, deque[WindowRequest]] = defaultdict(deque)
        self._outbox: dict[str, list[NetworkReading]] = defaultdict(list)
        self._cond = threading.Condition()
        self._busy = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="vigil-serving", daemon=True)
        self._thread.start()

    def submit(self, request: WindowRequest) -> None:
        with self._cond:
            self._queues[request.role].append(request)
            self._cond.notify()

    def post(self, driver: str, reading: NetworkReading) -> None:
        """Leaves a reading made without a forward pass (a skipped window) in the outbox."""
        with self._cond:
            if reading.skipped is not None:
                self.stats.skipped[reading.role.value] += 1
                NETWORK_WINDOWS.labels(reading.model, "skipped").inc()
            self._outbox[driver].append(reading)

    def queued(self) -> int:
        """Windows waiting for a forward pass."""
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    def take(self, driver: str) -> list[NetworkReading]:
        """The driver's readings finished since the last call, oldest first."""
        with self._cond:
            return self._outbox.pop(driver, [])

    def drain(self, timeout_s: float = 60.0) -> bool:
        """Waits until nothing is queued or running (evaluation and tests); False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while any(self._queues.values()) or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.notify_all()
                self._cond.wait(min(left, 0.05))
        return True

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=30)

    # --- the thread --------------------------------------------------------------------------

    def _ready(self, now: float) -> NetworkRole | None:
        """The role whose queue should run now: full, or its oldest waited long enough (or
        everything, when stopping or draining)."""
        oldest: tuple[float, NetworkRole] | None = None
        for role, queue in self._queues.items():
            if not queue:
                continue
            if len(queue) >= self.max_batch or self._stopping:
                return role
            if oldest is None or queue[0].submitted < oldest[0]:
                oldest = (queue[0].submitted, role)
        if oldest is not None and now - oldest[0] >= self.max_wait_s - 1e-9:
            return oldest[1]
        return None

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    role = self._ready(self.clock())
                    if role is not None or (self._stopping and not any(self._queues.values())):
                        break
                    pending = [q[0].submitted for q in self._queues.values() if q]
                    wait = (self.max_wait_s - (self.clock() - min(pending))) if pending else None
                    self._cond.wait(None if wait is None else max(wait, 0.0005))
                if role is None:
                    return
                queue = self._queues[role]
                batch = [queue.popleft() for _ in range(min(self.max_batch, len(queue)))]
                self._busy = True
            try:
                self._forward(role, batch)
            except Exception:  # a failed batch never stops serving
                log.exception("%s network failed on a batch of %d windows", role.value,
                              len(batch))
                NETWORK_WINDOWS.labels(ROLE_MODELS[role], "rejected").inc(len(batch))
                with self._cond:
                    self.stats.rejected[role.value] += len(batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _forward(self, role: NetworkRole, batch: list[WindowRequest]) -> None:
        network = self.networks.get(role)
        if network is None:
            return
        # A window cut for another version's inputs (a swap in between) is not run.
        runnable = [r for r in batch if r.spec == network.spec]
        stale = len(batch) - len(runnable)
        start = time.perf_counter()
        predictions = network.predictor.predict(
            {f"{i}": r.inputs if len(r.inputs) > 1 else r.inputs[0]
             for i, r in enumerate(runnable)})
        elapsed = time.perf_counter() - start
        done = self.clock()
        NETWORK_FORWARD.labels(network.model).observe(elapsed)
        NETWORK_WINDOWS.labels(network.model, "run").inc(len(runnable) -
                                                         len(predictions.rejected))
        if len(predictions.rejected) + stale:
            NETWORK_WINDOWS.labels(network.model, "rejected").inc(len(predictions.rejected)
                                                                  + stale)
        latency = NETWORK_LATENCY.labels(network.model)
        with self._cond:
            stats = self.stats
            stats.batches[role.value] += 1
            stats.windows[role.value] += len(runnable)
            stats.forward_s[role.value] += elapsed
            stats.rejected[role.value] += len(predictions.rejected) + stale
            for i, request in enumerate(runnable):
                readout = predictions.outputs.get(f"{i}")
                if readout is None:
                    reason = predictions.rejected.get(f"{i}", "not run")
                    log.warning("%s network rejected driver %s's window: %s", role.value,
                                request.driver, reason)
                    continue
                stats.latencies[role.value].append(done - request.submitted)
                latency.observe(done - request.submitted)
                self._outbox[request.driver].append(NetworkReading(
                    role=role, model=network.model, version=network.version,
                    window_start_seq=request.first_seq, window_start_at=request.first_at,
                    window_end_seq=request.seq, window_end_at=request.captured_at,
                    outputs=_outputs(role, readout, network.labels, network.threshold)))


class DriverNetworks:
    """One driver's crop windows for every served network (see the module docstring)."""

    def __init__(self, driver: str, batcher: MicroBatcher, settings: ServingSettings) -> None:
        self.driver = driver
        self.batcher = batcher
        self.settings = settings
        self._windows: dict[NetworkRole, CropWindow] = {}

    def add(self, seq: int, captured_at: float, frame_bgr: np.ndarray,
            face: FaceDetection | None, sensing: str | None) -> None:
        """Feeds the frame the perception just used to every network's window, and submits the
        windows that are due (or says why one cannot run)."""
        networks = self.batcher.networks
        cut: dict[tuple[Any, ...], Any] = {}  # this frame's crops, shared by the networks
        for role in networks.roles:
            network = networks.get(role)
            if network is None:
                continue
            window = self._windows.get(role)
            if window is None or window.spec != network.spec:  # new, or a swap changed inputs
                window = self._windows[role] = CropWindow(network.spec)
            stride = self.settings.stride_s(role)
            window.add(seq, captured_at, frame_bgr, face, sensing, stride, cut)
            if not window.due(captured_at, stride):
                continue
            window.last_run_at = captured_at
            oldest = window.oldest
            assert oldest is not None  # the frame just added
            missing = window.missing()
            if missing is not None:
                self.batcher.post(self.driver, NetworkReading(
                    role=role, model=network.model, version=network.version,
                    window_start_seq=oldest.seq, window_start_at=oldest.captured_at,
                    window_end_seq=seq, window_end_at=captured_at, skipped=missing[:64]))
                continue
            self.batcher.submit(WindowRequest(self.driver, role, seq, captured_at,
                                              window.clip(), network.spec,
                                              self.batcher.clock(), oldest.seq,
                                              oldest.captured_at))

    def take(self) -> list[NetworkReading]:
        return self.batcher.take(self.driver)
