"""deploy/: the image (Dockerfile, its ignore file, entry point and health check), the compose
file and its Prometheus configuration, and the Helm chart, checked against what the services
really do: their roles, default ports, health endpoints and secret settings.

Nothing here builds or runs an image or needs a cluster. The entry point runs for real, outside
a container, with the venv's `vigil` on PATH (the read API against the test PostgreSQL, and
the migration). The chart's values are checked against its schema and its templates against
its values with Python alone; the rendered manifests are checked only where `helm` is on PATH
(or $HELM names it): the one check skipped without its tool (deploy/README.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import typing
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml
from stream_helpers import http_get

from streams.observability import DEFAULT_PORTS
from streams.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "vigil"
ENTRYPOINT = DEPLOY / "entrypoint.sh"
VENV_BIN = Path(sys.executable).parent
VIGIL_IMAGE_ROLES_USING_DB = {"worker", "aggregator", "dashboard", "api", "migrate"}
KAFKA_ROLES = {"worker", "aggregator", "dashboard", "camera"}


# --- what the services really are ------------------------------------------------------------

def secret_env_names() -> tuple[set[str], set[str]]:
    """Every environment variable that sets a SecretStr setting (or a value holding one), and
    the variables of the former naming scheme that still set one (README "Settings")."""
    from pydantic import BaseModel, SecretStr

    from api.settings import ApiSettings
    from dashboard.settings import DashboardSettings
    from streams.event_clips import ClipSettings
    from streams.logs import LogSettings
    from streams.observability import MetricsSettings
    from streams.settings import StreamSettings
    from streams.store import DatabaseSettings
    from streams.webhooks.settings import WebhookSettings
    from workers.settings import PerceptionSettings, ServingSettings, WorkerSettings

    def holds_secret(tp: Any) -> bool:
        if tp is SecretStr:
            return True
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return any(holds_secret(f.annotation) for f in tp.model_fields.values())
        return any(holds_secret(a) for a in typing.get_args(tp))

    def walk(model: type[BaseModel], prefix: str) -> Iterator[str]:
        for name, field in model.model_fields.items():
            tp, env = field.annotation, prefix + name.upper()
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                yield from walk(tp, env + "__")
            elif holds_secret(tp):
                yield env

    names: set[str] = set()
    former: set[str] = set()
    for cls in (DatabaseSettings, StreamSettings, WebhookSettings, DashboardSettings,
                ApiSettings, WorkerSettings, ServingSettings, PerceptionSettings, ClipSettings,
                MetricsSettings, LogSettings):
        prefix = str(cls.model_config["env_prefix"])
        found = set(walk(cls, prefix))
        names |= found
        former |= {old for old, field in cls.former_env_names.items()
                   if prefix + field.upper() in found}
    return names, former


SECRETS, FORMER_SECRET_NAMES = secret_env_names()


def test_the_secret_settings_are_found() -> None:
    # what README "Settings" calls secrets; the checks below rely on this list being whole
    assert {"VIGIL_DATABASE__URL", "VIGIL_KAFKA__SASL_PASSWORD", "VIGIL_WEBHOOKS__ENDPOINTS",
            "VIGIL_DASHBOARD__ADMIN_PASSWORD", "VIGIL_DASHBOARD__OIDC__CLIENT_SECRET",
            "VIGIL_DASHBOARD__OIDC__COOKIE_SECRET"} <= SECRETS
    assert {"VIGIL_DATABASE_URL", "VIGIL_ADMIN_PASSWORD"} <= FORMER_SECRET_NAMES


def api_port() -> int:
    from api.settings import ApiSettings

    return int(ApiSettings.model_fields["port"].default)


def dashboard_port() -> int:
    from vigil.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return int(sub.choices["dashboard"].get_default("port"))


def entrypoint_roles() -> list[str]:
    match = re.search(r'^ROLES="([^"]+)"', ENTRYPOINT.read_text(), re.M)
    assert match, "deploy/entrypoint.sh lists its roles in ROLES=\"...\""
    return match.group(1).split()


def load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vigil_healthcheck", DEPLOY / "healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def yaml_file(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# --- compose -------------------------------------------------------------------------------

COMPOSE = DEPLOY / "compose.yaml"
VIGIL_IMAGE = "${VIGIL_IMAGE:-vigil:latest}"
CUDA_IMAGE = "${VIGIL_CUDA_IMAGE:-vigil:cuda}"


def compose() -> dict[str, Any]:
    return yaml_file(COMPOSE)  # PyYAML resolves the anchors and merge keys as compose does


def vigil_services() -> dict[str, dict[str, Any]]:
    """The services built from deploy/Dockerfile: the image of the variant they build."""
    out = {}
    for name, service in compose()["services"].items():
        build = service.get("build") or {}
        if build.get("dockerfile") == "deploy/Dockerfile":
            variant = build["args"]["VARIANT"]
            assert service["image"] == (VIGIL_IMAGE if variant == "cpu" else CUDA_IMAGE), name
            out[name] = service
    return out


def role(service: dict[str, Any]) -> str:
    return str(service["command"][0])


def test_compose_runs_every_part_from_the_one_image_with_a_known_role() -> None:
    services = compose()["services"]
    assert {"kafka", "postgres", "migrate", "worker", "aggregator", "dashboard", "api",
            "prometheus"} <= set(services)
    vigil = vigil_services()
    roles = entrypoint_roles()
    assert {role(s) for s in vigil.values()} >= {"migrate", "worker", "aggregator", "dashboard",
                                                  "api"}
    for name, service in vigil.items():
        assert role(service) in roles, f"{name}: unknown role {role(service)}"
        assert (COMPOSE.parent / service["build"]["context"]).resolve() == ROOT
    gpu = services["worker-gpu"]
    assert role(gpu) == "worker" and gpu["build"]["args"]["VARIANT"] == "cuda"
    assert gpu["environment"]["VIGIL_SERVING__DEVICE"] == "cuda"
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    others = set(services) - set(vigil)
    assert others == {"kafka", "postgres", "prometheus"}, f"not the Vigil image: {others}"


def test_compose_kafka_is_a_single_kraft_node_the_services_reach() -> None:
    services = compose()["services"]
    kafka = services["kafka"]
    assert kafka["image"].split(":-", 1)[-1].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not [k for k in env if "ZOOKEEPER" in k]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert len(env["CLUSTER_ID"]) == 22  # a UUID in base64url, as `kafka-storage format` wants
    advertised = {a.split("://", 1)[1] for a in env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    for name, service in vigil_services().items():
        if role(service) in KAFKA_ROLES:
            assert service["environment"]["VIGIL_KAFKA__BOOTSTRAP_SERVERS"] in advertised, name


def test_compose_starts_services_after_their_dependencies_are_healthy() -> None:
    services = compose()["services"]
    for name in ("kafka", "postgres", "prometheus"):
        assert services[name]["healthcheck"]["test"], f"{name} has no healthcheck"
    for name, service in vigil_services().items():
        deps = service.get("depends_on", {})
        if role(service) == "migrate":
            assert deps["postgres"]["condition"] == "service_healthy"
            assert service["restart"] == "no"
            continue
        if role(service) in KAFKA_ROLES:
            assert deps["kafka"]["condition"] == "service_healthy", name
        if role(service) in VIGIL_IMAGE_ROLES_USING_DB:
            assert deps["migrate"]["condition"] == "service_completed_successfully", name


def test_compose_scales_workers_and_runs_two_aggregators() -> None:
    services = compose()["services"]
    worker, aggregator = services["worker"], services["aggregator"]
    for service in (worker, aggregator):
        assert "container_name" not in service  # names would stop --scale
        assert not service.get("ports"), "a fixed host port would stop --scale"
    assert re.fullmatch(r"\$\{VIGIL_WORKERS:-\d+\}", str(worker["deploy"]["replicas"]))
    replicas = re.fullmatch(r"\$\{VIGIL_AGGREGATORS:-(\d+)\}",
                            str(aggregator["deploy"]["replicas"]))
    assert replicas and int(replicas.group(1)) >= 2


def test_compose_takes_every_secret_from_a_secret_file() -> None:
    data = compose()
    top = data["secrets"]
    for name, service in data["services"].items():
        env = service.get("environment") or {}
        literal = sorted((SECRETS | FORMER_SECRET_NAMES | {"POSTGRES_PASSWORD"}) & set(env))
        assert not literal, f"{name} sets {literal} in the file: use VAR_FILE and a secret"
        mounted = set(service.get("secrets", []))
        for key, value in env.items():
            if key.endswith("_FILE"):
                secret = str(value).removeprefix("/run/secrets/")
                assert str(value) == f"/run/secrets/{secret}" and secret in mounted, \
                    f"{name}: {key} names {value}, not one of its secrets {sorted(mounted)}"
        for secret in mounted:
            assert top[secret]["file"].startswith("./secrets/"), secret
    for name, service in vigil_services().items():
        if role(service) in VIGIL_IMAGE_ROLES_USING_DB:
            assert service["environment"]["VIGIL_DATABASE__URL_FILE"] == \
                "/run/secrets/database_url", name
    assert data["services"]["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"]
    text = COMPOSE.read_text()
    assert not re.search(r"://[^/\s:@]+:[^@\s/]+@", text), "credentials in a URL"
    assert "whsec_" not in text
    rules = [line for line in (DEPLOY / "secrets" / ".gitignore").read_text().splitlines()
             if line and not line.startswith("#")]
    assert rules == ["*", "!.gitignore"], "deploy/secrets/ must be git-ignored, whole"


def test_compose_ports_are_the_services_defaults_and_listen_beyond_the_container() -> None:
    services = compose()["services"]
    assert f"{dashboard_port()}:{dashboard_port()}" in services["dashboard"]["ports"]
    assert f"{api_port()}:{api_port()}" in services["api"]["ports"]
    assert role(services["dashboard"]) == "dashboard" and role(services["api"]) == "api"
    for name, service in vigil_services().items():
        if role(service) != "migrate":
            assert service["environment"]["VIGIL_METRICS__HOST"] == "0.0.0.0", name


def test_compose_prometheus_scrapes_every_replica_at_the_default_ports() -> None:
    services = compose()["services"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["prometheus"]["volumes"]
              if v.startswith("./")}
    assert mounts["/etc/prometheus/prometheus.yml"] == "./prometheus/prometheus.compose.yml"
    assert mounts["/etc/prometheus/alerts.yml"] == "./prometheus/alerts.yml"
    config = yaml_file(DEPLOY / "prometheus" / "prometheus.compose.yml")
    plain = yaml_file(DEPLOY / "prometheus" / "prometheus.yml")
    assert config["rule_files"] == plain["rule_files"] == ["alerts.yml"]
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    # the same jobs as the single-machine config: the alert rules select on them
    assert set(jobs) == {j["job_name"] for j in plain["scrape_configs"]}
    by_role: dict[str, list[str]] = {}
    for name, service in vigil_services().items():
        by_role.setdefault(role(service), []).append(name)
    ports = {**DEFAULT_PORTS, "api": api_port()}  # the API's /metrics is on its own port
    assert "vigil-api" in jobs
    for job_name, job in jobs.items():
        service_role = job_name.removeprefix("vigil-")
        (sd,) = job["dns_sd_configs"]
        assert sd["port"] == ports[service_role], job_name
        assert sorted(sd["names"]) == sorted(by_role[service_role]), job_name
    for job in plain["scrape_configs"]:
        (target,) = job["static_configs"][0]["targets"]
        assert int(target.rsplit(":", 1)[1]) == ports[job["job_name"][len("vigil-"):]]


def test_the_compose_prometheus_config_passes_promtool() -> None:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is required (Debian package `prometheus`; scripts/install.sh "
                    "--test installs it)")
    checked = subprocess.run([binary, "check", "config", "prometheus.compose.yml"],
                             cwd=DEPLOY / "prometheus", capture_output=True, text=True,
                             timeout=120, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rule files found" in checked.stdout


def test_make_secrets_writes_what_compose_mounts_and_keeps_existing_files(
        tmp_path: Path) -> None:
    from pydantic import SecretStr

    from streams.store import DatabaseSettings

    target = tmp_path / "secrets"
    run = subprocess.run(["bash", str(DEPLOY / "make-secrets.sh"), str(target)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    written = {p.name for p in target.iterdir()}
    assert written == {Path(s["file"]).name for s in compose()["secrets"].values()}
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    password = (target / "postgres_password").read_text().strip()
    assert len(password) >= 32
    url = (target / "database_url").read_text().strip()
    assert url == f"postgresql+psycopg://vigil:{password}@postgres:5432/vigil"
    DatabaseSettings(url=SecretStr(url))  # a URL the store accepts
    assert json.loads((target / "webhook_endpoints").read_text()) == []
    assert password not in run.stdout + run.stderr
    (target / "webhook_endpoints").write_text('[{"edited": true}]\n')
    again = subprocess.run(["bash", str(DEPLOY / "make-secrets.sh"), str(target)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0 and "kept" in again.stdout
    assert (target / "postgres_password").read_text().strip() == password
    assert "edited" in (target / "webhook_endpoints").read_text()


# --- the entry point and the health check ------------------------------------------------------

def entry_env(**extra: str) -> dict[str, str]:
    """This process's environment without any Vigil setting, the venv's `vigil` first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def entrypoint(*args: str, env: dict[str, str],
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ENTRYPOINT), *args], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_the_entrypoint_refuses_an_unknown_role_clearly() -> None:
    assert (VENV_BIN / "vigil").is_file()
    for args in (["frobnicate"], ["--bogus"], []):
        done = entrypoint(*args, env=entry_env())
        assert done.returncode == 2, done
        assert done.stdout == ""
        assert "vigil: error:" in done.stderr
        for r in ("worker", "aggregator", "camera", "dashboard", "api", "migrate", "shell"):
            assert r in done.stderr
    assert "unknown role 'frobnicate'" in entrypoint("frobnicate", env=entry_env()).stderr
    assert "no role given" in entrypoint(env=entry_env()).stderr


