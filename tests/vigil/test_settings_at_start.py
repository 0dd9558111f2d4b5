"""Each deployable loads all of its settings when it starts: one bad variable stops it at
once, with the variable's name and what is wrong, and never with its value (a database URL or
webhook endpoint carries secrets)."""

from __future__ import annotations

import pytest

from vigil.cli import main

SECRET = "s3cret-t0ken"


@pytest.mark.parametrize(("command", "variable", "value"), [
    (["aggregator"], "VIGIL_CLIPS__RETENTION_DAYS", f"seven-{SECRET}"),
    (["aggregator"], "VIGIL_WEBHOOKS__ENDPOINTS", f'[{{"name": "ops", "url": "{SECRET}"'),
    (["aggregator"], "VIGIL_DATABASE__URL", f"::{SECRET}"),
    (["worker"], "VIGIL_WORKER__INFERENCE_THREADS", f"many-{SECRET}"),
    (["worker"], "VIGIL_CLIPS__BLUR_FACES", f"perhaps-{SECRET}"),
    (["dashboard", "--port", "1"], "VIGIL_DASHBOARD__LOCKOUT_S", f"-{SECRET}"),
    (["camera", "--source", "sim:alert:1", "--driver", "d", "--vehicle", "v"],
     "VIGIL_CAMERA__JPEG_QUALITY", f"best-{SECRET}"),
    (["camera", "--source", "sim:alert:1", "--driver", "d", "--vehicle", "v"],
     "VIGIL_METRICS__PORT", f"port-{SECRET}"),
    (["worker"], "VIGIL_METRICS__ENABLED", f"maybe-{SECRET}"),
    (["aggregator"], "VIGIL_METRICS__PORT", "70000"),
    (["dashboard", "--port", "1"], "VIGIL_METRICS__STALL_S", f"-{SECRET}"),
    (["worker"], "VIGIL_LOG__FORMAT", f"xml-{SECRET}"),
])
def test_a_bad_setting_stops_the_deployable_at_start_by_name(
    command: list[str], variable: str, value: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(variable, value)
    assert main([*command, "--bootstrap", "127.0.0.1:9"] if command[0] != "dashboard"
                else command) == 2
    err = capsys.readouterr().err
    section = variable.split("__")[0]
    assert "vigil: error: bad setting" in err and section in err, err
    assert SECRET not in err
