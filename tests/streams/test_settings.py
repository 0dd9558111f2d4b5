"""One settings scheme, VIGIL_<SECTION>__<FIELD>: variables named before it still configure
a deployment (with a warning), so an upgrade never silently drops a privacy or database
setting."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from dashboard.settings import DashboardSettings
from streams.event_clips import ClipSettings
from streams.store import DatabaseSettings


def test_former_names_still_set_the_database_clips_and_admin_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("VIGIL_DATABASE_URL", "postgresql://fleet@db.internal/vigil")
    monkeypatch.setenv("VIGIL_CLIPS_DIR", str(tmp_path / "old-clips"))
    monkeypatch.setenv("VIGIL_CLIP_RETENTION_DAYS", "1")
    monkeypatch.setenv("VIGIL_FLAGGED_CLIP_RETENTION_DAYS", "30")
    monkeypatch.setenv("VIGIL_BLUR_FACES", "false")
    monkeypatch.setenv("VIGIL_ADMIN_PASSWORD", "correct horse battery")
    with caplog.at_level(logging.WARNING, logger="streams.settings"):
        database, clips, dashboard = DatabaseSettings(), ClipSettings(), DashboardSettings()
    assert database.url.get_secret_value() == "postgresql+psycopg://fleet@db.internal/vigil"
    assert clips.directory == tmp_path / "old-clips"
    assert (clips.retention_days, clips.flagged_retention_days) == (1.0, 30.0)
    assert clips.blur_faces is False
    assert dashboard.admin_password is not None
    assert dashboard.admin_password.get_secret_value() == "correct horse battery"
    warned = caplog.text
    assert "rename it to VIGIL_DATABASE__URL" in warned
    assert "rename it to VIGIL_CLIPS__RETENTION_DAYS" in warned
    assert "rename it to VIGIL_DASHBOARD__ADMIN_PASSWORD" in warned
    assert "correct horse" not in warned and "fleet@" not in warned  # names, never values


def test_the_new_name_wins_over_a_former_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VIGIL_CLIP_RETENTION_DAYS", "30")
    monkeypatch.setenv("VIGIL_CLIPS__RETENTION_DAYS", "2")
    monkeypatch.setenv("VIGIL_DATABASE_URL", "sqlite:///old.db")
    monkeypatch.setenv("VIGIL_DATABASE__URL", f"sqlite:///{tmp_path / 'new.db'}")
    assert ClipSettings().retention_days == 2.0
    assert DatabaseSettings().url.get_secret_value() == f"sqlite:///{tmp_path / 'new.db'}"
