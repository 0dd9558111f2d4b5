"""Dashboard settings (environment prefix ``VIGIL_DASHBOARD__``).

    VIGIL_DASHBOARD__REFRESH_S=5             # fleet page auto-refresh
    VIGIL_DASHBOARD__OFFLINE_AFTER_S=180     # no window or alert for this long: offline
    VIGIL_DASHBOARD__MAX_FAILED_LOGINS=5     # wrong passwords in a row that lock a login
    VIGIL_DASHBOARD__LOCKOUT_S=300           # for this long
    VIGIL_DASHBOARD__ADMIN_PASSWORD=...      # the first admin's (else a random one)

Logins are local (``vigil users``), unless an OpenID Connect provider is configured:

    VIGIL_DASHBOARD__OIDC__CLIENT_ID=vigil
    VIGIL_DASHBOARD__OIDC__CLIENT_SECRET=...
    VIGIL_DASHBOARD__OIDC__SERVER_METADATA_URL=https://idp/.well-known/openid-configuration
    VIGIL_DASHBOARD__OIDC__REDIRECT_URI=https://vigil.example.com/oauth2callback
    VIGIL_DASHBOARD__OIDC__ROLE_CLAIM=groups       # a claim whose values name roles, and/or
    VIGIL_DASHBOARD__OIDC__ADMINS=ana@example.com  # comma-separated e-mails per role
    VIGIL_DASHBOARD__OIDC__OPERATORS=...
    VIGIL_DASHBOARD__OIDC__VIEWERS=...
    VIGIL_DASHBOARD__OIDC__COOKIE_SECRET=...       # shared by replicas (default: per start)

The database comes from ``VIGIL_DATABASE__URL`` (:class:`streams.store.DatabaseSettings`) and
Kafka from ``VIGIL_KAFKA__BOOTSTRAP_SERVERS`` (:class:`streams.settings.StreamSettings`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from streams.event_clips import ClipSettings
from streams.observability import MetricsSettings
from streams.settings import DeployableSettings, StreamSettings, VigilSettings
from streams.store import DatabaseSettings, OperatorRole


class OidcSettings(BaseModel):
    """Logins through an OpenID Connect provider (Streamlit's ``st.login``) instead of local
    ones, when ``client_id`` is set. A login gets the highest role that its ``role_claim``
    values (``viewer``, ``operator``, ``admin``) or its verified e-mail (the per-role lists)
    give it; none: refused."""

    client_id: str = ""
    client_secret: SecretStr = SecretStr("")
    server_metadata_url: str = ""
    redirect_uri: str = ""
    cookie_secret: SecretStr = SecretStr("")
    provider_label: str = "single sign-on"
    role_claim: str = ""
    admins: str = ""
    operators: str = ""
    viewers: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.client_id.strip())

    def missing(self) -> list[str]:
        """The settings an enabled provider still needs (their environment names)."""
        needed = {"client_secret": self.client_secret.get_secret_value(),
                  "server_metadata_url": self.server_metadata_url,
                  "redirect_uri": self.redirect_uri}
        return [f"VIGIL_DASHBOARD__OIDC__{k.upper()}" for k, v in needed.items() if not v]

    def role_of(self, claims: Mapping[str, Any]) -> OperatorRole | None:
        """The role that the identity token's ``claims`` give (None: no role)."""
        roles: set[OperatorRole] = set()
        if self.role_claim:
            value = claims.get(self.role_claim)
            values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
            roles |= {OperatorRole(v) for v in values
                      if isinstance(v, str) and v in set(OperatorRole)}
        email = str(claims.get("email") or "").strip().lower()
        # An address the provider has not verified proves nothing.
        if email and claims.get("email_verified") is not False:
            for role, listed in ((OperatorRole.ADMIN, self.admins),
                                 (OperatorRole.OPERATOR, self.operators),
                                 (OperatorRole.VIEWER, self.viewers)):
                if email in {e.strip().lower() for e in listed.split(",")}:
                    roles.add(role)
        order = list(OperatorRole)
        return max(roles, key=order.index) if roles else None


class DashboardSettings(VigilSettings):
    model_config = SettingsConfigDict(
        env_prefix="VIGIL_DASHBOARD__", env_nested_delimiter="__", extra="ignore"
    )
    former_env_names: ClassVar[Mapping[str, str]] = {
        "VIGIL_ADMIN_PASSWORD": "admin_password"}

    refresh_s: float = Field(default=5.0, gt=0)
    # Windows close every 60 s (plus grace), so a live driver is seen at least that often.
    offline_after_s: float = Field(default=180.0, gt=0)
    # Unresolved alerts this recent set a driver's current state (older ones only count).
    recent_alert_s: float = Field(default=300.0, gt=0)
    kafka_timeout_s: float = Field(default=3.0, gt=0)
    max_failed_logins: int = Field(default=5, ge=1)
    lockout_s: float = Field(default=300.0, gt=0)
    admin_password: SecretStr | None = None
    oidc: OidcSettings = OidcSettings()


@dataclass(frozen=True)
class DashboardEnvironment(DeployableSettings):
    """Everything the dashboard reads from its environment; `vigil dashboard` checks it all
    before it starts the server."""

    dashboard: DashboardSettings
    database: DatabaseSettings
    streams: StreamSettings  # Kafka, for the consumer lag on the health page
    clips: ClipSettings  # where the event clips it plays are
    metrics: MetricsSettings  # `vigil dashboard`'s side port: /metrics, /livez, /readyz
