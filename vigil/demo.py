"""`vigil demo`: the whole system on this machine, on the embedded defaults.

The embedded broker, the store (SQLite by default, or ``VIGIL_DATABASE__URL``), the inference
worker, the aggregator with its store and webhook sinks, a local webhook receiver that verifies
each delivery's signature, the dashboard, and simulated drivers (alert, drowsy, distracted)
streaming in real time. It reports how long the drowsy driver's first alert took to reach the
store (what the dashboard shows) and the webhook receiver.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.errors import VigilError
from streams.settings import load_settings
from streams.store import OperatorRole, Store
from streams.store.passwords import generate_password
from streams.store.settings import DatabaseSettings
from streams.webhooks.receiver import BackgroundReceiver
from streams.webhooks.signing import generate_secret
from vigil.local import DEMO_DRIVERS, LocalStack, SimDriver

if TYPE_CHECKING:
    from dashboard.browser import DevTools

log = logging.getLogger(__name__)
WATCHER = "demo-watcher"  # --watch-dashboard's login


@dataclass
class DemoReport:
    """Seconds since the demo started at which things first happened."""

    ready_s: dict[str, float] = field(default_factory=dict)  # dashboard, cameras
    first_alert_stored_s: dict[str, float] = field(default_factory=dict)  # per driver
    first_webhook_s: dict[str, float] = field(default_factory=dict)  # per driver
    # per driver: its card on the fleet page, read by headless Chromium, shows an open alert
    first_on_dashboard_s: dict[str, float] = field(default_factory=dict)
    alerts_stored: int = 0
    webhooks_received: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


class Demo:
    """Runs until ``seconds`` have passed (None: until Ctrl-C). ``say`` receives the lines a
    person watching the terminal reads."""

    def __init__(self, log_dir: Path, *, drivers: Sequence[SimDriver] = DEMO_DRIVERS,
                 fps: float = 10.0, batch: int = 2, dashboard_port: int = 8501,
                 dashboard: bool = True, watch_dashboard: bool = False,
                 bootstrap: str | None = None,
                 say: Callable[[str], None] = log.info, debug: bool = False) -> None:
        self.log_dir, self.drivers, self.fps, self.batch = log_dir, list(drivers), fps, batch
        self.dashboard_port, self.dashboard = dashboard_port, dashboard
        self.watch_dashboard = watch_dashboard and dashboard
        self.bootstrap, self.say, self.debug = bootstrap, say, debug
        self.report = DemoReport()
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        self._names = {d.driver_id: d.name for d in self.drivers}

    def _elapsed(self) -> float:
        return round(time.monotonic() - self._t0, 1)

    def _on_delivery(self, body: dict[str, Any], headers: Mapping[str, str]) -> None:
        """Called by the receiver after the signature verified."""
        driver = str(body.get("driver_id"))
        with self._lock:
            self.report.webhooks_received += 1
            self.report.first_webhook_s.setdefault(driver, self._elapsed())
        self.say(f"[{self._elapsed():6.1f} s] webhook  signature ok  {body.get('severity')}: "
                 f"{body.get('message')} ({self._names.get(driver, driver)})")

    def run(self, seconds: float | None = None) -> DemoReport:
        self._t0 = time.monotonic()
        url = load_settings(DatabaseSettings).url.get_secret_value()
        secret = generate_secret()
        with Store(url) as store, BackgroundReceiver([secret], self._on_delivery) as receiver:
            store.migrate()
            now = time.time()
            for d in self.drivers:
                store.series.touch_driver(d.driver_id, d.vehicle_id, now, name=d.name)
            if self.dashboard:
                from dashboard.launch import first_admin

                first_admin(store)  # on a new database: logs the admin's password once
            endpoints = [{"name": "demo-receiver", "url": receiver.url, "secrets": [secret]}]
            env = {"VIGIL_DATABASE__URL": url,
                   "VIGIL_WEBHOOKS__ENDPOINTS": json.dumps(endpoints)}
            with LocalStack(self.log_dir, env, self.bootstrap, self.debug) as stack:
                stack.start_pipeline()
                dashboard_url = self._start_dashboard(stack) if self.dashboard else None
                self.say(f"Kafka       {stack.bootstrap}")
                self.say(f"database    {store.where}")
                self.say(f"webhooks    {receiver.url} (local receiver, verifies signatures)")
                if dashboard_url:
                    self.say(f"dashboard   {dashboard_url}")
                self.say(f"logs        {self.log_dir}")
                for d in self.drivers:
                    stack.start_camera(d, self.fps, self.batch)
                    self.say(f"camera      {d.name} ({d.driver_id}, {d.vehicle_id}): "
                             f"simulated {d.profile} driver at {self.fps:g} fps")
                self.report.ready_s["cameras"] = self._elapsed()
                self.say("Ctrl-C stops everything.")
                with contextlib.ExitStack() as browser:
                    page = None
                    if dashboard_url and self.watch_dashboard:
                        from dashboard.browser import chromium

                        page = browser.enter_context(chromium(self.log_dir))
                        page.open(dashboard_url + "/")
                        page.login(*self._watcher(store, browser))
                    self._watch(stack, store, seconds, page)
        return self.report

    def _start_dashboard(self, stack: LocalStack) -> str:
        from dashboard.launch import streamlit_command, wait_healthy

        stack.spawn("dashboard", streamlit_command(self.dashboard_port))
        url = f"http://127.0.0.1:{self.dashboard_port}"
        wait_healthy(url)
        self.report.ready_s["dashboard"] = self._elapsed()
        return url

    def _watcher(self, store: Store, cleanup: contextlib.ExitStack) -> tuple[str, str]:
        """A viewer login for the headless browser, removed when the demo ends."""
        password = generate_password()
        store.operators.set(WATCHER, OperatorRole.VIEWER, password)
        cleanup.callback(store.operators.remove, WATCHER)
        return WATCHER, password

    def _watch(self, stack: LocalStack, store: Store, seconds: float | None,
               page: DevTools | None) -> None:
        seen: set[str] = set()
        while seconds is None or time.monotonic() - self._t0 < seconds:
            if page is not None:
                self._read_fleet_page(page.text())
            failed = stack.failed_children()
            if failed:
                raise VigilError("a demo process stopped:\n" + "\n".join(failed))
            for alert in reversed(store.alerts.find(since=time.time() - 3600, limit=50)):
                if alert.alert_id in seen:
                    continue
                seen.add(alert.alert_id)
                self.report.alerts_stored += 1
                self.report.first_alert_stored_s.setdefault(alert.driver_id, self._elapsed())
                self.say(f"[{self._elapsed():6.1f} s] alert    {alert.severity.value}: "
                         f"{alert.message} ({self._names.get(alert.driver_id, alert.driver_id)})")
            time.sleep(1.0)

    def _read_fleet_page(self, text: str) -> None:
        """Notes when each driver's card first shows an open alert (a card runs from the
        driver's name to its "Details" link)."""
        for driver_id, name in self._names.items():
            start = text.find(name)
            card = text[start:text.find("Details", start)] if start >= 0 else ""
            shows = "open alert" in card and "No open alerts" not in card
            if shows and driver_id not in self.report.first_on_dashboard_s:
                self.report.first_on_dashboard_s[driver_id] = self._elapsed()
                self.say(f"[{self._elapsed():6.1f} s] dashboard shows {name}'s open alert")
