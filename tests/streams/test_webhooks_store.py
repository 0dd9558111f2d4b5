"""The dispatcher against the real delivery store (SQLite and PostgreSQL): the issue's
"500 then 200: delivered once, attempts recorded", and no second send after a restart."""

from __future__ import annotations

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
                async with WebhookDispatcher([endpoint(url, secret)], store, FAST) as d:
                    outcomes.append(await d.deliver(alert))
            for request in received:
                verify([secret], request.headers, request.body)
            return outcomes, len(received)

    outcomes, requests = run(scenario())
    assert outcomes == [{"ops": DeliveryOutcome.DELIVERED}, {"ops": DeliveryOutcome.SKIPPED}]
    assert requests == 2
    delivery = store.delivery(alert.alert_id, "ops")
    assert delivery is not None and delivery.status == DeliveryStatus.DELIVERED
    assert delivery.attempts == 2
    attempts = store.delivery_attempts(alert.alert_id, "ops")
    assert [(a.attempt_no, a.status_code) for a in attempts] == [(1, 500), (2, 200)]
    assert attempts[0].error is not None and "500" in attempts[0].error
    assert attempts[1].error is None


def test_a_permanent_failure_is_recorded_in_the_store(store: Store) -> None:
    alert = make_alert()

    async def scenario() -> dict[str, DeliveryOutcome]:
        async with (
            scripted_server([], default=404) as (url, _),
            WebhookDispatcher([endpoint(url, generate_secret())], store, FAST) as d,
        ):
            return await d.deliver(alert)

    assert run(scenario()) == {"ops": DeliveryOutcome.FAILED}
    delivery = store.delivery(alert.alert_id, "ops")
    assert delivery is not None and delivery.status == DeliveryStatus.FAILED
    assert delivery.last_error is not None and "HTTP 404" in delivery.last_error
    assert [a.status_code for a in store.delivery_attempts(alert.alert_id, "ops")] == [404]
