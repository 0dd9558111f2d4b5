"""Log lines as the services write them: JSON objects with the fields an operator filters on
(time in UTC, level, logger, service, message, driver, stream position), readable text for a
terminal, and never a secret."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime

import pytest

from streams.logs import (
    JsonFormatter,
    LogFormat,
    LogSettings,
    TextFormatter,
    configure_logging,
    log_context,
    resolve_format,
)
from streams.settings import load_settings

SECRET_URL = "postgresql://fleet:hunter2@db.internal:5432/vigil"
SECRET_HOOK = "https://hooks.example.com/services/T000/B000/XXXXsecretXXXX?token=abc123"
SIGNING = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _logger(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"vigil.test.{id(formatter)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, out


def test_json_lines_carry_time_level_logger_service_message_and_stream_context() -> None:
    logger, out = _logger(JsonFormatter("worker"))
    logger.info("plain line")
    with log_context(driver="drv-ben", where="vigil.frames.v1[3]@1207"):
        logger.warning("frame %d unusable", 12)
    logger.error("alert raised", extra={"driver": "drv-ana"})
    plain, inside, extra = (json.loads(line) for line in out.getvalue().splitlines())

    assert set(plain) == {"timestamp", "level", "logger", "service", "message"}
    assert (plain["level"], plain["service"], plain["message"]) == ("INFO", "worker",
                                                                     "plain line")
    assert plain["logger"] == logger.name
    when = datetime.fromisoformat(plain["timestamp"].replace("Z", "+00:00"))
    assert plain["timestamp"].endswith("Z") and when.utcoffset().total_seconds() == 0
    assert inside["message"] == "frame 12 unusable"
    assert (inside["driver"], inside["where"]) == ("drv-ben", "vigil.frames.v1[3]@1207")
    assert extra["driver"] == "drv-ana" and "where" not in extra  # the context ended


def test_no_secret_reaches_a_log_line_in_either_format() -> None:
    for formatter in (JsonFormatter("aggregator"), TextFormatter()):
        logger, out = _logger(formatter)
        logger.warning("database %s unreachable; webhook %s; secret %s", SECRET_URL,
                       SECRET_HOOK, SIGNING)
        try:
            raise ConnectionError(f"POST {SECRET_HOOK} failed with password=hunter2")
        except ConnectionError:
            logger.exception("delivery failed")
        text = out.getvalue()
        for secret in ("hunter2", "XXXXsecretXXXX", "abc123", SIGNING.removeprefix("whsec_")):
            assert secret not in text, (type(formatter).__name__, text)
        assert "db.internal:5432/vigil" in text and "hooks.example.com" in text


def test_a_traceback_travels_inside_its_json_line() -> None:
    logger, out = _logger(JsonFormatter("aggregator"))
    try:
        {}["missing"]
    except KeyError:
        logger.exception("tick failed")
    (line,) = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == "tick failed"
    assert record["exc"].startswith("Traceback") and "KeyError: 'missing'" in record["exc"]


def test_a_record_key_cannot_forge_log_lines() -> None:
    """A driver id comes from a record's key: a newline in it stays on its own line."""
    logger, out = _logger(TextFormatter())
    with log_context(driver="evil\nCRITICAL vigil: forged"):
        logger.warning("bad record")
    assert len(out.getvalue().splitlines()) == 1
    assert "driver=evil\\nCRITICAL" in out.getvalue()


def test_text_lines_are_timestamped_and_keep_the_level_logger_message_order() -> None:
    logger, out = _logger(TextFormatter())
    with log_context(driver="d1"):
        logger.warning("clip.avi: 10 of 60 declared frames did not decode")
    line = out.getvalue().strip()
    stamp, rest = line.split(" ", 1)
    datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert rest == f"WARNING {logger.name}: clip.avi: 10 of 60 declared frames did not decode " \
                   "[driver=d1]"


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(("fmt", "service", "tty", "chosen"), [
    ("auto", "worker", False, LogFormat.JSON),      # a service under a supervisor
    ("auto", "aggregator", True, LogFormat.TEXT),   # the same in a terminal
    ("auto", "blinks", False, LogFormat.TEXT),      # a one-shot command's warnings are for people
    ("json", "blinks", True, LogFormat.JSON),       # forced
    ("text", "camera", False, LogFormat.TEXT),      # forced
])
def test_the_format_follows_the_setting_and_the_terminal(fmt: str, service: str, tty: bool,
                                                         chosen: LogFormat) -> None:
    assert resolve_format(fmt, service, _Stream(tty)) is chosen


def test_configure_logging_installs_the_chosen_format_on_a_bare_root(
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", logging.WARNING)
    stream = _Stream(tty=False)
    try:
        assert configure_logging("aggregator", "INFO", "auto", stream=stream) is LogFormat.JSON
        logging.getLogger("streams.sinks").info("alert stored")
        logging.getLogger("faust.worker").info("Faust chatter")  # quiet below WARNING
    finally:
        for name in ("faust", "mode"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    (line,) = stream.getvalue().splitlines()
    assert json.loads(line)["message"] == "alert stored"


def test_a_bad_log_setting_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_LOG__FORMAT", "yaml")
    with pytest.raises(Exception, match="VIGIL_LOG__FORMAT"):
        load_settings(LogSettings)
    monkeypatch.setenv("VIGIL_LOG__FORMAT", "json")
    monkeypatch.setenv("VIGIL_LOG__LEVEL", "chatty")
    with pytest.raises(Exception, match="VIGIL_LOG__LEVEL"):
        load_settings(LogSettings)
    monkeypatch.setenv("VIGIL_LOG__LEVEL", "warning")
    assert load_settings(LogSettings).level == "WARNING"
