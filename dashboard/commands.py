"""The dashboard's commands: `vigil dashboard` (the operator app in the foreground) and
`vigil users` (its local logins, kept in the store).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from streams.cmdline import Subparsers, adder, stop_on_interrupt_or_term
from streams.errors import ConfigurationError


def cmd_dashboard(args: argparse.Namespace) -> int:
    from dashboard.launch import serve

    stop_on_interrupt_or_term()
    return serve(args.port, args.host)


def cmd_users(args: argparse.Namespace) -> int:
    """vigil users add NAME --role ROLE | list | remove NAME: the dashboard's local logins."""
    import time
    from dataclasses import asdict

    from streams.errors import InputError
    from streams.store import Store

    with Store.from_settings() as store:
        if args.action == "list":  # a listing never creates or migrates the database
            store.check_migrated()
        else:
            store.migrate()
        if args.action == "add":
            store.operators.set(args.name, args.role, _new_password(args))
        elif args.action == "remove":
            if not store.operators.remove(args.name):
                raise InputError(f"no dashboard login {args.name!r}")
        else:
            for o in store.operators.all():
                locked = o.locked_until is not None and o.locked_until > time.time()
                sys.stdout.write(json.dumps(asdict(o)) + "\n" if args.json else
                                 f"{o.name:24s} {o.role.value:9s}"
                                 f"{' locked' if locked else ''}\n")
    return 0


def _new_password(args: argparse.Namespace) -> str:
    """From stdin (--password-stdin), VIGIL_USER_PASSWORD or a prompt: never from argv, which
    other users of the machine can read."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if os.environ.get("VIGIL_USER_PASSWORD"):
        return os.environ["VIGIL_USER_PASSWORD"]
    if not sys.stdin.isatty():
        raise ConfigurationError("no terminal to ask for the password: pipe it in with "
                                 "--password-stdin or set VIGIL_USER_PASSWORD")
    import getpass

    password = getpass.getpass(f"Password for {args.name}: ")
    if getpass.getpass("Again: ") != password:
        raise ConfigurationError("the two passwords differ")
    return password


def register(sub: Subparsers) -> None:
    """dashboard, users."""
    add = adder(sub)

    p = add("dashboard", cmd_dashboard, "run the operator dashboard in the foreground (local "
            "logins, or OIDC from VIGIL_DASHBOARD__OIDC__*)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--host", default="127.0.0.1")

    users = add("users", lambda a: 2, "the dashboard's local logins (roles: viewer, operator, "
                "admin)")
    users_sub = users.add_subparsers(dest="action", required=True)
    p = add("add", cmd_users, "create a login, or give it a new role and password; the "
            "password comes from a prompt, --password-stdin or VIGIL_USER_PASSWORD",
            parent=users_sub)
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=["viewer", "operator", "admin"])
    p.add_argument("--password-stdin", action="store_true", help="read it from stdin's first line")
    p = add("list", cmd_users, "every login with its role", parent=users_sub)
    p.add_argument("--json", action="store_true")
    p = add("remove", cmd_users, "delete a login", parent=users_sub)
    p.add_argument("name")
