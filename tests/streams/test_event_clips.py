"""Event clips in the store (SQLite and PostgreSQL), their retention purge (function and
`vigil clips purge`), forged clip records (refused by the sink, left alone by the purge),
and the whole path on real parts: frames -> worker (this process) -> alert -> clip file ->
`vigil aggregator` -> PostgreSQL."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cv2
import pytest
from kafka import KafkaProducer
from stream_helpers import TopicFollower, running_app, spawn

from streams.app import create_app
from streams.broker import EmbeddedBroker
from streams.event_clips import DAY_S, ClipSettings, RetentionPolicy, purge_clips
from streams.processes import stop_child
from streams.schemas import (
    Alert,
    AlertReason,
    DeadLetterReason,
    EventClip,
    FrameBatchHeader,
    FrameInfo,
    Severity,
    alert_id,
    encode_frame_batch,
)
from streams.sinks import register_sinks
from streams.store import AlertFlag, Store
from streams.topics import ALERTS, EVENT_CLIPS, FRAMES
from streams.webhooks.settings import WebhookSettings
from vigil.cli import main
from workers.agent import build_worker_app
from workers.face.backends import create_backend
from workers.inference import InferenceProcessor
from workers.perception import DriverPerception

NOW = 1_760_000_000.0
MALFORMED = b'{"schema": "vigil.event-clip.v1"}'


def make_alert(driver: str, detected_at: float) -> Alert:
    started = detected_at - 1.5
    return Alert(alert_id=alert_id(driver, AlertReason.MICROSLEEP, started), driver_id=driver,
                 vehicle_id="van-1", reason=AlertReason.MICROSLEEP, severity=Severity.WARNING,
                 started_at=started, detected_at=detected_at, message="eyes closed 1.5 s")


def make_clip(alert: Alert, path: Path, created_at: float) -> EventClip:
    return EventClip(alert_id=alert.alert_id, driver_id=alert.driver_id,
                     vehicle_id=alert.vehicle_id, path=str(path), sha256="0" * 64,
                     size_bytes=path.stat().st_size if path.exists() else 0, frames=30,
                     fps=10.0, started_at=alert.detected_at - 3, ended_at=alert.detected_at,
                     blurred=True, created_at=created_at)


def clip_file(directory: Path, alert: Alert) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{alert.alert_id}.webm"
    path.write_bytes(b"webm")
    path.with_suffix(".json").write_text("{}")
    return path


# --- the store ----------------------------------------------------------------------------


def test_record_clip_is_idempotent_and_reads_back_with_the_alert_flag(store: Store,
                                                                      tmp_path: Path) -> None:
    alert = make_alert("d1", NOW)
    clip = make_clip(alert, clip_file(tmp_path, alert), NOW + 1)
    assert store.clips.record(clip, at=NOW + 2)  # before its alert is stored: no FK
    assert not store.clips.record(clip.model_copy(update={"frames": 99}))
    stored = store.clips.for_alert(alert.alert_id)
    assert stored is not None and stored.frames == 30 and stored.flag is None
    assert stored.recorded_at == NOW + 2 and not stored.purged
    assert EventClip.model_validate(
        {f: getattr(stored, f) for f in EventClip.model_fields if f != "schema_"}) == clip
    store.alerts.upsert(alert)
    store.alerts.flag(alert.alert_id, AlertFlag.TRUE_POSITIVE, "dana")
    assert store.clips.for_alert(alert.alert_id).flag == AlertFlag.TRUE_POSITIVE  # type: ignore[union-attr]
    assert store.clips.for_alert("nope") is None
    assert set(store.clips.for_alerts([alert.alert_id, "nope"])) == {alert.alert_id}
    assert store.row_counts()["event_clips"] == 1


def test_expired_clips_keep_flagged_ones_longer_and_purged_ones_stay_purged(
    store: Store, tmp_path: Path
) -> None:
    policy = RetentionPolicy(7 * DAY_S, 90 * DAY_S)
    ages = {"fresh": 1, "old": 8, "old-flagged": 8, "ancient-flagged": 91}
    clips = {}
    for name, days in ages.items():
        alert = make_alert(name, NOW - days * DAY_S)
        store.alerts.upsert(alert)
        if "flagged" in name:
            store.alerts.flag(alert.alert_id, AlertFlag.FALSE_POSITIVE, "dana")
        clips[name] = make_clip(alert, tmp_path / f"{name}.webm", NOW - days * DAY_S)
        store.clips.record(clips[name])
    expired = store.clips.expired(*policy.cutoffs(NOW))
    assert [c.driver_id for c in expired] == ["ancient-flagged", "old"]
    assert all(policy.expired(c.created_at, c.flag is not None, NOW) for c in expired)
    assert store.clips.purge([c.alert_id for c in expired], at=NOW) == 2
    assert store.clips.purge([c.alert_id for c in expired], at=NOW) == 0
    assert store.clips.expired(*policy.cutoffs(NOW)) == []
    # A replayed clip record does not bring a purged clip back.
    assert not store.clips.record(clips["old"])
    tomb = store.clips.for_alert(clips["old"].alert_id)
    assert tomb is not None and tomb.purged_at == NOW


def test_retention_policy_is_a_pure_decision() -> None:
    policy = RetentionPolicy.from_settings(ClipSettings(retention_days=7,
                                                        flagged_retention_days=90))
    assert not policy.expired(NOW - 6.9 * DAY_S, False, NOW)
    assert policy.expired(NOW - 7.1 * DAY_S, False, NOW)
    assert not policy.expired(NOW - 89 * DAY_S, True, NOW)
    assert policy.expired(NOW - 91 * DAY_S, True, NOW)


# --- the purge ----------------------------------------------------------------------------


@pytest.fixture
def aged(store: Store, tmp_path: Path) -> dict[str, EventClip]:
    """Clips 1 and 8 days old, one of 8 days flagged, one of 8 days whose file is gone."""
    directory = tmp_path / "clips"
    out = {}
    for name, days, flag, keep_file in [("fresh", 1, None, True), ("old", 8, None, True),
                                        ("flagged", 8, AlertFlag.TRUE_POSITIVE, True),
                                        ("gone", 8, None, False)]:
        alert = make_alert(name, NOW - days * DAY_S)
        store.alerts.upsert(alert)
        if flag:
            store.alerts.flag(alert.alert_id, flag, "dana")
        path = clip_file(directory, alert)
        if not keep_file:
            path.unlink()
            path.with_suffix(".json").unlink()
        out[name] = make_clip(alert, path, NOW - days * DAY_S)
        store.clips.record(out[name])
    return out


def test_purge_deletes_expired_files_and_rows_together(store: Store, tmp_path: Path,
                                                       aged: dict[str, EventClip]) -> None:
    directory = tmp_path / "clips"
    orphan = directory / "0123-orphan.webm"  # a clip no row claims (its record was lost)
    orphan.write_bytes(b"webm")
    temp = directory / ".4567.abcd.tmp.webm"  # left by a worker killed mid-write
    temp.write_bytes(b"we")
    for path in (orphan, temp):
        os.utime(path, (NOW - 8 * DAY_S, NOW - 8 * DAY_S))
    young_orphan = directory / "89ab-young.webm"  # might still get its row: kept
    young_orphan.write_bytes(b"webm")
    os.utime(young_orphan, (NOW - 3600, NOW - 3600))
    for clip in aged.values():  # the clips' own files are as old as the clips
        for p in (Path(clip.path), Path(clip.path).with_suffix(".json")):
            if p.exists():
                os.utime(p, (clip.created_at, clip.created_at))
    settings = ClipSettings(directory=directory)

    dry = purge_clips(store, settings, now=NOW, dry_run=True)
    assert sorted(dry.expired) == sorted([aged["old"].alert_id, aged["gone"].alert_id])
    assert sorted(dry.orphans) == sorted([orphan.name, temp.name])
    assert Path(aged["old"].path).exists() and orphan.exists()
    assert store.clips.expired(*RetentionPolicy.from_settings(settings).cutoffs(NOW))

    report = purge_clips(store, settings, now=NOW)
    assert report.deleted_files == 1 and report.missing_files == 1 and report.failed == []
    assert not Path(aged["old"].path).exists()
    assert not Path(aged["old"].path).with_suffix(".json").exists()
    assert not orphan.exists() and not temp.exists() and young_orphan.exists()
    for name in ("old", "gone"):
        assert store.clips.for_alert(aged[name].alert_id).purged  # type: ignore[union-attr]
    for name in ("fresh", "flagged"):  # flagged: kept for retraining
        assert Path(aged[name].path).exists()
        assert not store.clips.for_alert(aged[name].alert_id).purged  # type: ignore[union-attr]
    assert purge_clips(store, settings, now=NOW).expired == []

    later = purge_clips(store, settings, now=NOW + 89 * DAY_S)
    assert sorted(later.expired) == sorted([aged["fresh"].alert_id, aged["flagged"].alert_id])
    assert list(directory.iterdir()) == []  # the young orphan's time has come too


def test_a_file_that_cannot_be_deleted_keeps_its_row(store: Store, tmp_path: Path,
                                                     aged: dict[str, EventClip],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self == Path(aged["old"].path):
            raise PermissionError(13, "Permission denied", str(self))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    report = purge_clips(store, ClipSettings(directory=tmp_path / "clips"), now=NOW)
    assert report.failed == [aged["old"].alert_id]
    assert not store.clips.for_alert(aged["old"].alert_id).purged  # type: ignore[union-attr]
    assert store.clips.for_alert(aged["gone"].alert_id).purged  # type: ignore[union-attr]


def test_vigil_clips_purge_command(store: Store, tmp_path: Path, aged: dict[str, EventClip],
                                   monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VIGIL_DATABASE__URL", store.url)
    monkeypatch.setenv("VIGIL_CLIPS__DIRECTORY", str(tmp_path / "clips"))
    # The command purges as of now, long after NOW: every unflagged clip is due; the flagged
    # one is kept (for a century).
    monkeypatch.setenv("VIGIL_CLIPS__FLAGGED_RETENTION_DAYS", "36500")
    assert main(["clips", "purge", "--dry-run"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["dry_run"] and len(dry["expired"]) == 3
    assert Path(aged["fresh"].path).exists()
    assert main(["clips", "purge"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["deleted_files"] == 2 and done["missing_files"] == 1
    assert not Path(aged["fresh"].path).exists() and Path(aged["flagged"].path).exists()


# --- forged clip records -----------------------------------------------------------------


def forgeries(tmp_path: Path) -> tuple[Path, Path, list[tuple[Alert, Path]]]:
    """(clip directory, a file outside it with its .json neighbour, [(alert, the path its
    forged record claims)]): an absolute path outside, a `..` escape, a symlink named for
    the alert in the clip directory leading out, a file there under another alert's name."""
    directory = tmp_path / "clips"
    directory.mkdir()
    victim = tmp_path / "elsewhere" / "precious.webm"
    victim.parent.mkdir()
    victim.write_bytes(b"not a clip")
    victim.with_suffix(".json").write_text("{}")
    alerts = [make_alert(f"forged-{k}", NOW - 9 * DAY_S) for k in range(4)]
    link = directory / f"{alerts[2].alert_id}.webm"
    link.symlink_to(victim)
    claims = [victim, directory / ".." / "elsewhere" / "precious.webm", link,
              clip_file(directory, make_alert("someone", NOW))]
    return directory, victim, list(zip(alerts, claims, strict=True))


