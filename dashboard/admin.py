"""The first dashboard login: on a store without any, the admin ``admin`` is created (by
``vigil dashboard``, ``vigil demo`` and the login page alike, whichever comes first)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from dashboard.settings import DashboardSettings
from streams.settings import load_settings
from streams.store.passwords import generate_password

if TYPE_CHECKING:
    from streams.store import Store

log = logging.getLogger(__name__)

FIRST_ADMIN = "admin"


def ensure_first_admin(store: Store, password: str | None) -> None:
    """On a store without any login, creates the admin ``admin`` with ``password``, or with
    a random one that is logged once (the only place it is ever shown)."""
    chosen = password or generate_password()
    if not store.operators.create_first_admin(FIRST_ADMIN, chosen):
        return
    if password:
        log.warning("created dashboard login %r (admin) with the password in "
                    "VIGIL_DASHBOARD__ADMIN_PASSWORD", FIRST_ADMIN)
    else:
        log.warning("created dashboard login %r (admin) with password %s (shown only this once; "
                    "`vigil users add %s --role admin` sets another)",
                    FIRST_ADMIN, chosen, FIRST_ADMIN)


def first_admin(store: Store) -> None:
    """With local logins and none in ``store``, creates the admin: with
    VIGIL_DASHBOARD__ADMIN_PASSWORD, else a random password that is logged once."""
    settings = load_settings(DashboardSettings)
    if not settings.oidc.enabled:
        password = settings.admin_password
        ensure_first_admin(store, password.get_secret_value() if password else None)
