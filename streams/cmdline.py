"""What the areas' commands share.

Each area registers its own subcommands of `vigil` (``streams.commands``,
``workers.commands``, ``training.commands``, ``dashboard.commands``; the top floor's in
``vigil.commands``) with a ``register(sub)`` of argparse wiring and thin handlers; a handler
takes the parsed arguments and returns the exit status. :mod:`vigil.cli` assembles them, sets
up logging and turns errors into exit codes.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from streams.errors import ConfigurationError
from streams.settings import load_settings

if TYPE_CHECKING:
    from streams.observability import Health, MetricsSettings

    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subparsers = Any

Handler = Callable[[argparse.Namespace], int]
Add = Callable[..., argparse.ArgumentParser]


def adder(sub: Subparsers) -> Add:
    """``add(name, fn, help_, parent=sub)``: a subcommand whose handler is ``fn``."""

    def add(name: str, fn: Handler, help_: str, parent: Any = sub) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help_, description=help_)
        p.set_defaults(fn=fn)
        return p

    return add


def stop_on_interrupt_or_term() -> None:
    """Ctrl-C (SIGINT) and a service manager's SIGTERM both raise KeyboardInterrupt, so a
    long-running command leaves cleanly either way. SIGINT is set explicitly: a shell starts
    background jobs of a script with SIGINT ignored, and Python then never reacts to it."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def emit(obj: Any) -> None:
    """One JSON object on one line of stdout."""
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def kafka_bootstrap(args: argparse.Namespace) -> str:
    """``--bootstrap``, else the settings' bootstrap servers; ConfigurationError when none."""
    from streams.settings import StreamSettings

    bootstrap = args.bootstrap or load_settings(StreamSettings).kafka.bootstrap_servers
    if not bootstrap:
        raise ConfigurationError(
            "no Kafka broker: pass --bootstrap HOST:PORT or set VIGIL_KAFKA__BOOTSTRAP_SERVERS "
            "(`vigil broker` runs the embedded one)"
        )
    return str(bootstrap)


def run_faust(app: Any, close: Callable[[], None], debug: bool,
              health: Health | None = None, metrics: MetricsSettings | None = None) -> int:
    """Runs a Faust app until it is stopped (Ctrl-C, SIGTERM), then releases its resources.

    With ``health``, the service's metrics and health endpoints are served meanwhile
    (:mod:`streams.observability`), readiness including the app's consumer group. Faust is
    started without its own logging set-up (``override_logging=False``): it would reset the
    root logger to its level and handlers, and the services' INFO lines and format
    (:mod:`streams.logs`, set by ``vigil.cli``) would be lost."""
    import faust

    from streams.observability import FaustProbe, start_observability

    server = None
    if health is not None:
        FaustProbe(app, health, metrics)
        server = start_observability(health, metrics)
    try:
        worker = faust.Worker(app, loglevel="DEBUG" if debug else "WARNING", quiet=True,
                              override_logging=False)
        worker.spinner = None  # its terminal escapes would land in the (JSON) log
        worker.execute_from_commandline()
    finally:
        close()
        if server is not None:
            server.stop()
    return 0
