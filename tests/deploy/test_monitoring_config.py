"""deploy/prometheus and deploy/grafana: the scrape configuration and the alert rules pass
Prometheus' own checker, the rules fire (and stay quiet) as their unit tests say, and the
rules, the Grafana dashboard and the README's list name only metrics the services export, and
every one of them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from streams.observability import REGISTRY, CameraCollector

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana" / "vigil.json"
METRIC = re.compile(r"\b(?:vigil|process)_[a-z0-9_]+")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is required (Debian package `prometheus`; scripts/install.sh "
                    "--test installs it)")
    return subprocess.run([binary, *args], cwd=PROMETHEUS, capture_output=True, text=True,
                          timeout=120, check=False)


class _Camera:
    driver_id = vehicle_id = "x"
    buffered_frames = 0
    stats = type("Stats", (), {"frames_captured": 0, "frames_sent": 0, "frames_dropped": 0,
                               "send_failures": 0})()


def exported() -> tuple[set[str], set[str]]:
    """(every series name the services can export, the metric families' names)."""
    families = [*REGISTRY.collect(), *CameraCollector(_Camera()).collect()]
    series: set[str] = set()
    for family in families:
        name = family.name
        if family.type == "counter":
            series.add(f"{name}_total")
        elif family.type == "histogram":
            series |= {name, f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            series.add(name)
    names = {f"{f.name}_total" if f.type == "counter" else f.name for f in families}
    return series, {n for n in names if n.startswith("vigil_")}


def test_the_scrape_config_and_alert_rules_pass_promtool() -> None:
    checked = promtool("check", "config", "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rule files found" in checked.stdout
    rules = promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    alerts = set(re.findall(r"alert: (\w+)", (PROMETHEUS / "alerts.yml").read_text()))
    # What the issue asks to be alerted on: a service down, consumer lag, dead letters, a
    # silent camera, the webhook queue's age.
    assert {"VigilServiceDown", "VigilConsumerLagHigh", "VigilDeadLettersRising",
            "VigilCameraSilent", "VigilWebhookQueueOld"} <= alerts


def test_the_alert_rules_fire_as_their_unit_tests_expect() -> None:
    tested = promtool("test", "rules", "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr


def _exprs(panels: list[dict[str, Any]]) -> list[str]:
    out = []
    for panel in panels:
        out += [t["expr"] for t in panel.get("targets", [])]
        out += _exprs(panel.get("panels", []))
    return out


def test_the_rules_and_the_grafana_dashboard_use_only_exported_metrics() -> None:
    series, _ = exported()
    dashboard = json.loads(GRAFANA.read_text())
    exprs = _exprs(dashboard["panels"])
    assert dashboard["uid"] and len(exprs) >= 20
    rules = (PROMETHEUS / "alerts.yml").read_text()
    used = {m for text in [*exprs, rules] for m in METRIC.findall(text)}
    assert used, "no metric found in the dashboard or the rules"
    unknown = sorted(used - series)
    assert not unknown, f"not exported by any service: {unknown}"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert all(p.get("targets") and p.get("datasource") for p in panels)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_the_readme_lists_every_metric_and_the_dashboard_shows_each() -> None:
    series, families = exported()
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Metrics, health and logs", 1)[1].split("\n## ", 1)[0]
    listed = set(METRIC.findall(section))
    assert not sorted(families - listed), "metrics missing from the README's list"
    assert not sorted({m for m in listed if m.startswith("vigil_")} - series), \
        "the README lists metrics no service exports"
    shown = {m for e in _exprs(json.loads(GRAFANA.read_text())["panels"])
             for m in METRIC.findall(e)}
    stems = {re.sub(r"_(bucket|sum|count)$", "", m) for m in shown}
    assert not sorted(families - stems - shown), \
        "metrics the Grafana dashboard does not show"
