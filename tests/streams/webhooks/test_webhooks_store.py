"""The dispatcher against the real delivery store (SQLite and PostgreSQL): the issue's
"500 then 200: delivered once, attempts recorded", and no second send after a restart."""

from __future__ import annotations

import asyncio

from test_webhooks import FAST, endpoint, make_alert, run, scripted_server

from streams.store import Store
from streams.store.models import DeliveryStatus
from streams.webhooks import DeliveryOutcome, WebhookDispatcher, generate_secret, verify


def test_500_then_200_is_delivered_once_and_recorded_in_the_store(store: Store) -> None:
    secret, alert = generate_secret(), make_alert()

    async def scenario() -> tuple[list[dict[str, DeliveryOutcome]], int]:
        async with scripted_server([500, 200]) as (url, received):
            outcomes = []
            for _ in range(2):  # the second dispatcher is the same worker after a restart
                async with WebhookDispatcher([endpoint(url, secret)], store.deliveries, FAST) as d:
                    outcomes.append(await d.deliver(alert))
            for request in received:
                verify([secret], request.headers, request.body)
            return outcomes, len(received)

    outcomes, requests = run(scenario())
    assert outcomes == [{"ops": DeliveryOutcome.DELIVERED}, {"ops": DeliveryOutcome.SKIPPED}]
    assert requests == 2
    delivery = store.deliveries.get(alert.alert_id, "ops")
    assert delivery is not None and delivery.status == DeliveryStatus.DELIVERED
    assert delivery.attempts == 2
    attempts = store.deliveries.attempts(alert.alert_id, "ops")
    assert [(a.attempt_no, a.status_code) for a in attempts] == [(1, 500), (2, 200)]
    assert attempts[0].error is not None and "500" in attempts[0].error
    assert attempts[1].error is None


def test_a_permanent_failure_is_recorded_in_the_store(store: Store) -> None:
    alert = make_alert()

    async def scenario() -> dict[str, DeliveryOutcome]:
        async with (
            scripted_server([], default=404) as (url, _),
            WebhookDispatcher([endpoint(url, generate_secret())], store.deliveries, FAST) as d,
        ):
            return await d.deliver(alert)

    assert run(scenario()) == {"ops": DeliveryOutcome.FAILED}
    delivery = store.deliveries.get(alert.alert_id, "ops")
    assert delivery is not None and delivery.status == DeliveryStatus.FAILED
    assert delivery.last_error is not None and "HTTP 404" in delivery.last_error
    assert [a.status_code for a in store.deliveries.attempts(alert.alert_id, "ops")] == [404]


def test_two_dispatchers_on_one_outbox_send_each_delivery_once(store: Store) -> None:
    secret = generate_secret()
    alerts = [make_alert(started_at=1_700_000_000.0 + i) for i in range(20)]

    async def scenario() -> list[str]:
        async with scripted_server([]) as (url, received):
            with Store(store.url) as other:  # a second process's connection pool
                async with (
                    WebhookDispatcher([endpoint(url, secret)], store.deliveries, FAST) as one,
                    WebhookDispatcher([endpoint(url, secret)], other.deliveries, FAST) as two,
                ):
                    one.start()
                    two.start()
                    for i, alert in enumerate(alerts):
                        d = one if i % 2 else two
                        await asyncio.to_thread(d.enqueue, alert)
                        one.wake()
                        two.wake()
                    while store.deliveries.counts()["delivered"] < len(alerts):
                        await asyncio.sleep(0.05)
            return [r.headers["webhook-id"] for r in received]

    ids = run(scenario())
    assert sorted(ids) == sorted(a.alert_id for a in alerts)  # each once, none twice