def test_the_entrypoint_listens_beyond_the_container_unless_told_otherwise() -> None:
    show = 'printf "%s|%s" "$VIGIL_METRICS__HOST" "${VIGIL_API__HOST-unset}"'
    assert entrypoint("shell", "-c", show, env=entry_env()).stdout == "0.0.0.0|unset"
    chosen = entrypoint("shell", "-c", show, env=entry_env(VIGIL_METRICS__HOST="10.1.2.3"))
    assert chosen.stdout == "10.1.2.3|unset"


def test_the_entrypoint_reads_secrets_from_files_and_never_prints_them(tmp_path: Path) -> None:
    secret = "postgresql+psycopg://vigil:s3cr3t-Pa55@db:5432/vigil"
    file = tmp_path / "database_url"
    file.write_text(secret + "\n")
    show = 'printf "%s|%s" "$VIGIL_DATABASE__URL" "${VIGIL_DATABASE__URL_FILE-unset}"'
    done = entrypoint("shell", "-c", show, env=entry_env(VIGIL_DATABASE__URL_FILE=str(file)))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{secret}|unset"  # the trailing newline dropped, the _FILE gone
    both = entrypoint("shell", "-c", "true", env=entry_env(
        VIGIL_DATABASE__URL_FILE=str(file), VIGIL_DATABASE__URL="other"))
    assert both.returncode == 2
    assert "VIGIL_DATABASE__URL and VIGIL_DATABASE__URL_FILE" in both.stderr
    missing = entrypoint("shell", "-c", "true", env=entry_env(
        VIGIL_KAFKA__SASL_PASSWORD_FILE=str(tmp_path / "absent")))
    assert missing.returncode == 2 and "VIGIL_KAFKA__SASL_PASSWORD_FILE" in missing.stderr
    for run in (done, both, missing):
        assert "s3cr3t" not in run.stderr


