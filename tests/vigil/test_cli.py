"""The `vigil` command line as a user runs it: real subprocesses, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from streams.store import Store


def vigil(*args: str, timeout: float = 120,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vigil", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )


def test_analyze_emits_one_json_object_per_frame(video_dir: Path) -> None:
    proc = vigil("analyze", str(video_dir / "single_face.mp4"), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["frame"] for r in rows] == list(range(72))
    last = rows[-1]
    for key in ("face_present", "closure", "ear_left", "openness_right", "blink_score_left",
                "mouth_open", "yaw", "pitch", "roll", "gaze_off_road", "au", "perclos", "events",
                "yawns"):
        assert key in last
    assert last["face_present"] and last["closure"] is not None


def test_blinks_emits_one_summary_object(video_dir: Path) -> None:
    proc = vigil("blinks", str(video_dir / "single_face.mp4"), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["fps"] == 30.0 and report["frames"] == 72
    assert {"blinks", "long_closures", "perclos", "blink_count", "yawns", "yawn_count"} <= (
        report.keys())
    assert (report["frames_declared"], report["frames_lost"], report["lost_spans"]) == (72, 0, [])
    assert "did not decode" not in proc.stderr


@pytest.mark.parametrize("command", ["analyze", "blinks"])
def test_bad_files_give_one_line_and_nonzero_exit(tmp_path: Path, command: str) -> None:
    for path, message in [
        (tmp_path / "missing.mp4", "no such file"),
        ((tmp_path / "e.mp4"), "empty file"),
        ((tmp_path / "t.mp4"), "not a readable video"),
    ]:
        if path.name == "e.mp4":
            path.write_bytes(b"")
        elif path.name == "t.mp4":
            path.write_text("hello")
        proc = vigil(command, str(path), "--json")
        assert proc.returncode == 2
        assert proc.stdout == ""
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("vigil: error:") and message in lines[0]
        assert "Traceback" not in proc.stderr


def test_unknown_engine_is_a_clear_error(video_dir: Path) -> None:
    proc = vigil("blinks", str(video_dir / "single_face.mp4"), "--engine", "nope")
    assert proc.returncode == 2
    assert "unknown face engine 'nope'" in proc.stderr and "mediapipe" in proc.stderr


READ_ONLY = [["models", "versions"], ["models", "versions", "--json"], ["db", "status"],
             ["clips", "purge", "--dry-run"], ["clips", "purge"], ["webhooks", "list-failed"],
             ["users", "list"]]


def test_read_only_commands_never_create_or_migrate_the_database(
    tmp_path: Path, pg_schema_url: str, pg_conn: psycopg.Connection
) -> None:
    """On a database that is not there, or not migrated, listings say so and exit non-zero;
    no file, no table appears. Once migrated, an empty registry lists as empty."""
    fresh = {"VIGIL_DATABASE__URL": f"sqlite:///{tmp_path / 'vigil.db'}",
             "VIGIL_CLIPS__DIRECTORY": str(tmp_path / "clips")}
    for args in [*READ_ONLY, ["models", "promote", "v1"]]:
        proc = vigil(*args, env=fresh)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "does not exist" in proc.stderr and "vigil db migrate" in proc.stderr, args
    assert list(tmp_path.iterdir()) == []

    schema = pg_schema_url.rsplit("%3D", 1)[1]
    empty = {**fresh, "VIGIL_DATABASE__URL": pg_schema_url}
    for args in READ_ONLY:
        proc = vigil(*args, env=empty)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "schema revision none" in proc.stderr and "vigil db migrate" in proc.stderr
    tables = pg_conn.execute("SELECT count(*) FROM information_schema.tables "
                             "WHERE table_schema = %s", (schema,)).fetchone()
    assert tables == (0,)

    with Store(pg_schema_url) as store:
        store.migrate()
    proc = vigil("models", "versions", env=empty)
    assert proc.returncode == 0 and proc.stdout == "", proc.stderr
    assert "no versions of 'drowsiness-blinks' are registered" in proc.stderr
    assert json.loads(vigil("db", "status", env=empty).stdout)["revision"]


def test_failed_webhooks_are_listed_and_redelivered_by_id_or_all(pg_schema_url: str) -> None:
    env = {"VIGIL_DATABASE__URL": pg_schema_url}
    with Store(pg_schema_url) as store:
        store.migrate()
        for alert_id in ("a1", "a2", "a3"):
            store.deliveries.enqueue(alert_id, ["ops"], b"{}")
        for alert_id in ("a1", "a2"):
            store.deliveries.mark_failed(alert_id, "ops", "gave up: url=https://ops.example/h?token=tk9")
        store.deliveries.mark_delivered("a3", "ops")
        listed = [json.loads(line) for line in vigil("webhooks", "list-failed", env=env)
                  .stdout.splitlines()]
        assert [(d["alert_id"], d["endpoint"]) for d in listed] == [("a1", "ops"), ("a2", "ops")]
        assert all("tk9" not in (d["last_error"] or "") for d in listed)

        proc = vigil("webhooks", "redeliver", "a1", env=env)
        assert proc.returncode == 0 and json.loads(proc.stdout) == {"redelivered": 1}
        proc = vigil("webhooks", "redeliver", "a3", env=env)  # delivered: never again
        assert proc.returncode == 2 and "never sent again" in proc.stderr
        assert vigil("webhooks", "redeliver", env=env).returncode == 2  # neither id nor --all
        proc = vigil("webhooks", "redeliver", "--all", env=env)
        assert json.loads(proc.stdout) == {"redelivered": 1}
        statuses = {d.alert_id: d.status.value for d in store.deliveries.find()}
        assert statuses == {"a1": "pending", "a2": "pending", "a3": "delivered"}
        assert vigil("webhooks", "list-failed", env=env).stdout == ""
