"""Starts the dashboard as a ``streamlit run`` subprocess and stops it (for ``vigil demo`` and
the browser tests).

    proc = start_dashboard(8501, {"VIGIL_DATABASE__URL": url})   # returns once it serves
    ...
    streams.processes.stop_child(proc)

or, for a caller that runs its own processes: ``streamlit_command(port)``, then
``wait_healthy("http://127.0.0.1:8501")``.

The server is headless on 127.0.0.1, sends no usage statistics and watches no files. It runs
in its own process group (stopping it stops everything it started) and, on Linux, receives
SIGTERM when the process that started it dies. With an OpenID Connect provider configured
(``VIGIL_DASHBOARD__OIDC__*``), the command points Streamlit at a secrets file written from those
settings (:func:`auth_secrets`). ``vigil dashboard`` runs it in the foreground (:func:`serve`).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from dashboard.admin import first_admin
from dashboard.settings import DashboardEnvironment, DashboardSettings
from models.errors import VigilError
from streams.errors import ConfigurationError
from streams.observability import Health, cached, start_observability
from streams.processes import die_with_parent, start_child, stop_child
from streams.settings import load_settings

if TYPE_CHECKING:
    from streams.store import Store

log = logging.getLogger(__name__)

APP = Path(__file__).resolve().parent / "app.py"


class DashboardError(VigilError):
    """The dashboard server did not start (it exited, or never answered its health check)."""


def auth_secrets(settings: DashboardSettings | None = None) -> Path | None:
    """Streamlit's ``st.login`` reads its OIDC client from the ``[auth]`` table of a secrets
    file: this writes one from the settings, readable by this user only, into a private
    folder that goes when this process exits -> its path (None: no provider configured)."""
    oidc = (settings or load_settings(DashboardSettings)).oidc
    if not oidc.enabled:
        return None
    missing = oidc.missing()
    if missing:
        raise ConfigurationError("OIDC login is half configured: set " + ", ".join(missing))
    table = {
        "redirect_uri": oidc.redirect_uri,
        # Signs the identity cookie; a random one logs everybody out when the server restarts.
        "cookie_secret": oidc.cookie_secret.get_secret_value() or secrets.token_urlsafe(32),
        "client_id": oidc.client_id,
        "client_secret": oidc.client_secret.get_secret_value(),
        "server_metadata_url": oidc.server_metadata_url,
    }
    folder = Path(tempfile.mkdtemp(prefix="vigil-dashboard-auth-"))  # mode 0700
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "secrets.toml"
    # A JSON string is a TOML basic string.
    body = "[auth]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(body)
    return path


def streamlit_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """The ``streamlit run`` command line (writes the OIDC secrets file if configured)."""
    auth = auth_secrets()
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.port", str(port),
        "--server.address", host,
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
        *(["--secrets.files", str(auth)] if auth else []),
    ]  # fmt: skip


def wait_healthy(
    url: str, timeout_s: float = 60.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Waits until the dashboard at ``url`` (e.g. ``http://127.0.0.1:8501``) answers ok on
    ``/_stcore/health``. Raises DashboardError when ``proc`` (if given) exits first or the
    time runs out."""
    health = url.rstrip("/") + "/_stcore/health"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise DashboardError(f"dashboard exited with {proc.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(health, timeout=2) as response:
                if response.status == 200 and response.read().strip() == b"ok":
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise DashboardError(f"dashboard not healthy at {health} after {timeout_s:g} s")


def start_dashboard(
    port: int,
    env: Mapping[str, str] | None = None,
    *,
    host: str = "127.0.0.1",
    timeout_s: float = 60.0,
    log_path: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Runs the dashboard on ``host:port`` with the current environment updated by ``env``
    (e.g. ``VIGIL_DATABASE__URL``); returns the process once ``/_stcore/health`` answers ok.
    Its output goes to ``log_path`` (default: ``$TMPDIR/vigil-dashboard-PORT.log``).
    Raises DashboardError (after stopping it) when it exits or is not healthy in time."""
    log_path = log_path or Path(tempfile.gettempdir()) / f"vigil-dashboard-{port}.log"
    proc = start_child(streamlit_command(port, host), log_path, {**os.environ, **(env or {})})
    try:
        wait_healthy(f"http://{host}:{port}", timeout_s, proc)
    except DashboardError as exc:
        stop_child(proc)
        raise DashboardError(f"{exc}; see {log_path}") from None
    log.info("dashboard on http://%s:%d (log %s)", host, port, log_path)
    return proc


def serve(port: int, host: str = "127.0.0.1") -> int:
    """Runs the dashboard in the foreground until it stops or Ctrl-C -> its exit status. With
    local logins and none yet, first creates the admin (its password is logged once)."""
    from streams.store import Store, StoreNotMigratedError

    env = DashboardEnvironment.load()  # a bad variable stops it here, by name
    with Store.from_settings(env.database) as store:
        try:
            first_admin(store)
        except StoreNotMigratedError as exc:  # the dashboard says how to fix it
            log.warning("%s", exc)
    # Its own session: whatever stops this process (Ctrl-C, SIGTERM, kill -INT) stops Streamlit
    # through stop_child, also where Streamlit would not have got the signal itself.
    proc = subprocess.Popen(streamlit_command(port, host), start_new_session=True,
                            preexec_fn=die_with_parent)
    store = Store.from_settings(env.database)
    server = start_observability(dashboard_health(proc, f"http://{host}:{port}", store),
                                 env.metrics)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        stop_child(proc)
        return 0
    finally:
        if server is not None:
            server.stop()
        store.close()


def dashboard_health(proc: subprocess.Popen[bytes], url: str, store: Store) -> Health:
    """`vigil dashboard`'s checks, served on its side port: alive while the Streamlit server
    runs; ready when it answers its own health check and the database is reachable."""
    health = Health("dashboard")

    def running() -> str | None:
        code = proc.poll()
        return None if code is None else f"streamlit exited with {code}"

    def serving() -> str | None:
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/_stcore/health",
                                        timeout=2) as response:
                if response.status == 200 and response.read().strip() == b"ok":
                    return None
                return f"streamlit health check answered HTTP {response.status}"
        except (urllib.error.URLError, OSError) as exc:
            return f"streamlit not answering: {exc}"

    health.live("streamlit", running)
    health.ready("streamlit", serving)
    health.ready("store", cached(store.db.ping, 5.0))
    return health