def test_the_purge_deletes_only_its_own_files(store: Store, tmp_path: Path) -> None:
    """Expired rows that claim files outside the clip directory (stored before the sink
    refused them) expire without their files being touched; neither do strangers in the
    directory go, however old."""
    directory, victim, claims = forgeries(tmp_path)
    for alert, path in claims:
        store.clips.record(make_clip(alert, path, NOW - 9 * DAY_S))
    stranger = directory / "notes.txt"
    stranger.write_text("the operator's")
    old = NOW - 30 * DAY_S
    for path in (stranger, victim, victim.with_suffix(".json")):
        os.utime(path, (old, old))
    settings = ClipSettings(directory=directory)

    assert len(purge_clips(store, settings, now=NOW, dry_run=True).refused) == 4
    report = purge_clips(store, settings, now=NOW)
    assert sorted(report.refused) == sorted(report.expired) and len(report.refused) == 4
    assert report.deleted_files == 0 and report.failed == []
    assert victim.read_bytes() == b"not a clip" and victim.with_suffix(".json").exists()
    assert stranger.exists()
    assert all(store.clips.for_alert(a).purged for a in report.refused)  # type: ignore[union-attr]
    assert purge_clips(store, settings, now=NOW).expired == []


def test_the_sink_refuses_forged_clip_records(pg_schema_url: str, tmp_path: Path) -> None:
    """Clip records whose path is not the alert's file in the clip directory are set aside as
    dead letters (with the reason, counted in the store) and never stored; a true one is."""
    directory, _, claims = forgeries(tmp_path)
    good = make_alert("honest", NOW)
    records = [make_clip(alert, path, NOW) for alert, path in claims]
    records.append(make_clip(good, clip_file(directory, good), NOW))
    store = Store(pg_schema_url)
    store.migrate()
    with EmbeddedBroker() as broker:
        broker.create_topics()
        app = create_app("vigil-test-forged-clips", broker.bootstrap)
        close = register_sinks(app, Store(pg_schema_url), WebhookSettings(),
                               ClipSettings(directory=directory))
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        try:
            with running_app(app):
                for r in records:
                    producer.send(EVENT_CLIPS.name, key=r.driver_id.encode(),
                                  value=r.to_bytes()).get(timeout=30)
                deadline = time.monotonic() + 90
                while (store.clips.for_alert(good.alert_id) is None
                       or len(store.dead_letters.find()) < len(claims)):
                    assert time.monotonic() < deadline, store.dead_letters.find()
                    time.sleep(0.2)
        finally:
            producer.close()
            close()
    letters = store.dead_letters.find()
    assert len(letters) == len(claims)
    assert all(dl.source_topic == EVENT_CLIPS.name and dl.reason is DeadLetterReason.BAD_SCHEMA
               and "not its file in the clip directory" in dl.error for dl in letters)
    assert store.dead_letters.counts() == {"bad_schema": len(claims)}
    assert set(store.clips.for_alerts([r.alert_id for r in records])) == {good.alert_id}
    store.close()


