"""Logins and roles on the dashboard (Streamlit AppTest over a real PostgreSQL store): nobody
sees anything before logging in, wrong passwords are refused and lock the login, viewers read
but cannot act, every action checks the role on the server again, and OIDC identities get
their role from a claim or an e-mail list."""

from __future__ import annotations

import logging
import os
import tomllib

import pytest
from dash_helpers import APP, LOGINS, NAMES, Fleet, log_in
from streamlit.testing.v1 import AppTest
from test_pages import app, texts

from dashboard.launch import auth_secrets, streamlit_command
from dashboard.settings import DashboardSettings
from streams.errors import ConfigurationError
from streams.schemas import AlertState
from streams.store import OperatorRole, Store

OPERATOR = LOGINS[OperatorRole.OPERATOR]
OIDC_ENV = {
    "VIGIL_DASHBOARD__OIDC__CLIENT_ID": "vigil-dashboard",
    "VIGIL_DASHBOARD__OIDC__CLIENT_SECRET": "oidc-client-secret-value",
    "VIGIL_DASHBOARD__OIDC__SERVER_METADATA_URL": "https://idp.example.com/.well-known/openid-configuration",
    "VIGIL_DASHBOARD__OIDC__REDIRECT_URI": "https://vigil.example.com/oauth2callback",
    "VIGIL_DASHBOARD__OIDC__ROLE_CLAIM": "groups",
    "VIGIL_DASHBOARD__OIDC__OPERATORS": "Olga@Example.com, someone@example.com",
}


def visitor() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=30).run()


def shown(at: AppTest) -> str:
    """Every text the page shows, in one string."""
    kinds = ("markdown", "caption", "title", "subheader", "metric", "error", "info", "warning")
    return "\n".join(str(getattr(e, "value", "")) + str(getattr(e, "label", ""))
                     for kind in kinds for e in at.get(kind))


def test_a_visitor_sees_only_the_login_form(fleet: Fleet) -> None:
    at = visitor()
    assert not at.exception
    assert [t.key for t in at.text_input] == ["login_name", "login_password"]
    assert at.text_input(key="login_password").proto.type == at.text_input(
        key="login_password").proto.PASSWORD
    for page in ("views/alerts.py", "views/health.py", "views/driver.py"):
        at.switch_page(page).run()
        page_text = shown(at)
        assert not any(name in page_text for name in NAMES.values()), page
        assert not at.metric and not at.dataframe and "Log out" not in [b.label for b in at.button]
        assert not [b for b in at.button if b.key and b.key.startswith("ack-")]


def test_wrong_passwords_are_refused_logged_and_lock_the_login(
    fleet: Fleet, caplog: pytest.LogCaptureFixture, dashboard_env: pytest.MonkeyPatch
) -> None:
    dashboard_env.setenv("VIGIL_DASHBOARD__MAX_FAILED_LOGINS", "3")
    name, password = OPERATOR
    caplog.set_level(logging.WARNING, logger="dashboard.auth")
    at = log_in(visitor(), name, "not-the-password")
    assert any("Wrong name or password" in e for e in texts(at, "error"))
    assert at.text_input(key="login_password").value == ""  # not kept in the session
    assert not any(n in shown(at) for n in NAMES.values())
    log_in(at, "nobody", "whatever-password")  # unknown names read the same
    assert any("Wrong name or password" in e for e in texts(at, "error"))
    log_in(log_in(at, name, "wrong-again"), name, "and-again")
    assert any("locked" in e for e in texts(at, "error"))
    log_in(at, name, password)  # the right password, but locked
    assert any("locked" in e for e in texts(at, "error"))
    assert at.text_input(key="login_name") is not None
    assert "failed login for 'dana'" in caplog.text and "failed login for 'nobody'" in caplog.text
    for secret in ("not-the-password", "wrong-again", password):
        assert secret not in caplog.text
    fleet.store.operators.set(name, OperatorRole.OPERATOR, password)  # an admin resets it
    log_in(at, name, password)
    assert "**Bob Okafor**" in texts(at, "markdown")


