"""The `vigil` command line.

Errors Vigil raises on purpose (bad input, bad configuration) print one line and exit 2;
anything else prints one line and exits 1 unless ``--debug`` asks for the traceback.

Each area contributes its own commands (``streams.commands``, ``workers.commands``,
``training.commands``, ``dashboard.commands``, ``api.commands``; the demo and the benches in
:mod:`vigil.commands`); this module assembles them and owns logging and exit codes.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import api.commands
import dashboard.commands
import streams.commands
import training.commands
import vigil.commands
import workers.commands
from models.errors import VigilError
from streams.logs import LogSettings, configure_logging
from streams.settings import load_settings
from vigil.sources import SOURCES

# FFmpeg (inside OpenCV) logs every unreadable file on stderr itself; our one-line errors
# say it better, and stderr stays readable.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vigil", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="tracebacks and debug logs")
    parser.add_argument("--log-format", choices=["auto", "json", "text"],
                        help="log lines as JSON or text (default VIGIL_LOG__FORMAT, else auto: "
                             "JSON for a service whose stderr is not a terminal)")
    sub = parser.add_subparsers(dest="command", required=True)
    # lowest layer first; `vigil camera` gets the simulator as its sim: source
    streams.commands.register(sub, sources=SOURCES)
    workers.commands.register(sub)
    training.commands.register(sub)
    dashboard.commands.register(sub)
    api.commands.register(sub)
    vigil.commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.flags = extra
    try:
        logs = load_settings(LogSettings)
    except VigilError as exc:
        sys.stderr.write(f"vigil: error: {exc}\n")
        return 2
    # Timestamped text, or JSON lines for the services; Alembic, the Kafka clients and Faust
    # (which narrate every connection at INFO) at WARNING.
    configure_logging(args.command, logs.level, args.log_format or logs.format,
                      debug=args.debug)
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
