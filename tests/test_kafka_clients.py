"""Kafka security and topic settings (``VIGIL_KAFKA__*``) reach every Kafka client Vigil makes:
the camera's producer, the topic admin client, the read-back consumer, the dashboard's lag
reader, and the Faust apps of the worker and the aggregator (and the topics and tables they
declare). No SASL broker here: each client's constructor is replaced by one that records
what it was given, and the names are checked against the real constructors'. A combination
that cannot work stops a deployable with a ConfigurationError naming the variable.

(At the top of ``tests/`` because it spans the areas, like ``test_import_layers.py``.)
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import ssl
from pathlib import Path
from typing import Any, ClassVar

import kafka
import pytest
from aiokafka import AIOKafkaConsumer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from kafka.errors import KafkaError

import streams.broker
import streams.camera
import streams.readback
from dashboard import queries
from streams.aggregator.agent import build_aggregator_app
from streams.app import bind_topic, create_app
from streams.camera import CameraAgent
from streams.errors import ConfigurationError
from streams.kafka_clients import client_kwargs
from streams.settings import KafkaSettings, StreamSettings, load_settings
from streams.store import Store
from streams.topics import DEAD_LETTERS, FRAMES, OBSERVATIONS
from vigil.cli import main as vigil_main
from workers.agent import build_worker_app

PASSWORD = "s3cret-pa55word"


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A client certificate and its key (PEM), the certificate also serving as the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vigil-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "client.pem", tmp_path / "client.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def sasl_ssl_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    for name, value in {"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "SCRAM-SHA-512",
                        "SASL_USERNAME": "vigil-svc", "SASL_PASSWORD": PASSWORD,
                        "SSL_CAFILE": str(cert), "SSL_CERTFILE": str(cert),
                        "SSL_KEYFILE": str(key), "PARTITIONS": "12",
                        "REPLICATION_FACTOR": "3", "MIN_INSYNC_REPLICAS": "2"}.items():
        monkeypatch.setenv(f"VIGIL_KAFKA__{name}", value)


def assert_secured(kwargs: dict[str, Any]) -> None:
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("vigil-svc",
                                                                               PASSWORD)
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == 1  # the CA file's, not the system's


class Recorder:
    """Stands in for a client class: records each construction's keyword arguments, checks
    them against the real class's, then behaves as ``fake`` (or raises KafkaError)."""

    def __init__(self, real: type, fake: type | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.real, self.fake = real, fake
        defaults = getattr(real, "DEFAULT_CONFIG", None)
        self.accepted = set(defaults if defaults is not None
                            else inspect.signature(real).parameters)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        unknown = set(kwargs) - self.accepted
        assert not unknown, f"{self.real.__name__} takes no {sorted(unknown)}"
        if self.fake is None:
            raise KafkaError("recorded, not connected")
        return self.fake(*args, **kwargs)


class FakeAdmin:
    created: ClassVar[list[Any]] = []

    def __init__(self, **_: Any) -> None:
        pass

    def list_topics(self) -> list[str]:
        return [DEAD_LETTERS.name]

    def create_topics(self, topics: list[Any]) -> None:
        FakeAdmin.created = topics

    def close(self) -> None:
        pass


class FakeAIOConsumer:
    def __init__(self, **_: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    async def topics(self) -> set[str]:
        return set()

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set()

    def assign(self, partitions: list[Any]) -> None:
        pass

    async def seek_to_beginning(self) -> None:
        pass

    async def getmany(self, timeout_ms: int) -> dict[Any, Any]:
        await asyncio.sleep(0)
        return {}

    async def stop(self) -> None:
        pass


class FakeConsumer:
    def __init__(self, **_: Any) -> None:
        pass

    def beginning_offsets(self, tps: list[Any]) -> dict[Any, int]:
        return {}

    end_offsets = beginning_offsets

    def close(self) -> None:
        pass


@pytest.mark.usefixtures("sasl_ssl_env")
def test_every_kafka_client_gets_the_security_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    producer = Recorder(kafka.KafkaProducer)
    monkeypatch.setattr(streams.camera, "KafkaProducer", producer)
    with pytest.raises(KafkaError):  # the camera's producer, settings from the environment
        CameraAgent("broker:9093", "d-1", "van-1", fps=10)._producer()
    assert_secured(producer.calls[0])
    assert producer.calls[0]["enable_idempotence"] is True  # its own options kept

    admin = Recorder(kafka.KafkaAdminClient, FakeAdmin)
    monkeypatch.setattr(streams.broker, "KafkaAdminClient", admin)
    streams.broker.ensure_topics("broker:9093")  # the topic admin client
    assert_secured(admin.calls[0])
    created = {t.name: t for t in FakeAdmin.created}
    assert DEAD_LETTERS.name not in created  # existing topics are left alone
    frames = created[FRAMES.name]
    assert (frames.num_partitions, frames.replication_factor) == (12, 3)
    assert frames.topic_configs["min.insync.replicas"] == "2"

    consumer = Recorder(AIOKafkaConsumer, FakeAIOConsumer)
    monkeypatch.setattr(streams.readback, "AIOKafkaConsumer", consumer)
    assert streams.readback.read_topic("broker:9093", FRAMES.name, idle_s=0.05) == []
    assert_secured(consumer.calls[0])  # the read-back consumer (aiokafka)

    lag_admin = Recorder(kafka.KafkaAdminClient)
    monkeypatch.setattr(kafka, "KafkaAdminClient", lag_admin)
    with pytest.raises(queries.LagUnavailableError):
        queries.consumer_lag("broker:9093", timeout_s=0.5)  # the dashboard's lag reader
    assert_secured(lag_admin.calls[0])
    lag_consumer = Recorder(kafka.KafkaConsumer, FakeConsumer)
    monkeypatch.setattr(kafka, "KafkaConsumer", lag_consumer)
    queries._offset_bounds("broker:9093", [], 500, load_settings(StreamSettings).kafka)
    assert_secured(lag_consumer.calls[0])

    # Faust: what its aiokafka consumers and producers are given, from broker_credentials.
    worker, close_worker = build_worker_app("broker:9093", app_id="vigil-test-secured-worker")
    close_worker()
    with Store(f"sqlite:///{tmp_path / 'vigil.db'}") as store:
        aggregator, _ = build_aggregator_app("broker:9093", store,
                                             app_id="vigil-test-secured-aggregator")
    for app in (worker, aggregator, create_app("vigil-test-secured", "broker:9093")):
        assert repr(app.conf.broker_credentials).count(PASSWORD) == 0
        assert_secured(credentials_to_aiokafka_auth(app.conf.broker_credentials,
                                                    app.conf.ssl_context))
        topic = bind_topic(app, OBSERVATIONS)
        assert (topic.partitions, topic.replicas) == (12, 3)
        assert topic.config == {"min.insync.replicas": "2"}
        assert bind_topic(app, DEAD_LETTERS).partitions == 1  # its own count
    table = aggregator.tables["aggregator-state"]
    assert table.partitions == 12 and table.extra_topic_configs == {"min.insync.replicas": "2"}


def test_plaintext_clients_get_no_security_options() -> None:
    plain = KafkaSettings()
    assert client_kwargs(plain, "kafka-python") == {"security_protocol": "PLAINTEXT"}
    assert client_kwargs(plain, "aiokafka") == {"security_protocol": "PLAINTEXT"}
    assert client_kwargs(plain, "faust") == {"broker_credentials": None}
    tls = KafkaSettings(security_protocol="SSL")  # the system's certificate authorities
    assert isinstance(client_kwargs(tls, "aiokafka")["ssl_context"], ssl.SSLContext)
    assert type(client_kwargs(tls, "faust")["broker_credentials"]).__name__ == "SSLCredentials"


@pytest.mark.parametrize(("env", "variable"), [
    ({"SECURITY_PROTOCOL": "SASL_SSL"}, "VIGIL_KAFKA__SASL_MECHANISM"),
    ({"SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SASL_MECHANISM": "PLAIN",
      "SASL_PASSWORD": PASSWORD}, "VIGIL_KAFKA__SASL_USERNAME"),
    ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "SCRAM-SHA-256",
      "SASL_USERNAME": "vigil-svc"}, "VIGIL_KAFKA__SASL_PASSWORD"),
    ({"SASL_USERNAME": "vigil-svc", "SASL_PASSWORD": PASSWORD}, "VIGIL_KAFKA__SASL_USERNAME"),
    ({"SECURITY_PROTOCOL": "SASL"}, "VIGIL_KAFKA__SECURITY_PROTOCOL"),
    ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "GSSAPI"},
     "VIGIL_KAFKA__SASL_MECHANISM"),
    ({"SECURITY_PROTOCOL": "SSL", "SSL_CAFILE": "/nonexistent/ca.pem"},
     "VIGIL_KAFKA__SSL_CAFILE"),
    ({"SSL_CAFILE": __file__}, "VIGIL_KAFKA__SSL_CAFILE"),  # PLAINTEXT uses no TLS
    ({"MIN_INSYNC_REPLICAS": "2"}, "VIGIL_KAFKA__MIN_INSYNC_REPLICAS"),
    ({"PARTITIONS": "0"}, "VIGIL_KAFKA__PARTITIONS"),
])
def test_a_combination_that_cannot_work_is_a_configuration_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], variable: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(f"VIGIL_KAFKA__{name}", value)
    with pytest.raises(ConfigurationError, match=rf"bad setting {variable}\b") as caught:
        load_settings(StreamSettings)
    assert PASSWORD not in str(caught.value)


def test_a_deployable_with_a_wrong_combination_stops_at_once_with_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VIGIL_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("VIGIL_KAFKA__SASL_PASSWORD", PASSWORD)
    assert vigil_main(["worker", "--bootstrap", "broker:9093"]) == 2
    err = capsys.readouterr().err
    assert "bad setting VIGIL_KAFKA__SASL_MECHANISM" in err and PASSWORD not in err


def test_a_tls_file_that_does_not_load_names_its_variable(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate")
    settings = KafkaSettings(security_protocol="SSL", ssl_cafile=not_pem)
    with pytest.raises(ConfigurationError, match="VIGIL_KAFKA__SSL_CAFILE"):
        client_kwargs(settings, "kafka-python")