def test_viewers_read_but_cannot_act(fleet: Fleet) -> None:
    at = app("views/alerts.py", OperatorRole.VIEWER)
    aid = fleet.drowsy_alert
    assert "Drowsy: KSS 9 (fatigue score 0.86)" in texts(at, "markdown")
    actions = [b for b in at.button if b.key and b.key.split("-")[0] in (
        "ack", "resolve", "true_positive", "false_positive")]
    assert actions and all(b.disabled for b in actions)
    assert at.text_input(key=f"note-{aid}").disabled
    with pytest.raises(Exception, match="disabled"):
        at.button(key=f"ack-{aid}").click()
    stored = fleet.store.alerts.get(aid)
    assert stored is not None and stored.state == AlertState.OPEN and stored.acked_by is None


def test_every_action_checks_the_role_on_the_server(fleet: Fleet) -> None:
    at = app("views/alerts.py", OperatorRole.OPERATOR)
    aid, name = fleet.drowsy_alert, OPERATOR[0]
    assert not at.button(key=f"ack-{aid}").disabled
    # Demoted while the page still shows the buttons: the click is refused all the same.
    fleet.store.operators.set(name, OperatorRole.VIEWER, OPERATOR[1])
    at.button(key=f"ack-{aid}").click().run()
    stored = fleet.store.alerts.get(aid)
    assert stored is not None and stored.state == AlertState.OPEN and stored.acked_by is None
    assert any("needs the operator role" in e for e in texts(at, "error"))
    assert at.button(key=f"ack-{aid}").disabled
    # Removed: the session is logged out at its next run.
    fleet.store.operators.remove(name)
    at.run()
    assert [t.key for t in at.text_input] == ["login_name", "login_password"]
    assert "Drowsy: KSS 9 (fatigue score 0.86)" not in texts(at, "markdown")


def test_health_details_are_for_admins(fleet: Fleet) -> None:
    viewer = app("views/health.py", OperatorRole.VIEWER)
    admin = app("views/health.py", OperatorRole.ADMIN)
    for at in (viewer, admin):
        assert {m.label: m.value for m in at.metric}["Dead letters"] == "6"
    assert "Latest dead letters" in texts(admin, "caption")
    assert "Latest dead letters" not in texts(viewer, "caption")
    assert [e.label for e in admin.expander] == ["Rows per table"] and not viewer.expander
    failed = [d.value for d in admin.dataframe if "endpoint" in d.value.columns]
    assert failed and not [d for d in viewer.dataframe if "endpoint" in d.value.columns]
    assert not any("Database:" in c for c in texts(viewer, "caption"))  # names the server
    assert any("Database:" in c for c in texts(admin, "caption"))


