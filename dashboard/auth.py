"""Who is logged in and what they may do.

Logins are local (``vigil users``; names and scrypt hashes in the store, locked after repeated
wrong passwords) unless an OpenID Connect provider is configured (``VIGIL_DASHBOARD__OIDC__*``,
Streamlit's ``st.login``; roles from a claim or per-role e-mail lists). Roles: viewers read,
operators also acknowledge, resolve and flag alerts, admins also see and change the system.

``gate()`` runs first on every page run and shows only the login form until someone logs in.
Every action calls ``require(role)``, which checks the role on the server again (a local login
against the store, so a removed or demoted login loses its rights at once), whatever the page
showed. A local login lasts as long as the browser tab's session: reloading asks again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NoReturn

import streamlit as st

from dashboard import ui
from dashboard.admin import first_admin
from dashboard.settings import DashboardSettings, OidcSettings
from models.errors import VigilError
from streams.store import LoginRefusedError, OperatorRole, Store

log = logging.getLogger(__name__)

_WHO = "vigil_identity"  # no widget has this key, so no browser message can set it
_LOGIN_ERROR = "login_error"
_ORDER = list(OperatorRole)


class AccessDeniedError(VigilError):
    """Nobody is logged in, or the login's role does not allow the action."""


@dataclass(frozen=True)
class Identity:
    name: str  # recorded on acknowledgements, resolutions and flags
    role: OperatorRole
    oidc: bool = False

    def may(self, role: OperatorRole) -> bool:
        return _ORDER.index(self.role) >= _ORDER.index(role)


def gate() -> Identity:
    """The logged-in identity; with nobody logged in, shows the login page and stops the run."""
    try:
        cfg = ui.settings()
    except VigilError as exc:
        st.error(str(exc), icon=":material/error:")
        st.stop()
    if cfg.oidc.enabled:
        who = _oidc_identity(cfg.oidc)
        if who is None and st.user.is_logged_in:
            _no_role_page()
    else:
        who = _local_identity(strict=False)
    if who is None:
        st.session_state.pop(_WHO, None)
        _login_page(cfg)
        st.stop()
    st.session_state[_WHO] = who
    return who


def current() -> Identity | None:
    """The identity ``gate()`` admitted in this run (for what a page shows; actions use
    :func:`require`)."""
    who = st.session_state.get(_WHO)
    return who if isinstance(who, Identity) else None


def require(role: OperatorRole) -> Identity:
    """The logged-in identity if its role, checked now, allows ``role``; else
    AccessDeniedError (logged)."""
    cfg = ui.settings()
    who = _oidc_identity(cfg.oidc) if cfg.oidc.enabled else _local_identity(strict=True)
    if who is None or not who.may(role):
        seen = current()
        log.warning("dashboard: refused an %s action to %r (role %s)", role.value,
                    seen.name if seen else None, who.role.value if who else "none")
        raise AccessDeniedError(
            f"not allowed: this needs the {role.value} role"
            + (f"; {who.name} is a {who.role.value}" if who else "; log in again")
        )
    return who


def account(who: Identity) -> None:
    """The sidebar's "logged in as" (the name recorded on what this session does)."""
    with st.sidebar:
        st.caption(f"Logged in as **{ui.escape(who.name)}** · {who.role.value}",
                   help="the name recorded on acknowledgements, resolutions and flags")
        st.button("Log out", key="log_out", icon=":material/logout:", on_click=_log_out)


def _log_out() -> None:
    who = st.session_state.pop(_WHO, None)
    if isinstance(who, Identity):
        log.info("dashboard: %r logged out", who.name)
        if who.oidc:
            st.logout()


@st.cache_resource(show_spinner=False)
def _first_admin_once(url: str, _store: Store) -> bool:
    """Once per server and database: `streamlit run` alone works out of the box too."""
    first_admin(_store)
    return True


def _local_identity(*, strict: bool) -> Identity | None:
    who = current()
    if who is None or who.oidc:
        return None
    try:
        found = ui.get_store().operators.get(who.name)
    except VigilError:
        if strict:
            raise
        return who  # an outage: the pages say so, and every action checks again
    if found is None:
        log.warning("dashboard: login %r was removed; its session is logged out", who.name)
        return None
    return who if found.role == who.role else Identity(who.name, found.role)


def _oidc_identity(oidc: OidcSettings) -> Identity | None:
    if not st.user.is_logged_in:
        return None
    claims = st.user.to_dict()
    name = str(claims.get("email") or claims.get("sub") or "")
    role = oidc.role_of(claims)
    return Identity(name, role, oidc=True) if name and role else None


def _no_role_page() -> NoReturn:
    claims = st.user.to_dict()
    who = str(claims.get("email") or claims.get("sub") or "this account")
    log.warning("dashboard: OIDC login %r has no Vigil role; refused", who)
    st.title("Vigil")
    st.error(f"{ui.escape(who)} has no role in Vigil. Ask an administrator to add you.",
             icon=":material/block:")
    st.button("Log out", on_click=st.logout)
    st.stop()


def _login_page(cfg: DashboardSettings) -> None:
    st.title("Vigil")
    if cfg.oidc.enabled:
        missing = cfg.oidc.missing()
        if missing:
            st.error("Single sign-on is not fully configured: set " + ", ".join(missing),
                     icon=":material/error:")
        elif not _auth_secrets():
            st.error("Single sign-on is configured but this server was started without it: "
                     "start the dashboard with `vigil dashboard`.", icon=":material/error:")
        else:
            st.button(f"Log in with {cfg.oidc.provider_label}", on_click=st.login,
                      type="primary", icon=":material/login:")
        return
    with ui.guard():
        store = ui.get_store()
        _first_admin_once(store.url, store)
    with st.form("login", width=420, clear_on_submit=True):  # the password never lingers
        st.text_input("Name", key="login_name", autocomplete="username")
        st.text_input("Password", type="password", key="login_password",
                      autocomplete="current-password")
        st.form_submit_button("Log in", type="primary", on_click=_log_in, args=(cfg,))
    problem = st.session_state.pop(_LOGIN_ERROR, None)
    if problem:
        st.error(problem, icon=":material/lock:")


def _auth_secrets() -> bool:
    try:
        return "auth" in st.secrets
    except FileNotFoundError:  # no secrets file at all
        return False


def _log_in(cfg: DashboardSettings) -> None:
    """The form's callback (runs before the page, so a good login shows the pages at once)."""
    name = str(st.session_state.get("login_name") or "").strip()
    password = str(st.session_state.get("login_password") or "")
    st.session_state["login_password"] = ""  # the browser clears its copy (clear_on_submit)
    try:
        found = ui.get_store().operators.authenticate(
            name, password, max_failures=cfg.max_failed_logins, lockout_s=cfg.lockout_s
        )
    except LoginRefusedError as exc:
        log.warning("dashboard: failed login for %r%s", name, " (locked)" if exc.locked else "")
        st.session_state[_LOGIN_ERROR] = str(exc).capitalize()
        return
    except VigilError as exc:
        log.warning("dashboard: login for %r impossible: %s", name, exc)
        st.session_state[_LOGIN_ERROR] = str(exc)
        return
    log.info("dashboard: %r logged in (%s)", found.name, found.role.value)
    st.session_state[_WHO] = Identity(found.name, found.role)
