"""The read API's commands: `vigil api` (serve it) and `vigil api keys` (its keys, kept
hashed in the store).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from streams.cmdline import Subparsers, adder

log = logging.getLogger(__name__)


def cmd_serve(args: argparse.Namespace) -> int:
    """vigil api [--host H] [--port P]: serves the API with uvicorn until Ctrl-C or SIGTERM."""
    import uvicorn

    from api.app import create_app
    from api.settings import ApiEnvironment
    from streams.store import Store

    env = ApiEnvironment.load()  # a bad variable stops it here, by name
    host = args.host or env.api.host
    port = args.port or env.api.port
    with Store.from_settings(env.database) as store:
        store.migrate()
        app = create_app(store, env.api, env.dashboard)
        log.info("read API on http://%s:%d (OpenAPI at /openapi.json, browser at /docs), "
                 "database %s", host, port, store.where)
        # log_config None: uvicorn's lines go through Vigil's logging (its access lines name
        # the path and query, never the headers that carry the key).
        uvicorn.run(app, host=host, port=port, log_config=None,
                    log_level="debug" if args.debug else "info")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """vigil api keys create NAME --scope S | list | revoke ID."""
    from datetime import UTC, datetime

    from streams.store import Store

    with Store.from_settings() as store:
        if args.action == "list":  # a listing never creates or migrates the database
            store.check_migrated()
            for k in store.api_keys.all():
                if args.json:
                    sys.stdout.write(json.dumps(k.to_dict()) + "\n")
                else:
                    state = "active" if k.active else "revoked"
                    used = "-" if k.last_used_at is None else datetime.fromtimestamp(
                        k.last_used_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                    sys.stdout.write(f"{k.key_id}  {k.scope.value:5s}  {state:7s}  {used:20s}  "
                                     f"{k.name}\n")
        elif args.action == "create":
            store.migrate()
            _, key = store.api_keys.create(args.name, args.scope)
            log.info("the key is shown once, here; only its hash is stored")
            sys.stdout.write(key + "\n")  # stdout alone: `KEY=$(vigil api keys create ...)`
        else:
            store.migrate()
            if not store.api_keys.revoke(args.key_id):
                log.info("API key %s was revoked already", args.key_id)
    return 0


def register(sub: Subparsers) -> None:
    """api (serve), api keys create|list|revoke."""
    add = adder(sub)

    api = add("api", cmd_serve, "serve the read API for fleet systems (alerts, fleet, time "
              "series, exports; API keys from `vigil api keys`)")
    api.add_argument("--host", default=None, help="default VIGIL_API__HOST (127.0.0.1)")
    api.add_argument("--port", type=int, default=None, help="default VIGIL_API__PORT (8600)")
    api_sub = api.add_subparsers(dest="api_command")

    keys = add("keys", lambda a: 2, "the read API's keys (scopes: read; write, which also "
               "acknowledges and flags alerts)", parent=api_sub)
    keys_sub = keys.add_subparsers(dest="action", required=True)
    p = add("create", cmd_keys, "create a key and print it once (only its hash is stored)",
            parent=keys_sub)
    p.add_argument("name", help="who or what uses it, e.g. fleet-tms")
    p.add_argument("--scope", choices=["read", "write"], default="read")
    p = add("list", cmd_keys, "every key: id, scope, state, last use (UTC), name; "
            "never the key",
            parent=keys_sub)
    p.add_argument("--json", action="store_true")
    p = add("revoke", cmd_keys, "revoke a key for good (by the id `list` shows)",
            parent=keys_sub)
    p.add_argument("key_id", metavar="ID")
