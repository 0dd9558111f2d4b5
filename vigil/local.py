"""The whole pipeline on one machine, for `vigil demo` and `vigil bench pipeline`.

:class:`LocalStack` starts the embedded broker (or uses a given Kafka), then `vigil worker`
and `vigil aggregator` (and, for the demo, the dashboard) as child processes in their own
sessions, and simulated camera agents as threads of this process. Stopping it stops
everything in reverse order; children also die with this process if it is killed (the
kernel's parent-death signal), so nothing outlives it.
"""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from models.errors import VigilError
from streams.broker import EmbeddedBroker, ensure_topics
from streams.camera import CameraAgent, CameraStats, EncodedFrame, FrameSource
from streams.processes import free_port, start_child, stop_child
from streams.settings import StreamSettings, load_settings
from vigil.sources import open_source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimDriver:
    """A simulated driver: who, in which vehicle, behaving how (a simulator profile)."""

    driver_id: str
    name: str
    vehicle_id: str
    profile: str
    seed: int

    @property
    def source(self) -> str:
        return f"sim:{self.profile}:{self.seed}"


# Seeds chosen so the drowsy driver's first microsleep comes early in the footage (8.5 s).
DEMO_DRIVERS = (
    SimDriver("drv-ana", "Ana Ruiz", "van-12", "alert", 2),
    SimDriver("drv-ben", "Ben Okafor", "truck-7", "drowsy", 3),
    SimDriver("drv-chen", "Chen Wei", "van-31", "distracted", 4),
)

PROFILE_CYCLE = ("alert", "drowsy", "distracted", "mixed")


def bench_drivers(n: int) -> list[SimDriver]:
    """``n`` simulated drivers cycling through the profiles."""
    profiles = itertools.cycle(PROFILE_CYCLE)
    return [SimDriver(f"bench-{i:03d}", f"Bench driver {i}", f"veh-{i:03d}", next(profiles),
                      i + 1) for i in range(n)]


@dataclass
class _Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path


class LocalStack:
    """Broker, worker, aggregator (and optional extra processes) plus camera threads.

    ``bootstrap`` None starts the embedded broker. ``env`` is added to the children's
    environment (database URL, webhook endpoints). Logs of the children go to ``log_dir``.
    """

    def __init__(self, log_dir: Path, env: dict[str, str] | None = None,
                 bootstrap: str | None = None, debug: bool = False) -> None:
        self.log_dir = log_dir
        self.env = {**os.environ, **(env or {})}
        self.debug = debug
        self._broker: EmbeddedBroker | None = None
        self._bootstrap = bootstrap
        self._children: list[_Child] = []
        self._cameras: list[tuple[CameraAgent, threading.Thread]] = []
        self.metrics_ports: dict[str, int] = {}

    @property
    def bootstrap(self) -> str:
        if self._bootstrap is None:
            raise VigilError("the stack has not been started")
        return self._bootstrap

    def start(self) -> LocalStack:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self._bootstrap is None:
            self._broker = EmbeddedBroker(log_dir=self.log_dir).start()
            self._bootstrap = self._broker.bootstrap
        ensure_topics(self.bootstrap)
        self.env["VIGIL_KAFKA__BOOTSTRAP_SERVERS"] = self.bootstrap
        return self

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
        """Starts ``argv`` as a child in its own session, output to ``LOG_DIR/NAME.log``,
        with ``env`` added to the stack's environment."""
        log_path = self.log_dir / f"{name}.log"
        proc = start_child(argv, log_path, {**self.env, **(env or {})})
        self._children.append(_Child(name, proc, log_path))
        log.debug("%s started (pid %d), log %s", name, proc.pid, log_path)
        return proc

    def spawn_vigil(self, name: str, *args: str, env: dict[str, str] | None = None
                    ) -> subprocess.Popen[bytes]:
        debug = ["--debug"] if self.debug else []
        return self.spawn(name, [sys.executable, "-m", "vigil", *debug, *args], env)

    def start_pipeline(self, workers: int = 1) -> None:
        """``workers`` inference workers (one consumer group: ``worker``, ``worker-1``, ...)
        and the aggregator (with its store and webhook sinks), each with its metrics and
        health endpoints on a free port (:attr:`metrics_ports`, by name)."""
        names = [("worker" if i == 0 else f"worker-{i}", "worker") for i in range(workers)]
        for name, service in [*names, ("aggregator", "aggregator")]:
            self.metrics_ports[name] = free_port()
            self.spawn_vigil(name, service, "--bootstrap", self.bootstrap,
                             env={"VIGIL_METRICS__PORT": str(self.metrics_ports[name])})

    def start_camera(self, driver: SimDriver, fps: float, batch: int,
                     seconds: float | None = None,
                     replay: Sequence[EncodedFrame] = ()) -> CameraAgent:
        """A camera for ``driver`` publishing in real time from a thread: the simulator, or
        ``replay``'s frames over and over. The simulator's first frame (loading and checking
        faces) is rendered here, before the clock starts, so capture timestamps are not
        skewed by start-up."""
        primed: Iterable[np.ndarray | EncodedFrame]
        if replay:
            primed = itertools.cycle(replay)
        else:
            source, _ = open_source(driver.source, fps)
            primed = _primed(source)
        settings = load_settings(StreamSettings)
        agent = CameraAgent(self.bootstrap, driver.driver_id, driver.vehicle_id, fps, batch,
                            settings=settings.camera, compression=settings.kafka.compression,
                            kafka=settings.kafka)
        max_frames = round(seconds * fps) if seconds else None
        thread = threading.Thread(target=agent.run, args=(primed, True, max_frames),
                                  name=f"camera-{driver.driver_id}", daemon=True)
        thread.start()
        self._cameras.append((agent, thread))
        return agent

    def wait_cameras(self, timeout_s: float | None = None) -> list[CameraStats]:
        for _, thread in self._cameras:
            thread.join(timeout_s)
        return [agent.stats for agent, _ in self._cameras]

    def failed_children(self) -> list[str]:
        """Children that exited, with the tail of their log."""
        return [f"{c.name} exited with {c.proc.returncode}:\n{_tail(c.log_path)}"
                for c in self._children if c.proc.poll() is not None]

    def pid(self, name: str) -> int:
        return next(c.proc.pid for c in self._children if c.name == name)

    @property
    def broker_pid(self) -> int | None:
        """The embedded broker's process id (None when using an external Kafka)."""
        return self._broker.pid if self._broker is not None else None

    def stop(self) -> None:
        """Stops cameras, then children (SIGTERM, SIGKILL after a grace period), then the
        broker. Interrupted again while stopping (a second Ctrl-C), it kills what is left at
        once rather than leave it running."""
        try:
            self._stop(grace_s=20.0)
        except KeyboardInterrupt:
            self._stop(grace_s=0.0)
            raise

    def _stop(self, grace_s: float) -> None:
        for agent, _ in self._cameras:
            agent.stop()
        for _, thread in self._cameras:
            thread.join(grace_s)
        while self._children:
            stop_child(self._children[-1].proc, grace_s)
            self._children.pop()
        if self._broker is not None:
            self._broker.stop()
            self._broker = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _primed(source: FrameSource) -> FrameSource:
    first = next(source)
    return itertools.chain([first], source)


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")

