"""The retrain-from-flags loop: the model-version registry, and end to end — flags in the
database -> `retrain` -> a new version registered -> promoted -> the running aggregator serves
it without a restart (and the shipped weights again after a rollback)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from kafka import KafkaProducer
from stream_helpers import blink, random_features, running_app

from streams.aggregator.agent import build_aggregator_app
from streams.errors import InputError
from streams.schemas import Alert, AlertReason, Observation, Severity, alert_id
from streams.settings import AggregatorSettings
from streams.store import ModelVersionNotFoundError, Store
from streams.topics import OBSERVATIONS
from training.drowsiness import DrowsinessConfig, load_rldd
from training.retrain import RetrainConfig, flagged_examples, retrain, served_model

RLDD = Path(__file__).resolve().parents[3] / "shared" / "data" / "rldd"
MODEL = "drowsiness-blinks"
# A whole minute an hour ago: the aggregator accepts capture times near the broker's clock.
T0 = (time.time() // 60 - 60) * 60.0
FAST = RetrainConfig(gan_epochs=40, training=DrowsinessConfig(epochs=30))


def test_registry_numbers_versions_and_promotes_and_rolls_back(store: Store) -> None:
    v1 = store.model_versions.register(MODEL, b"one", data_hash="h1", metrics={"f1": 0.5})
    v2 = store.model_versions.register(MODEL, b"two", data_hash="h2", metrics={},
                                      parent="v1", note="from flags")
    assert (v1.version, v2.version, v2.parent, v2.status) == ("v1", "v2", "v1", "candidate")
    # Nothing promoted: the shipped weights serve.
    assert store.model_versions.promoted(MODEL) is None
    with pytest.raises(InputError):
        store.model_versions.rollback(MODEL)
    store.model_versions.promote(MODEL, "v1")
    store.model_versions.promote(MODEL, "2")
    assert store.model_versions.promoted(MODEL) == ("v2", b"two")
    assert [v.status for v in store.model_versions.versions(MODEL)] == ["retired", "promoted"]
    back = store.model_versions.rollback(MODEL)
    assert back is not None and back.version == "v1"
    assert store.model_versions.promoted(MODEL) == ("v1", b"one")
    assert store.model_versions.rollback(MODEL) is None  # past the first version: shipped again
    assert store.model_versions.promoted(MODEL) is None
    statuses = [v.status for v in store.model_versions.versions(MODEL)]
    assert statuses == ["rolled_back", "rolled_back"]
    with pytest.raises(ModelVersionNotFoundError):
        store.model_versions.promote(MODEL, "v9")
    assert store.model_versions.checkpoint(MODEL, "v2") == b"two"


def flag_rldd_alerts(store: Store, fp: int, tp: int) -> None:
    """Drowsiness alerts carrying real UTA-RLDD windows the shipped network gets wrong (alert
    drivers it calls drowsy: flagged false positive) or right (drowsy ones: true positive)."""
    data = load_rldd(RLDD, [1, 2, 3, 4])
    _, model = served_model(store)
    with torch.no_grad():
        predicted = model(torch.from_numpy(data.x)).argmax(-1).numpy()
    rng = np.random.default_rng(0)
    wrong = rng.choice(np.flatnonzero((data.y == 0) & (predicted != 0)), fp, replace=False)
    right = rng.choice(np.flatnonzero((data.y == 2) & (predicted == 2)), tp, replace=False)
    for n, i in enumerate([*wrong, *right]):
        t = T0 + 600 * n
        alert = Alert(alert_id=alert_id(f"d{n % 4}", AlertReason.DROWSINESS, t),
                      driver_id=f"d{n % 4}", vehicle_id="van", reason=AlertReason.DROWSINESS,
                      severity=Severity.WARNING, started_at=t, detected_at=t + 60,
                      message="Drowsy", evidence={"kss": 8, "blink_window": data.x[i].tolist()})
        store.alerts.upsert(alert)
        store.alerts.flag(alert.alert_id, "false_positive" if data.y[i] == 0 else "true_positive",
                         by="operator")


def test_too_few_flags_is_a_clear_error(store: Store) -> None:
    flag_rldd_alerts(store, 2, 3)
    with pytest.raises(InputError, match="needs at least 10"):
        retrain(store, FAST)
    assert store.model_versions.versions(MODEL) == []


def test_rule_only_alerts_are_left_out_of_the_examples(store: Store) -> None:
    flag_rldd_alerts(store, 1, 1)
    alert = Alert(alert_id=alert_id("d9", AlertReason.DROWSINESS, T0), driver_id="d9",
                  vehicle_id="van", reason=AlertReason.DROWSINESS, severity=Severity.INFO,
                  started_at=T0, detected_at=T0 + 60, message="Drowsy", evidence={"kss": 7})
    store.alerts.upsert(alert)
    store.alerts.flag(alert.alert_id, "true_positive", by="operator")
    examples, skipped = flagged_examples(store.alerts.flagged())
    assert sorted(examples.y.tolist()) == [0, 2] and skipped == 1


def observations(start: float, seconds: int, rng: np.random.Generator, seq0: int
                 ) -> list[Observation]:
    """Open eyes at 2 fps, one blink a second."""
    return [Observation(driver_id="d-live", vehicle_id="van", seq=seq0 + k,
                        captured_at=start + k / 2, processed_at=start + k / 2,
                        face_present=True, closure=0.1, gaze_off_road=False,
                        events=[blink(start + k / 2, random_features(rng))] if k % 2 else [])
            for k in range(seconds * 2)]


def wait_for_window(store: Store, start: float, timeout_s: float = 90) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for w in store.series.of_driver("d-live", since=start, until=start + 1):
            return w.model_dump()
        time.sleep(0.3)
    raise AssertionError(f"window at {start} never reached the store")


def test_flags_retrain_register_promote_and_the_running_aggregator_serves_it(
    pg_schema_url: str, tmp_path: Path
) -> None:
    from streams.broker import EmbeddedBroker

    store = Store(pg_schema_url)
    store.migrate()
    flag_rldd_alerts(store, fp=15, tp=25)
    result = retrain(store, FAST, note="flags of week 47")
    assert result.registered is not None, result.summary()
    version = result.registered
    assert (version.version, version.parent, version.status) == ("v1", "shipped", "candidate")
    assert result.candidate["macro_f1"] >= result.current["macro_f1"]
    assert version.data_hash == result.data_hash and version.note == "flags of week 47"
    assert version.metrics["held_out"]["macro_f1"] == pytest.approx(result.candidate["macro_f1"])

    rng = np.random.default_rng(0)
    with EmbeddedBroker() as broker:
        broker.create_topics()
        app, close = build_aggregator_app(broker.bootstrap, store, app_id="vigil-test-retrain",
                                          settings=AggregatorSettings(model_refresh_s=0.5))
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")

        def send(batch: list[Observation]) -> None:
            for obs in batch:
                producer.send(OBSERVATIONS.name, key=b"d-live", value=obs.to_bytes())
            producer.flush(timeout=30)

        try:
            with running_app(app):
                # 60 blinks: the shift's baseline; then the window of the next 60 blinks.
                send(observations(T0, 62, rng, 0))
                assert wait_for_window(store, T0)["drowsiness_model"] is None
                store.model_versions.promote(MODEL, version.version)
                time.sleep(2)  # a few refresh intervals
                send(observations(T0 + 62, 62, rng, 124))
                assert wait_for_window(store, T0 + 60)["drowsiness_model"] == "v1"
                store.model_versions.rollback(MODEL)
                time.sleep(2)
                send(observations(T0 + 124, 60, rng, 248))
                served_after = wait_for_window(store, T0 + 120)
                assert served_after["drowsiness_model"] == "shipped"
                assert served_after["drowsiness_state"] in ("alert", "low_vigilant", "drowsy")
        finally:
            producer.close()
            close()
