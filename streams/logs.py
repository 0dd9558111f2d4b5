"""Log lines: structured JSON for the services, readable text for people.

Every line carries its time (ISO 8601, UTC), level, logger and message, and, where the code
that logs knows them, the ``driver`` and the stream position ``where`` (``topic[partition]
@offset``, the form dead letters use). The stream agents set those once per record with
:func:`log_context`; every line logged while that record is handled, in whatever module,
carries them. JSON lines also carry the ``service`` (``worker``, ``aggregator``, ...).

Both formats pass the message and any traceback through :func:`streams.redaction.redact`,
so a URL's password, a token or a signing secret that reaches a log call never reaches the
log. :func:`configure_logging` is what the command line (``vigil.cli``) calls; the format
comes from ``--log-format`` or ``VIGIL_LOG__FORMAT`` (``json``, ``text``, or ``auto``: JSON
for a service whose stderr is not a terminal, text otherwise).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from typing import IO

from pydantic import field_validator
from pydantic_settings import SettingsConfigDict

from streams.redaction import redact
from streams.settings import VigilSettings

# The commands that run as services (under a supervisor, their stderr collected): `auto`
# gives them JSON lines when stderr is not a terminal.
SERVICES = frozenset({"worker", "aggregator", "camera", "dashboard"})
MAX_CONTEXT_CHARS = 160
_CONTEXT: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "vigil_log_context", default=None)


class LogFormat(StrEnum):
    AUTO = "auto"
    JSON = "json"
    TEXT = "text"


class LogSettings(VigilSettings):
    """VIGIL_LOG__FORMAT (auto, json, text), VIGIL_LOG__LEVEL (DEBUG, INFO, WARNING...)."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_LOG__", extra="ignore")

    format: LogFormat = LogFormat.AUTO
    level: str = "INFO"

    @field_validator("level")
    @classmethod
    def _known_level(cls, level: str) -> str:
        level = level.upper()
        if not isinstance(logging.getLevelNamesMapping().get(level), int):
            raise ValueError("not a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL)")
        return level


def _clean(value: object) -> str:
    """A context value safe on one line: non-printable characters escaped, length capped (a
    driver id comes from a record key, which may be anything)."""
    text = str(value)
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text[:MAX_CONTEXT_CHARS]


def stream_position(topic: str, partition: int, offset: int) -> str:
    """``topic[partition]@offset``."""
    return f"{topic}[{partition}]@{offset}"


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Lines logged inside carry ``fields`` (``driver=``, ``where=``; None values are left
    out), in this thread or task only."""
    merged = dict(_CONTEXT.get() or {})
    merged.update({k: _clean(v) for k, v in fields.items() if v is not None})
    token = _CONTEXT.set(merged)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_context() -> Mapping[str, str]:
    return _CONTEXT.get() or {}


def _fields(record: logging.LogRecord) -> dict[str, str]:
    """driver and where: from the record's ``extra`` if given, else the context."""
    out = dict(_CONTEXT.get() or {})
    for key in ("driver", "where"):
        value = record.__dict__.get(key)
        if value is not None:
            out[key] = _clean(value)
    return out


def _timestamp(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, service, message, then driver and
    where when known, and ``exc`` (the redacted traceback) for exceptions."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {
            "timestamp": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "service": self.service,
            "message": redact(record.getMessage()),
        }
        line.update(_fields(record))
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exc"] = redact(record.exc_text)
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``2026-01-31T12:00:00.000Z WARNING streams.app: message [driver=d1 where=t[0]@5]``."""

    def format(self, record: logging.LogRecord) -> str:
        text = (f"{_timestamp(record.created)} {record.levelname} {record.name}: "
                f"{redact(record.getMessage())}")
        fields = _fields(record)
        if fields:
            text += " [" + " ".join(f"{k}={v}" for k, v in sorted(fields.items())) + "]"
        if record.exc_info:
            text += "\n" + redact(self.formatException(record.exc_info))
        return text


def resolve_format(fmt: LogFormat | str, service: str, stream: IO[str]) -> LogFormat:
    """``auto`` -> JSON for a service writing to something other than a terminal, else text."""
    fmt = LogFormat(fmt)
    if fmt is not LogFormat.AUTO:
        return fmt
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return LogFormat.JSON if service in SERVICES and not tty else LogFormat.TEXT


def make_formatter(fmt: LogFormat, service: str) -> logging.Formatter:
    return JsonFormatter(service) if fmt is LogFormat.JSON else TextFormatter()


def configure_logging(service: str, level: int | str = logging.INFO,
                      fmt: LogFormat | str = LogFormat.AUTO, debug: bool = False,
                      stream: IO[str] | None = None) -> LogFormat:
    """Root logging for a `vigil` command -> the format chosen. Like ``basicConfig``, it
    leaves a root logger that already has handlers alone (a test harness's). Faust, mode and
    the Kafka clients log at WARNING unless ``debug`` (the services start Faust without its
    own logging set-up, so these lines keep this format)."""
    stream = stream or sys.stderr
    chosen = resolve_format(fmt, service, stream)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(make_formatter(chosen, service))
    logging.basicConfig(level=logging.DEBUG if debug else level, handlers=[handler])
    quiet = ("alembic", "kafka", "aiokafka") if debug else (
        "alembic", "kafka", "aiokafka", "faust", "mode")
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    return chosen
