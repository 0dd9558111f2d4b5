"""The one redaction function behind every log line, page and stored error."""

from __future__ import annotations

import pytest

from streams.redaction import redact
from streams.store import Store


@pytest.mark.parametrize(
    ("text", "shown", "hidden"),
    [
        ("ClientResponseError: 400, url='http://127.0.0.1:8080/hooks?token=tk-1'",
         "http://127.0.0.1:8080/***", "tk-1"),
        ("https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX",  # the path is the token
         "https://hooks.slack.com/***", "XXXXSECRETXXXX"),
        ("https://user:pa55@ops.example/h", "https://***@ops.example/***", "pa55"),
        ("postgresql+psycopg://vigil:pa55@db.example:5432/vigil?sslpassword=k3y",
         "postgresql+psycopg://***@db.example:5432/vigil?***", "k3y"),
        ("host=db user=vigil password=pa55 dbname=vigil", "password=***", "pa55"),
        ("secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_***", "MfKQ9r8"),
        ("http://[::1]:99999/x?token=tk-2", "http://***", "tk-2"),  # unparsable port
    ],
)
def test_secrets_are_masked_and_the_place_stays_readable(
    text: str, shown: str, hidden: str
) -> None:
    out = redact(text)
    assert shown in out and hidden not in out
    assert redact(out) == out  # idempotent: redacting twice changes nothing


def test_text_without_secrets_is_left_alone() -> None:
    text = "webhook alert a1 -> ops: attempt 2 failed (HTTP 503 Service Unavailable)"
    assert redact(text) == text
    assert redact("sqlite:////var/lib/vigil/vigil.db") == "sqlite:////var/lib/vigil/vigil.db"


def test_the_store_never_shows_its_password() -> None:
    store = Store("postgresql://vigil:pa55w0rd@db.example:5432/vigil?sslpassword=k3y")
    try:
        assert "pa55w0rd" not in store.where and "k3y" not in store.where
        assert "pa55w0rd" not in repr(store) and "db.example:5432/vigil" in store.where
    finally:
        store.close()