def test_the_entrypoint_migrates_the_database(pg_schema_url: str) -> None:
    env = entry_env(VIGIL_DATABASE__URL=pg_schema_url, VIGIL_LOG__FORMAT="text")
    before = entrypoint("vigil", "db", "status", env=env)
    assert before.returncode == 2, before  # read-only: says the schema is missing
    migrated = entrypoint("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    after = entrypoint("vigil", "db", "status", env=env)
    assert after.returncode == 0, after.stderr


def test_the_entrypoint_runs_the_read_api_until_sigterm(pg_schema_url: str,
                                                        tmp_path: Path) -> None:
    """`api` as a container runs it: the secret from a file, 0.0.0.0, the process exec'd (so
    SIGTERM reaches uvicorn and it stops cleanly), and the image's health check agreeing."""
    port = free_port("0.0.0.0")
    # the test server trusts its clients: the password is never checked, only never shown
    url = pg_schema_url.replace("://postgres@", "://postgres:s3cr3t-Pa55@", 1)
    assert "s3cr3t-Pa55" in url
    (tmp_path / "database_url").write_text(url + "\n")
    env = entry_env(VIGIL_DATABASE__URL_FILE=str(tmp_path / "database_url"),
                    VIGIL_API__PORT=str(port), VIGIL_LOG__FORMAT="text")
    log = tmp_path / "api.log"
    healthcheck = [sys.executable, str(DEPLOY / "healthcheck.py")]
    with log.open("w") as sink:
        proc = subprocess.Popen(["bash", str(ENTRYPOINT), "api"], env=env, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180  # a bound for a hung start, not a timing check
        while True:
            assert proc.poll() is None, f"vigil api exited {proc.returncode}:\n{log.read_text()}"
            status, body = http_get(f"http://127.0.0.1:{port}/healthz")
            if status == 200:
                break
            assert time.monotonic() < deadline, f"/healthz never answered:\n{log.read_text()}"
            time.sleep(0.5)
        assert json.loads(body)["status"] == "ok"
        status, body = http_get(f"http://127.0.0.1:{port}/readyz")
        assert status == 200 and json.loads(body)["status"] == "ready", body
        argv = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert Path(argv[1].decode()).name == "vigil" and b"api" in argv, argv  # exec'd
        assert f"http://0.0.0.0:{port}" in log.read_text()
        checked = subprocess.run([*healthcheck, str(proc.pid)], capture_output=True,
                                 text=True, timeout=60, check=False)
        assert checked.returncode == 0, checked.stdout
        assert f"http://127.0.0.1:{port}/healthz 200" in checked.stdout
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal: 143 for `docker stop`
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM), log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    text = log.read_text()
    assert "Application shutdown complete" in text and "Finished server process" in text
    assert "s3cr3t-Pa55" not in text  # the URL is a secret
    gone = subprocess.run([*healthcheck, str(proc.pid)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert gone.returncode == 1, gone.stdout


def test_the_healthcheck_probes_each_role_where_it_serves() -> None:
    hc = load_healthcheck()
    assert hc.METRICS_PORTS == DEFAULT_PORTS
    assert api_port() == hc.API_PORT
    venv = ["/app/.venv/bin/python3.11", "/app/.venv/bin/vigil"]
    assert hc.vigil_command([*venv, "--log-format", "json", "worker", "--drivers", "a"]) == \
        ("worker", ["--drivers", "a"])
    assert hc.vigil_command(["python", "-m", "vigil", "--debug", "api"]) == ("api", [])
    assert hc.vigil_command(["python", "-m", "streamlit", "run", "dashboard/app.py"]) is None
    assert hc.vigil_command(["/app/.venv/bin/python", "/app/deploy/healthcheck.py"]) is None
    for service, port in DEFAULT_PORTS.items():
        assert hc.probe_url(service, [], {"VIGIL_METRICS__HOST": "0.0.0.0"}) == \
            f"http://127.0.0.1:{port}/livez"
    assert hc.probe_url("worker", [], {"VIGIL_METRICS__PORT": "9200"}) == \
        "http://127.0.0.1:9200/livez"
    assert hc.probe_url("worker", [], {"VIGIL_METRICS__ENABLED": "false"}) is None
    assert hc.probe_url("aggregator", [], {"VIGIL_METRICS__PORT": "0"}) is None
    assert hc.probe_url("api", ["--port", "9000"], {"VIGIL_API__PORT": "8700"}) == \
        "http://127.0.0.1:9000/healthz"
    assert hc.probe_url("api", [], {"VIGIL_API__HOST": "0.0.0.0"}) == \
        f"http://127.0.0.1:{api_port()}/healthz"
    assert hc.probe_url("db", ["migrate"], {}) is None


# --- the Dockerfile ----------------------------------------------------------------------------

DOCKERFILE = DEPLOY / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(
        line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")))
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> dict[str, list[tuple[str, str]]]:
    named: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for word, rest in instructions():
        if word == "FROM":
            current = [(word, rest)]
            named[rest.split(" AS ")[-1].strip() if " AS " in rest else rest] = current
        elif current:
            current.append((word, rest))
    return named


def test_the_dockerfile_builds_cpu_by_default_and_cuda_on_request() -> None:
    args: dict[str, str] = {}  # the ARGs with a default: the global ones and the builder's
    for word, rest in instructions():
        if word == "ARG" and "=" in rest:
            args.setdefault(*rest.split("=", 1))
    assert args["VARIANT"] == "cpu"
    named = stages()
    assert {"base-cpu", "base-cuda", "base", "builder", "runtime"} <= set(named)
    assert named["base"][0][1] == "base-${VARIANT} AS base"
    assert named["base-cuda"][0][1].startswith("${CUDA_IMAGE}")
    assert "runtime" in args["CUDA_IMAGE"] and args["CUDA_IMAGE"].startswith("nvidia/cuda:")
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    # the torch the repository pins, the CPU or the CUDA build of it, checked in the build
    pin = re.search(r'"torch==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert pin and args["TORCH_VERSION"] == pin.group(1)
    builder = " ".join(rest for _, rest in named["builder"])
    assert "whl/$([ \"$VARIANT\" = cuda ] && echo cu128 || echo cpu)" in builder
    assert "torch.version.cuda" in builder and "scripts/install.sh" in builder
    assert named["runtime"][0][1] == "base AS runtime"
    assert list(named)[-1] == "runtime", "the last stage is the image"


def test_the_image_runs_unprivileged_with_a_healthcheck_and_the_entrypoint() -> None:
    runtime = stages()["runtime"]
    users = [rest for word, rest in runtime if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    uid = users[-1].split(":")[0]
    created = " ".join(rest for word, rest in runtime if word == "RUN")
    assert f"--uid {uid}" in created and "--home-dir /home/vigil" in created
    # Faust keeps its tables' directory under the working directory: it must be writable
    workdirs = [rest for word, rest in runtime if word == "WORKDIR"]
    assert workdirs[-1] == "/home/vigil"
    (health,) = [rest for word, rest in runtime if word == "HEALTHCHECK"]
    assert "deploy/healthcheck.py" in health and "--start-period=5m" in health
    (entry,) = [rest for word, rest in runtime if word == "ENTRYPOINT"]
    assert json.loads(entry) == ["/app/deploy/entrypoint.sh"]
    exposed = {int(p) for word, rest in runtime if word == "EXPOSE" for p in rest.split()}
    assert exposed == {dashboard_port(), api_port(), *DEFAULT_PORTS.values()}
    assert os.access(ENTRYPOINT, os.X_OK) and os.access(DEPLOY / "make-secrets.sh", os.X_OK)


def test_the_dockerignore_lets_in_exactly_what_the_dockerfile_copies() -> None:
    ignore = [line.strip() for line in (DEPLOY / "Dockerfile.dockerignore").read_text()
              .splitlines() if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*", "everything is left out first"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied: set[str] = set()
    for word, rest in instructions():
        if word == "COPY" and "--from=" not in rest:
            parts = [p for p in rest.split() if not p.startswith("--")]
            copied |= {p.rstrip("/") for p in parts[:-1]}
    assert copied == allowed
    include = re.search(r"include = \[([^\]]+)\]", (ROOT / "pyproject.toml").read_text())
    assert include
    packages = {p.strip().strip('"').split(".")[0].rstrip("*")
                for p in include.group(1).replace("\n", " ").split(",") if p.strip()}
    assert packages <= copied, f"packages not in the image: {packages - copied}"


# --- the Helm chart ----------------------------------------------------------------------------

def chart_values() -> dict[str, Any]:
    return yaml_file(CHART / "values.yaml")


def schema() -> dict[str, Any]:
    return json.loads((CHART / "values.schema.json").read_text())


def schema_errors(values: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema())
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(values)]


def test_the_chart_values_pass_its_schema() -> None:
    jsonschema.Draft7Validator.check_schema(schema())
    assert schema_errors(chart_values()) == []
    chart = yaml_file(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2" and chart["name"] == "vigil"


def test_the_chart_schema_refuses_secrets_in_values_and_single_aggregators() -> None:
    def changed(path: str, value: Any) -> dict[str, Any]:
        values = chart_values()
        *parents, leaf = path.split(".")
        node = values
        for p in parents:
            node = node[p]
        node[leaf] = value
        return values

    for section in ("env", "worker.env", "gpuWorker.env", "aggregator.env", "dashboard.env",
                    "api.env"):
        for name in sorted(SECRETS | FORMER_SECRET_NAMES):
            assert schema_errors(changed(section, {name: "literal"})), (section, name)
        assert schema_errors(changed(section, {"VIGIL_DATABASE__URL_FILE": "/x"}))
        assert not schema_errors(changed(section, {"VIGIL_SERVING__MAX_BATCH": 32}))
    assert schema_errors(changed("secrets.existingSecret", ""))
    assert schema_errors(changed("aggregator.replicas", 1))
    assert schema_errors(changed("databaseUrl", "postgresql://u:p@h/db"))  # unknown key
    assert schema_errors(changed("worker.keda.trigger", "cpu"))
    gpu = changed("gpuWorker.resources", {"requests": {}, "limits": {"cpu": "1"}})
    assert schema_errors(gpu), "a GPU worker must ask for nvidia.com/gpu"
    assert chart_values()["aggregator"]["replicas"] >= 2


def template_texts() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((CHART / "templates").iterdir())}


def test_the_chart_templates_use_only_values_that_exist() -> None:
    values = chart_values()
    used = {m for text in template_texts().values()
            for m in re.findall(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", text)}
    assert len(used) > 30  # the pattern finds them
    missing = []
    for path in sorted(used):
        node: Any = values
        for key in path.strip(".").split("."):
            if not isinstance(node, dict) or key not in node:
                missing.append(path)
                break
            node = node[key]
    assert not missing, f"templates use values that values.yaml lacks: {missing}"


def test_the_chart_templates_take_secrets_only_from_the_secret() -> None:
    texts = template_texts()
    joined = "\n".join(texts.values())
    lines = joined.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"\s*- name: (VIGIL_[A-Z0-9_]+)\s*$", line)
        if match and match.group(1) in SECRETS:
            assert lines[i + 1].strip() == "valueFrom:", f"{match.group(1)}: {lines[i + 1]}"
            assert lines[i + 2].strip() == "secretKeyRef:"
    assert "kind: Secret\n" not in joined, "the chart creates no Secret: it reads an existing one"
    helpers = texts["_helpers.tpl"]
    for name in SECRETS:
        assert f"- name: {name}\n" in helpers, f"{name} is not wired from the Secret"


def test_the_chart_probes_the_endpoints_each_service_serves() -> None:
    texts = template_texts()
    worker, aggregator = texts["_worker.tpl"], texts["aggregator-deployment.yaml"]
    dashboard, api = texts["dashboard-deployment.yaml"], texts["api-deployment.yaml"]
    assert f"containerPort: {DEFAULT_PORTS['worker']}" in worker
    assert f"containerPort: {DEFAULT_PORTS['aggregator']}" in aggregator
    assert f"containerPort: {DEFAULT_PORTS['dashboard']}" in dashboard
    assert f"containerPort: {dashboard_port()}" in dashboard
    assert f"containerPort: {api_port()}" in api
    for text in (worker, aggregator, dashboard):
        assert '"port" "metrics" "live" "/livez" "ready" "/readyz"' in text
    assert '"port" "http" "live" "/healthz" "ready" "/readyz"' in api
    for service, port in DEFAULT_PORTS.items():
        if service != "camera":
            assert f'"{service}" {port}' in texts["_helpers.tpl"]


# --- the Helm chart rendered (only where helm is installed) -------------------------------------

HELM = os.environ.get("HELM") or shutil.which("helm")
needs_helm = pytest.mark.skipif(HELM is None, reason="helm is not installed (deploy/README.md)")
FULL = ["--set", "kafka.bootstrapServers=kafka:9092", "--set", "gpuWorker.enabled=true",
        "--set", "metrics.serviceMonitor.enabled=true", "--set", "worker.keda.enabled=true",
        "--set", "secrets.keys.kafkaSaslPassword=kafka-password",
        "--set", "kafka.securityProtocol=SASL_SSL", "--set", "kafka.saslMechanism=SCRAM-SHA-512",
        "--set", "kafka.saslUsername=vigil", "--set", "clips.existingClaim=vigil-clips"]


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    assert HELM
    return subprocess.run([HELM, *args], capture_output=True, text=True, timeout=120,
                          check=False)


def rendered(*args: str) -> list[dict[str, Any]]:
    done = helm("template", "rel", str(CHART), *args)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@needs_helm
def test_helm_lints_the_chart_and_refuses_what_its_checks_refuse() -> None:
    linted = helm("lint", "--strict", str(CHART), "--set", "kafka.bootstrapServers=k:9092")
    assert linted.returncode == 0, linted.stdout + linted.stderr
    for bad, why in ((["--set", "aggregator.replicas=1"], "minimum"),
                     (["--set", "env.VIGIL_DATABASE__URL=postgresql://u:p@h/d"], "propertyName"),
                     (["--set", "worker.keda.enabled=true", "--set", "worker.hpa.enabled=true"],
                      "choose one autoscaler"),
                     (["--set", "worker.keda.enabled=true", "--set", "worker.keda.maxReplicas=9"],
                      "exceeds kafka.partitions"),
                     ([], "kafka.bootstrapServers is required")):
        args = bad if "bootstrapServers" in why else [*bad, "--set", "kafka.bootstrapServers=k:1"]
        done = helm("template", "rel", str(CHART), *args)
        assert done.returncode != 0 and why in done.stderr, (bad, done.stderr)


@needs_helm
def test_helm_renders_hardened_probed_pods_with_secrets_from_the_secret() -> None:
    docs = rendered(*FULL)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds.count("Deployment") == 5  # worker, worker-gpu, aggregator, dashboard, api
    assert {"Job", "ScaledObject", "ServiceMonitor", "PodDisruptionBudget"} <= set(kinds)
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        (container,) = pod["containers"]
        assert container["args"][0] in entrypoint_roles()
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["resources"]["requests"] and container["resources"]["limits"]
        for env in container["env"]:
            if env["name"] in SECRETS:
                assert "value" not in env and env["valueFrom"]["secretKeyRef"]["name"] == "vigil"
        if doc["kind"] == "Deployment":
            ports = {p["name"] for p in container["ports"]}
            live = container["livenessProbe"]["httpGet"]
            ready = container["readinessProbe"]["httpGet"]
            assert live["port"] in ports and ready["port"] in ports
            assert ready["path"] == "/readyz"
            assert live["path"] == ("/healthz" if container["args"][0] == "api" else "/livez")
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    worker = by_name[("Deployment", "rel-vigil-worker")]
    assert "replicas" not in worker["spec"], "KEDA owns the count"
    scaled = by_name[("ScaledObject", "rel-vigil-worker")]
    assert scaled["spec"]["scaleTargetRef"]["name"] == "rel-vigil-worker"
    assert "vigil_consumer_lag" in scaled["spec"]["triggers"][0]["metadata"]["query"]
    assert by_name[("Deployment", "rel-vigil-aggregator")]["spec"]["replicas"] >= 2
    gpu = by_name[("Deployment", "rel-vigil-worker-gpu")]["spec"]["template"]["spec"]
    (container,) = gpu["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"name": "VIGIL_SERVING__DEVICE", "value": "cuda"} in container["env"]
    assert container["image"].endswith("-cuda") and gpu["tolerations"] and gpu["nodeSelector"]
    job = by_name[("Job", "rel-vigil-migrate")]
    assert "pre-install" in job["metadata"]["annotations"]["helm.sh/hook"]
    monitor = by_name[("ServiceMonitor", "rel-vigil")]
    assert monitor["spec"]["endpoints"][0]["relabelings"][0]["replacement"] == "vigil-$1"
    jobs = {j["job_name"] for j in yaml_file(DEPLOY / "prometheus" / "prometheus.yml")[
        "scrape_configs"]}
    scraped = {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in docs
               if d["kind"] == "Service"
               and d["metadata"]["labels"].get("vigil.io/metrics") == "true"}
    assert {f"vigil-{c}" for c in scraped} - jobs == {"vigil-worker-gpu"}


@needs_helm
def test_helm_renders_the_plain_hpa_alternative() -> None:
    docs = rendered("--set", "kafka.bootstrapServers=k:9092", "--set", "worker.hpa.enabled=true",
                    "--set", "worker.hpa.lagPerPod=100")
    (hpa,) = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Pods"]["pods"]["metric"]["name"] == "vigil_consumer_lag"
    assert not [d for d in docs if d["kind"] == "ScaledObject"]
