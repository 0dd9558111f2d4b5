"""The dashboard shows what the pipeline stored and decides nothing itself: importing every
one of its modules (in a fresh interpreter) loads no aggregator, worker or training code and
no PyTorch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("torch", "streams.aggregator", "workers", "training", "models.drowsiness")

PROBE = """
import importlib, json, pkgutil, sys
import dashboard, dashboard.views
names = []
for package in (dashboard, dashboard.views):
    names += [f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]
# dashboard.app is the Streamlit script that runs the pages (it needs a server): its own
# imports (auth, ui) are among the rest.
for name in sorted(set(names) - {"dashboard.app"}):
    importlib.import_module(name)
print(json.dumps({"modules": sorted(names),
                  "loaded": sorted(m for m in sys.modules
                                   if m.split(".")[0] in ("torch", "streams", "workers",
                                                          "training", "models"))}))
"""


def test_the_dashboard_imports_no_aggregator_worker_or_torch() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert "dashboard.queries" in found["modules"] and "dashboard.views.driver" in found["modules"]
    loaded = found["loaded"]
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, f"the dashboard loads {bad}"
    assert "streams.store" in loaded  # the probe did import the dashboard's queries
