"""Settings of the stream deployables, and the naming scheme every Vigil setting follows:
``VIGIL_`` + section + ``__`` + field, nested further with ``__``
(``VIGIL_KAFKA__BOOTSTRAP_SERVERS``, ``VIGIL_WEBHOOKS__RETRY__HORIZON_S``)."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self, TypeVar, get_type_hints

from pydantic import BaseModel, Field, FilePath, SecretStr, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from streams.errors import ConfigurationError

log = logging.getLogger(__name__)


class _FormerNames(PydanticBaseSettingsSource):
    """Values from environment variables named before the one scheme, with a warning each;
    the new name wins when both are set."""

    def __init__(self, settings_cls: type[BaseSettings], former: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.former = former

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ reads them all at once

    def __call__(self) -> dict[str, Any]:
        prefix = str(self.config.get("env_prefix", ""))
        found: dict[str, Any] = {}
        for old, field in self.former.items():
            if old in os.environ:
                log.warning("%s is a former name; rename it to %s%s", old, prefix,
                            field.upper())
                found[field] = os.environ[old]
        return found


class VigilSettings(BaseSettings):
    """A deployable's settings from the environment. ``former_env_names`` maps variables of
    an earlier naming scheme to the fields they set, so existing deployments keep working."""

    former_env_names: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        former = _FormerNames(settings_cls, cls.former_env_names)
        return init_settings, env_settings, former, dotenv_settings, file_secret_settings


S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S]) -> S:
    """``cls()`` from the environment. A bad variable raises ConfigurationError naming the
    variable and what is wrong with it, never its value (it may be a secret)."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    try:
        return cls()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "__".join(str(p) for p in first["loc"]).upper()
        raise ConfigurationError(f"bad setting {prefix}{field}: {first['msg']}") from None
    except SettingsError as exc:  # a JSON value that does not parse: names the field only
        raise ConfigurationError(f"bad setting under {prefix}: {exc}") from None


class DeployableSettings:
    """Everything one deployable reads from its environment: a dataclass of settings
    sections, each loaded and checked at start by :meth:`load`, so that a bad variable stops
    the process at once with its name rather than when the section is first used."""

    @classmethod
    def load(cls) -> Self:
        hints = get_type_hints(cls)
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        return cls(**{f.name: load_settings(hints[f.name]) for f in fields})


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(BaseModel):
    """VIGIL_KAFKA__BOOTSTRAP_SERVERS=host:port,host:port (empty: the embedded broker).

    partitions: of every topic keyed by driver (frames, observations, windows, alerts, event
    clips; the dead-letter topic keeps its own), so the most consumers of one group that can
    work at once. replication_factor and min_insync_replicas: of every topic Vigil creates
    (3 and 2 in production). The security fields reach every Kafka client Vigil makes, through
    :func:`streams.kafka_clients.client_kwargs`; a combination that cannot work (a SASL
    protocol without a mechanism or credentials, TLS files without TLS) stops the process
    with a ConfigurationError naming the variable."""

    bootstrap_servers: str = ""
    compression: str = "gzip"
    partitions: int = Field(default=8, ge=1, le=10_000)
    replication_factor: int = Field(default=1, ge=1, le=32)
    min_insync_replicas: int = Field(default=1, ge=1, le=32)
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    # PEM files, checked to exist when the settings load.
    ssl_cafile: FilePath | None = None
    ssl_certfile: FilePath | None = None
    ssl_keyfile: FilePath | None = None

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @model_validator(mode="after")
    def _combination_works(self) -> Self:
        """ConfigurationError (not a validation error: it is about several variables) naming
        the variable to set or unset; never a secret's value."""
        var = "VIGIL_KAFKA__"
        protocol = f"{var}SECURITY_PROTOCOL={self.security_protocol}"
        if self.min_insync_replicas > self.replication_factor:
            raise ConfigurationError(
                f"bad setting {var}MIN_INSYNC_REPLICAS: {self.min_insync_replicas} is more than "
                f"{var}REPLICATION_FACTOR={self.replication_factor} (no write could succeed)")
        if self.uses_sasl:
            if self.sasl_mechanism is None:
                raise ConfigurationError(
                    f"bad setting {var}SASL_MECHANISM: {protocol} needs one of PLAIN, "
                    "SCRAM-SHA-256, SCRAM-SHA-512")
            if not self.sasl_username:
                raise ConfigurationError(
                    f"bad setting {var}SASL_USERNAME: {protocol} needs a user name")
            if self.sasl_password is None or not self.sasl_password.get_secret_value():
                raise ConfigurationError(
                    f"bad setting {var}SASL_PASSWORD: {protocol} needs a password")
        else:
            for name in ("sasl_mechanism", "sasl_username", "sasl_password"):
                value = getattr(self, name)
                if isinstance(value, SecretStr):
                    value = value.get_secret_value()
                if value:  # an empty variable counts as unset
                    raise ConfigurationError(
                        f"bad setting {var}{name.upper()}: {protocol} does not authenticate "
                        "with SASL (use SASL_SSL or SASL_PLAINTEXT)")
        if not self.uses_tls:
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                if getattr(self, name) is not None:
                    raise ConfigurationError(
                        f"bad setting {var}{name.upper()}: {protocol} does not use TLS "
                        "(use SSL or SASL_SSL)")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ConfigurationError(
                f"bad setting {var}SSL_CERTFILE: {var}SSL_KEYFILE is the key of a client "
                "certificate, which is missing")
        return self


class CameraSettings(BaseModel):
    jpeg_quality: int = Field(default=80, ge=30, le=100)
    # Frames kept while the broker is unreachable; older ones are dropped (and counted).
    max_buffer_s: float = Field(default=120.0, gt=0)
    send_timeout_s: float = Field(default=10.0, gt=0)
    # A live source (device, RTSP/HTTP) that drops is reopened, with backoff, for this long;
    # then the camera gives up and exits non-zero.
    reconnect_for_s: float = Field(default=60.0, ge=0)


class AggregatorSettings(BaseModel):
    # How often the aggregator asks the model registry for a newly promoted drowsiness
    # version (served from then on, without a restart).
    model_refresh_s: float = Field(default=10.0, gt=0)


class RecordSettings(BaseModel):
    """What the stream agents accept (VIGIL_RECORDS__MAX_AHEAD_S, ...): capture times at most
    this far after / before the broker's timestamp of their record; others are dead-lettered.
    Ahead is tight (a record dated ahead would hide its driver's real frames until then);
    behind covers a worker catching up on a backlog."""

    max_ahead_s: float = Field(default=300.0, gt=0)
    max_behind_s: float = Field(default=86_400.0, gt=0)


class StreamSettings(VigilSettings):
    """Kafka, the camera, the aggregator's refresh and record bounds. The camera deployable
    reads only these."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_", env_nested_delimiter="__",
                                      extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    camera: CameraSettings = Field(default_factory=CameraSettings)
    aggregator: AggregatorSettings = Field(default_factory=AggregatorSettings)
    records: RecordSettings = Field(default_factory=RecordSettings)
