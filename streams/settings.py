"""Settings of the stream deployables (environment prefix ``VIGIL_``, nesting with ``__``)."""

from __future__ import annotations

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseModel):
    """VIGIL_KAFKA__BOOTSTRAP_SERVERS=host:port,host:port (empty: the embedded broker)."""

    bootstrap_servers: str = ""
    compression: str = "gzip"


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


class StreamSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_", env_nested_delimiter="__",
                                      extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    camera: CameraSettings = Field(default_factory=CameraSettings)
    aggregator: AggregatorSettings = Field(default_factory=AggregatorSettings)
    records: RecordSettings = Field(default_factory=RecordSettings)
