"""The Vigil image's HEALTHCHECK: asks the service running in this container whether it is
alive, on the endpoint and port that service serves.

    python deploy/healthcheck.py [PID]

One image runs every role, so the check finds the role from the running `vigil` process (PID 1
when the entry point exec'd it, else the first `vigil SERVICE` process it finds under /proc, or
the PID given) and reads that process's own environment for its port:

    worker, aggregator, camera, dashboard  GET /livez on VIGIL_METRICS__PORT
                                           (9101, 9102, 9103, 9104 by default)
    api                                    GET /healthz on --port / VIGIL_API__PORT (8600)

Exit 0: alive (HTTP 200), or a process with nothing to probe (a one-shot command such as
`vigil db migrate`, metrics turned off, or VIGIL_METRICS__PORT=0). Exit 1: the endpoint
failed or did not answer, or no `vigil` process runs. Standard library only; the answer's
first line is printed (Docker keeps it in `docker inspect`).
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

# The services' default metrics ports (streams.observability.DEFAULT_PORTS) and the read
# API's default port (api.settings.ApiSettings); tests/deploy checks they agree.
METRICS_PORTS = {"worker": 9101, "aggregator": 9102, "camera": 9103, "dashboard": 9104}
API_PORT = 8600
SERVICES = frozenset(METRICS_PORTS) | {"api"}
FALSE = {"0", "false", "f", "no", "n", "off"}
TIMEOUT_S = 4.0


def vigil_command(argv: Sequence[str]) -> tuple[str, list[str]] | None:
    """(subcommand, its arguments) when ``argv`` runs the `vigil` command, else None."""
    for i, arg in enumerate(argv):
        if Path(arg).name == "vigil":
            rest = list(argv[i + 1:])
        elif arg == "-m" and i + 1 < len(argv) and argv[i + 1] == "vigil":
            rest = list(argv[i + 2:])
        else:
            continue
        j = 0
        while j < len(rest):
            if rest[j] == "--log-format":
                j += 2
            elif rest[j].startswith("-"):
                j += 1
            else:
                return rest[j], rest[j + 1:]
        return None
    return None


def _option(args: Sequence[str], name: str) -> str | None:
    value = None
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value  # the last one, as argparse takes it


def probe_url(role: str, args: Sequence[str], env: Mapping[str, str]) -> str | None:
    """The liveness URL of a `vigil ROLE ARGS` process with environment ``env``; None when
    it serves none (a one-shot command, metrics off, or a port picked at random)."""
    if role == "api":
        host = _option(args, "--host") or env.get("VIGIL_API__HOST") or "127.0.0.1"
        port = _option(args, "--port") or env.get("VIGIL_API__PORT") or str(API_PORT)
        path = "/healthz"
    elif role in METRICS_PORTS:
        if env.get("VIGIL_METRICS__ENABLED", "true").strip().lower() in FALSE:
            return None
        host = env.get("VIGIL_METRICS__HOST") or "127.0.0.1"
        port = env.get("VIGIL_METRICS__PORT") or str(METRICS_PORTS[role])
        path = "/livez"
    else:
        return None
    if port.strip() == "0":
        return None
    if host in ("0.0.0.0", "::", "[::]", ""):
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port.strip()}{path}"


def _read(path: Path) -> list[str]:
    try:
        return [p.decode(errors="replace") for p in path.read_bytes().split(b"\0") if p]
    except OSError:
        return []


def _processes(pids: Sequence[int] | None) -> Iterator[tuple[int, list[str], dict[str, str]]]:
    if pids is None:
        found = sorted(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
        pids = [1, *[p for p in found if p != 1]]
    for pid in pids:
        argv = _read(Path(f"/proc/{pid}/cmdline"))
        if not argv:
            continue
        env = dict(e.split("=", 1) for e in _read(Path(f"/proc/{pid}/environ")) if "=" in e)
        yield pid, argv, env


def say(line: str) -> None:
    sys.stdout.write(line + "\n")


def main(argv: Sequence[str]) -> int:
    pids = [int(a) for a in argv] or None
    one_shot = None
    for pid, cmdline, env in _processes(pids):
        found = vigil_command(cmdline)
        if found is None:
            continue
        role, args = found
        if role not in SERVICES:
            one_shot = one_shot or f"vigil {role} (pid {pid})"
            continue
        url = probe_url(role, args, env)
        if url is None:
            say(f"vigil {role} (pid {pid}) serves no fixed health endpoint: not probed")
            return 0
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                body = response.read(300).decode(errors="replace").splitlines()
                say(f"vigil {role}: {url} {response.status} {body[0] if body else ''}")
                return 0 if response.status == 200 else 1
        except urllib.error.HTTPError as exc:
            body = exc.read(300).decode(errors="replace").splitlines()
            say(f"vigil {role}: {url} {exc.code} {body[0] if body else ''}")
            return 1
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            say(f"vigil {role}: {url} did not answer: {reason}")
            return 1
    if one_shot:
        say(f"{one_shot}: a one-shot command, nothing to probe")
        return 0
    say("no vigil service process found")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