def test_a_new_database_gets_one_admin_whose_password_is_logged_once(
    schema_url: str, dashboard_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with Store(schema_url) as store:
        store.migrate()
        dashboard_env.setenv("VIGIL_DATABASE__URL", schema_url)
        caplog.set_level(logging.WARNING, logger="dashboard.auth")
        at = visitor()
        [admin] = store.operators.all()
        assert (admin.name, admin.role) == ("admin", OperatorRole.ADMIN)
        [line] = [r.getMessage() for r in caplog.records if "created dashboard login" in r.msg]
        password = line.split("password ", 1)[1].split(" ", 1)[0]
        log_in(at, "admin", password)
        assert "Log out" in [b.label for b in at.button]
        visitor()  # a second visit creates nobody and logs nothing
        assert len(store.operators.all()) == 1
        assert sum("created dashboard login" in r.msg for r in caplog.records) == 1


def test_the_first_admin_can_take_its_password_from_the_environment(
    schema_url: str, dashboard_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with Store(schema_url) as store:
        store.migrate()
        dashboard_env.setenv("VIGIL_DATABASE__URL", schema_url)
        dashboard_env.setenv("VIGIL_DASHBOARD__ADMIN_PASSWORD", "from-the-environment")
        caplog.set_level(logging.INFO)
        at = log_in(visitor(), "admin", "from-the-environment")
        assert "Log out" in [b.label for b in at.button]
        assert "from-the-environment" not in caplog.text


@pytest.fixture
def oidc(fleet: Fleet, dashboard_env: pytest.MonkeyPatch) -> Fleet:
    for key, value in OIDC_ENV.items():
        dashboard_env.setenv(key, value)
    return fleet


def oidc_app(user: dict[str, object], page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.secrets["auth"] = {"redirect_uri": OIDC_ENV["VIGIL_DASHBOARD__OIDC__REDIRECT_URI"]}
    at.user = user
    at.run()
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_oidc_visitor_gets_the_provider_button_and_no_password_form(oidc: Fleet) -> None:
    at = oidc_app({"is_logged_in": False})
    assert [b.label for b in at.button] == ["Log in with single sign-on"]
    assert not at.text_input and not any(n in shown(at) for n in NAMES.values())
    # Started by plain `streamlit run`, without the generated secrets: it says what to do.
    bare = AppTest.from_file(str(APP), default_timeout=30)
    bare.user = {"is_logged_in": False}
    bare.run()
    assert any("vigil dashboard" in e for e in texts(bare, "error")) and not bare.button


def test_oidc_roles_come_from_the_e_mail_lists_or_the_role_claim(oidc: Fleet) -> None:
    aid = oidc.drowsy_alert
    # Listed as an operator (case does not matter): acts, under the e-mail address.
    at = oidc_app({"is_logged_in": True, "email": "olga@example.com", "email_verified": True},
                  "views/alerts.py")
    at.button(key=f"ack-{aid}").click().run()
    stored = oidc.store.alerts.get(aid)
    assert stored is not None and stored.acked_by == "olga@example.com"
    # An unverified address proves nothing.
    at = oidc_app({"is_logged_in": True, "email": "olga@example.com", "email_verified": False})
    assert any("has no role in Vigil" in e for e in texts(at, "error"))
    assert [b.label for b in at.button] == ["Log out"] and not at.metric
    # The claim names the role.
    at = oidc_app({"is_logged_in": True, "email": "vera@example.com", "groups": ["viewer"]},
                  "views/alerts.py")
    assert all(b.disabled for b in at.button if b.key and b.key.startswith("ack-"))
    at = oidc_app({"is_logged_in": True, "email": "ann@example.com", "groups": ["staff", "admin"]},
                  "views/health.py")
    assert "Latest dead letters" in texts(at, "caption")


def test_oidc_secrets_file_is_private_and_complete(
    oidc: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    command = streamlit_command(8765)
    path = command[command.index("--secrets.files") + 1]
    for private in (path, os.path.dirname(path)):
        assert os.stat(private).st_mode & 0o077 == 0  # this user's only
    with open(path, "rb") as f:
        auth = tomllib.load(f)["auth"]
    assert auth["client_secret"] == "oidc-client-secret-value"
    assert auth["server_metadata_url"] == OIDC_ENV["VIGIL_DASHBOARD__OIDC__SERVER_METADATA_URL"]
    assert len(auth["cookie_secret"]) >= 32
    assert "oidc-client-secret-value" not in caplog.text
    assert auth["cookie_secret"] not in caplog.text
    assert "oidc-client-secret-value" not in " ".join(command)


def test_half_configured_oidc_is_refused_naming_what_is_missing(
    dashboard_env: pytest.MonkeyPatch,
) -> None:
    dashboard_env.setenv("VIGIL_DASHBOARD__OIDC__CLIENT_ID", "vigil-dashboard")
    dashboard_env.setenv("VIGIL_DASHBOARD__OIDC__CLIENT_SECRET", "a-secret-value")
    with pytest.raises(ConfigurationError, match="SERVER_METADATA_URL") as caught:
        auth_secrets(DashboardSettings())
    assert "a-secret-value" not in str(caught.value)
