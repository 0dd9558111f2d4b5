"""Webhooks outlast a receiver outage and an aggregator crash (issue 13): alerts raised while
the receiver is down wait in the PostgreSQL outbox, the aggregator is killed (SIGKILL) and
started again, the receiver comes back, and the local receiver (which verifies signatures)
gets each alert exactly once."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kafka import KafkaProducer
from stream_helpers import spawn
from test_webhooks import make_alert

from streams.broker import EmbeddedBroker
from streams.processes import free_port, stop_child
from streams.store import DeliveryStatus, Store
from streams.topics import ALERTS
from streams.webhooks.receiver import BackgroundReceiver
from streams.webhooks.signing import generate_secret

ALERT_COUNT = 6


def wait_for(condition: Any, timeout_s: float, what: Any) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what()
        time.sleep(0.3)


def test_alerts_raised_while_the_receiver_is_down_arrive_once_after_a_crash_and_restart(
    pg_schema_url: str, tmp_path: Path
) -> None:
    secret, port = generate_secret(), free_port()
    url = f"http://127.0.0.1:{port}/webhooks/vigil"  # nothing listens there yet
    received: Counter[str] = Counter()

    def on_delivery(body: dict[str, Any], headers: Mapping[str, str]) -> None:
        received[headers["webhook-id"]] += 1

    env = {
        "VIGIL_DATABASE__URL": pg_schema_url,
        "VIGIL_WEBHOOKS__ENDPOINTS": json.dumps([{"name": "fleet", "url": url,
                                                  "secrets": [secret]}]),
        # A short schedule for the test, through settings: retries within a second or two.
        "VIGIL_WEBHOOKS__RETRY__INITIAL_DELAY_S": "0.2",
        "VIGIL_WEBHOOKS__RETRY__MAX_DELAY_S": "1",
        "VIGIL_WEBHOOKS__RETRY__POLL_S": "0.5",
        "VIGIL_WEBHOOKS__RETRY__BREAKER_COOLDOWN_S": "1",
        "VIGIL_WEBHOOKS__RETRY__REQUEST_TIMEOUT_S": "2",
    }
    alerts = [make_alert(f"driver-{i}", 1_700_000_000.0 + i) for i in range(ALERT_COUNT)]
    logs = tmp_path

    def log_tail() -> str:
        return "".join(p.read_text()[-3000:] for p in sorted(logs.glob("*.log")))

    with EmbeddedBroker() as broker:
        broker.create_topics()
        aggregator = spawn(["aggregator", "--bootstrap", broker.bootstrap], env,
                           logs / "a1.log")
        store = Store(pg_schema_url)
        try:
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
            for alert in alerts:
                producer.send(ALERTS.name, key=alert.driver_id.encode(), value=alert.to_bytes())
            producer.flush()
            producer.close()

            def tried_all() -> bool:
                try:
                    rows = store.deliveries.find()
                except Exception:  # not migrated yet
                    return False
                return len(rows) == ALERT_COUNT and all(d.attempts >= 1 for d in rows)

            wait_for(tried_all, 180, lambda: f"not every alert tried: {log_tail()}")
            aggregator.send_signal(signal.SIGKILL)  # a crash, with retries pending
            aggregator.wait()
            assert {d.status for d in store.deliveries.find()} == {DeliveryStatus.PENDING}
            assert not received

            with BackgroundReceiver([secret], on_delivery, port=port):  # the receiver is back
                aggregator = spawn(["aggregator", "--bootstrap", broker.bootstrap], env,
                                   logs / "a2.log")
                wait_for(lambda: store.deliveries.counts()["delivered"] == ALERT_COUNT, 180,
                         lambda: f"{store.deliveries.counts()} {dict(received)} {log_tail()}")
                # Long enough for a second copy to show up, were one ever sent.
                time.sleep(3)
        finally:
            stop_child(aggregator)
            store.close()

    assert received == Counter({a.alert_id: 1 for a in alerts})  # each alert once
    delivered = store.deliveries.find(DeliveryStatus.DELIVERED)
    assert {d.alert_id for d in delivered} == {a.alert_id for a in alerts}
    assert all(d.attempts >= 2 and d.last_status_code == 200 for d in delivered)
    for d in delivered:  # and the dispatchers sent it once (the receiver dedupes on top)
        codes = [a.status_code for a in store.deliveries.attempts(d.alert_id, d.endpoint)]
        assert codes.count(200) == 1 and codes[-1] == 200, codes
    store.close()