# --- end to end ---------------------------------------------------------------------------


def test_alert_behind_real_frames_becomes_a_blurred_clip_in_postgres(
    pg_schema_url: str, tmp_path: Path, video_dir: Path
) -> None:
    """Frames of a real face -> the worker app (OpenCV face engine) -> an alert published
    on the alerts topic -> a clip file with no face left in it, its record on the event-clips
    topic, and its row in PostgreSQL written by `vigil aggregator`. A malformed event-clip
    record on the topic becomes a dead letter."""
    cap = cv2.VideoCapture(str(video_dir / "single_face.mp4"))
    jpegs = []
    while len(jpegs) < 40:
        ok, frame = cap.read()
        assert ok
        jpegs.append(cv2.imencode(".jpg", frame)[1].tobytes())
    cap.release()
    t0 = time.time() - 10
    clips_dir = tmp_path / "clips"
    settings = ClipSettings(directory=clips_dir, pre_s=2.0, post_s=0.5,
                            alert_latency_s=2.0)
    processor = InferenceProcessor(
        lambda fps: DriverPerception(create_backend("opencv"), fps=fps))
    driver = "clip-1"
    alert = make_alert(driver, t0 + 3.0)
    with EmbeddedBroker() as broker:
        broker.create_topics()
        app, close = build_worker_app(broker.bootstrap, app_id="vigil-test-clips",
                                      processor=processor, clips=settings)
        recorder = app.vigil_clips  # type: ignore[attr-defined]
        env = {"VIGIL_DATABASE__URL": pg_schema_url, "VIGIL_CLIPS__DIRECTORY": str(clips_dir)}
        aggregator = spawn(["aggregator", "--bootstrap", broker.bootstrap], env,
                           tmp_path / "aggregator.log")
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all",
                                 max_request_size=8 * 1024 * 1024)
        try:
            with running_app(app), TopicFollower(broker.bootstrap, EVENT_CLIPS.name) as out:
                for first in range(0, len(jpegs), 8):
                    batch = jpegs[first:first + 8]
                    infos = [FrameInfo(seq=first + i, captured_at=t0 + (first + i) / 10,
                                       width=640, height=360, size=len(j))
                             for i, j in enumerate(batch)]
                    header = FrameBatchHeader(driver_id=driver, vehicle_id="van-1",
                                              batch_seq=first, fps=10, sent_at=time.time(),
                                              frames=infos)
                    producer.send(FRAMES.name, key=driver.encode(),
                                  value=encode_frame_batch(header, batch)).get(timeout=30)
                # The alert once the worker has buffered the frames up to its clip's end.
                deadline = time.monotonic() + 90
                while (ring := recorder.ring(driver)) is None or (ring.newest or 0) < t0 + 3.5:
                    assert time.monotonic() < deadline, "the worker never buffered the frames"
                    time.sleep(0.1)
                for _ in range(2):  # and again: a replay writes nothing new
                    producer.send(ALERTS.name, key=driver.encode(),
                                  value=alert.to_bytes()).get(timeout=30)
                producer.send(EVENT_CLIPS.name, key=driver.encode(),
                              value=MALFORMED).get(timeout=30)
                out.wait_for(lambda rs: any(r.value != MALFORMED for r in rs), 90,
                             lambda: f"clip stats {recorder.stats}")
                store = Store(pg_schema_url)
                deadline = time.monotonic() + 120
                stored = letters = None
                while time.monotonic() < deadline:
                    assert aggregator.poll() is None, (tmp_path / "aggregator.log").read_text()
                    try:
                        stored = store.clips.for_alert(alert.alert_id)
                        letters = store.dead_letters.find()
                    except Exception:  # not migrated yet
                        pass
                    if stored is not None and letters:
                        break
                    time.sleep(0.5)
                store.close()
                records = [r for r in out.records if r.value != MALFORMED]
        finally:
            producer.close()
            stop_child(aggregator)
            close()
    assert len(records) == 1  # the replayed alert published nothing
    clip = EventClip.model_validate_json(records[0].value)
    assert records[0].key == driver.encode() and clip.alert_id == alert.alert_id
    assert recorder.stats.written == 1 and recorder.stats.replayed == 1
    assert stored is not None, (tmp_path / "aggregator.log").read_text()[-3000:]
    assert stored.sha256 == clip.sha256 and stored.frames == clip.frames == 26  # 2.5 s
    assert letters and letters[0].source_topic == EVENT_CLIPS.name
    assert letters[0].reason.value == "bad_schema"
    video = Path(stored.path)
    assert video.parent == clips_dir.resolve() and video.name == f"{alert.alert_id}.webm"
    detector = create_backend("opencv")
    capture = cv2.VideoCapture(str(video))
    frames = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames += 1
        assert detector.detect(frame, 0) == []
    capture.release()
    detector.close()
    assert frames == stored.frames
