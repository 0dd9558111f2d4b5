"""Event clips outside the worker: their settings, and their retention.

Faces are biometric data: frames are processed and dropped; only the clips behind alerts are
kept, faces blurred by default (``workers.clip_recorder`` writes them), and only for a while: a clip
is deleted ``retention_days`` after it was written, or ``flagged_retention_days``
when an operator flagged its alert true or false positive (those clips feed retraining).

The purge runs from an aggregator timer (on the group's leader) and as ``vigil clips purge
[--dry-run]``. :class:`RetentionPolicy` decides (pure); :func:`purge_clips` deletes the
files, then marks their rows purged (tombstones: the dashboard says "clip expired", and a
replayed clip record cannot bring a row back). A file already gone is no error; a file that
cannot be deleted keeps its row live, so the next purge tries again. Files in the clip
directory that no live row claims (a worker stopped between writing and publishing, a
temporary file left by a crash) go once they are as old as an unflagged clip may get.

Settings (environment, prefix ``VIGIL_``, read by the worker, the aggregator, the CLI and the
dashboard alike, so one variable means the same everywhere)::

    VIGIL_CLIPS__DIRECTORY=/var/lib/vigil/clips   # default $XDG_DATA_HOME/vigil/clips
    VIGIL_CLIPS__BLUR_FACES=true                  # false keeps faces visible (an explicit choice)
    VIGIL_CLIPS__PRE_S=8  VIGIL_CLIPS__POST_S=2
    VIGIL_CLIPS__RETENTION_DAYS=7  VIGIL_CLIPS__FLAGGED_RETENTION_DAYS=90

The clip directory must be one the worker writes, and the aggregator and dashboard read
(the same host, or shared storage): rows carry the file's path. A path from a record is
trusted only as :func:`clip_path` names it (``<clips_dir>/<alert id>.webm``, symlinks
resolved): the sink refuses other records, the purge deletes no other file, and the dashboard
serves no other file.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from streams.errors import InputError
from streams.settings import VigilSettings, load_settings
from streams.store import Store, StoredClip
from streams.store.settings import default_database_path

log = logging.getLogger(__name__)

DAY_S = 86_400.0
CLIP_SUFFIX = ".webm"  # VP8 in WebM: what opencv-python-headless writes and browsers play
SIDECAR_SUFFIX = ".json"  # the clip's EventClip record, republished on a replayed alert


class UnsafePathError(InputError):
    """A path from a record or a setting that leads outside the directory it belongs in."""


def clip_path(clips_dir: Path, alert_id: str, path: str | Path | None = None) -> Path:
    """The clip file of ``alert_id``: ``<clips_dir>/<alert id>.webm``, resolved. ``path``, a
    record's claim (relative: to ``clips_dir``), must be that very file; UnsafePathError
    otherwise, or when the name leads elsewhere (``..``, a separator, a symlink out)."""
    root = Path(clips_dir).resolve()
    own = root / f"{alert_id}{CLIP_SUFFIX}"
    try:
        found = (root / (own if path is None else path)).resolve()
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a symlink loop
        found = root
    if found.parent != root or found.name != own.name:
        raise UnsafePathError(f"clip path {str(path or own)!r} of alert {alert_id!r} is not "
                              f"its file in the clip directory {str(root)!r}")
    return found


def default_clips_dir() -> Path:
    """Beside the embedded default database: ``$XDG_DATA_HOME/vigil/clips``."""
    return default_database_path().parent / "clips"


class ClipSettings(VigilSettings):
    """Event clips: capture (worker), retention (aggregator, CLI), where the files live."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_CLIPS__", extra="ignore")
    former_env_names: ClassVar[Mapping[str, str]] = {
        "VIGIL_CLIPS_DIR": "directory", "VIGIL_BLUR_FACES": "blur_faces",
        **{f"VIGIL_CLIP_{name.upper()}": name for name in (
            "pre_s", "post_s", "alert_latency_s", "post_grace_s", "face_margin", "max_width",
            "jpeg_quality", "max_frames", "max_bytes", "retention_days", "purge_every_s")},
        "VIGIL_FLAGGED_CLIP_RETENTION_DAYS": "flagged_retention_days",
    }

    directory: Path = Field(default_factory=default_clips_dir)
    # Frames before the alert's detection and after it that go into its clip.
    pre_s: float = Field(default=8.0, ge=0, le=60)
    post_s: float = Field(default=2.0, ge=0, le=30)
    # The ring buffer keeps this much more than pre_s: the alert reaches the worker
    # a little after the frame it was detected on.
    alert_latency_s: float = Field(default=4.0, ge=0, le=60)
    # Waiting for the post-alert frames ends after post_s plus this much (wall clock),
    # e.g. when the camera stopped: the clip is written with what there is.
    post_grace_s: float = Field(default=3.0, ge=0)
    blur_faces: bool = True
    # Each face box grows by this share of its size on every side before blurring.
    face_margin: float = Field(default=0.35, ge=0, le=2)
    # Buffered frames are at most this wide (downscaled, kept as JPEG of this quality).
    max_width: int = Field(default=480, ge=64, le=1920)
    jpeg_quality: int = Field(default=75, ge=30, le=100)
    # Per-driver ring bounds besides time: frames and bytes (whichever is hit first).
    max_frames: int = Field(default=400, ge=1)
    max_bytes: int = Field(default=12 * 1024 * 1024, ge=1024)
    retention_days: float = Field(default=7.0, gt=0)
    flagged_retention_days: float = Field(default=90.0, gt=0)
    purge_every_s: float = Field(default=3600.0, gt=0)

    @property
    def buffer_s(self) -> float:
        """The time span one driver's ring buffer holds."""
        return self.pre_s + self.alert_latency_s + self.post_s


@dataclass(frozen=True)
class RetentionPolicy:
    """How long clips live, in seconds from when they were written."""

    retention_s: float
    flagged_retention_s: float

    @classmethod
    def from_settings(cls, settings: ClipSettings) -> RetentionPolicy:
        return cls(settings.retention_days * DAY_S,
                   settings.flagged_retention_days * DAY_S)

    def cutoffs(self, now: float) -> tuple[float, float]:
        """(unflagged clips created before this are expired, flagged ones before this)."""
        return now - self.retention_s, now - self.flagged_retention_s

    def expired(self, created_at: float, flagged: bool, now: float) -> bool:
        limit = self.flagged_retention_s if flagged else self.retention_s
        return now - created_at > limit


@dataclass
class PurgeReport:
    """What a purge did (or, dry, would do)."""

    dry_run: bool
    expired: list[str] = field(default_factory=list)  # alert ids whose clips expired
    deleted_files: int = 0
    missing_files: int = 0  # expired clips whose file was gone already
    failed: list[str] = field(default_factory=list)  # alert ids whose file stayed
    orphans: list[str] = field(default_factory=list)  # file names no live row claims
    # Expired rows whose path is not their clip file (forged or foreign): no file deleted.
    refused: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def clip_files(video: Path) -> tuple[Path, Path]:
    """(the video, its sidecar record)."""
    return video, video.with_suffix(SIDECAR_SUFFIX)


def delete_clip(video: Path) -> bool:
    """Deletes a clip's video and sidecar. True if the video was there; False if it was gone
    already (not an error). Other OS errors propagate."""
    existed = True
    for i, path in enumerate(clip_files(video)):
        try:
            path.unlink()
        except FileNotFoundError:
            if i == 0:
                existed = False
    return existed


def purge_clips(store: Store, settings: ClipSettings | None = None, *,
                now: float | None = None, dry_run: bool = False) -> PurgeReport:
    """Deletes expired clips (files, then rows marked purged) and old orphan files."""
    settings = settings or load_settings(ClipSettings)
    now = time.time() if now is None else now
    policy = RetentionPolicy.from_settings(settings)
    report = PurgeReport(dry_run=dry_run)
    unflagged_before, flagged_before = policy.cutoffs(now)
    expired = [c for c in store.clips.expired(unflagged_before, flagged_before)
               if policy.expired(c.created_at, c.flag is not None, now)]
    report.expired = [c.alert_id for c in expired]
    gone = []
    for clip in expired:
        try:
            video = clip_path(settings.directory, clip.alert_id, clip.path)
        except UnsafePathError as exc:
            log.error("clip purge: no file deleted for alert %s: %s", clip.alert_id, exc)
            report.refused.append(clip.alert_id)
            gone.append(clip.alert_id)  # its row expires all the same
            continue
        if dry_run:
            continue
        try:
            existed = delete_clip(video)
        except OSError as exc:
            log.error("clip of alert %s: cannot delete %s: %s", clip.alert_id, clip.path, exc)
            report.failed.append(clip.alert_id)
            continue
        report.deleted_files += existed
        report.missing_files += not existed
        gone.append(clip.alert_id)
    if not dry_run:
        store.clips.purge(gone, at=now)
    report.orphans = _sweep_orphans(store, settings.directory, unflagged_before, dry_run)
    if report.expired or report.orphans:
        log.info("clip purge%s: %d expired (%d files deleted, %d already gone, %d failed), "
                 "%d orphan files", " (dry run)" if dry_run else "", len(report.expired),
                 report.deleted_files, report.missing_files, len(report.failed),
                 len(report.orphans))
    return report


def temp_name(alert_id: str, token: str, suffix: str) -> str:
    """A file being written for ``alert_id`` (hidden, renamed into place when complete)."""
    return f".{alert_id}.{token}.tmp{suffix}"


# Every name the worker gives a file in the clip directory (see temp_name); the purge deletes
# no other file, whatever the directory holds.
_CLIP_NAME = re.compile(rf"(?:[^.]+|\.[^.]+\.[0-9a-f]+\.tmp)"
                        rf"(?:{re.escape(CLIP_SUFFIX)}|{re.escape(SIDECAR_SUFFIX)})")


def _alert_id_of(name: str) -> str:
    """The alert id a clip directory entry belongs to: ``ID.webm``, ``ID.json``, and the
    worker's temporary ``.ID.TOKEN.tmp.webm`` files."""
    return name.lstrip(".").split(".", 1)[0]


def _sweep_orphans(store: Store, clips_dir: Path, before: float, dry_run: bool) -> list[str]:
    try:
        entries = list(os.scandir(clips_dir))
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("clip purge: cannot list %s: %s", clips_dir, exc)
        return []
    live: dict[str, StoredClip | None] = {}
    swept = []
    for entry in sorted(entries, key=lambda e: e.name):
        if not _CLIP_NAME.fullmatch(entry.name):
            continue
        try:
            if not entry.is_file(follow_symlinks=False) or entry.stat().st_mtime >= before:
                continue
        except OSError:
            continue
        alert = _alert_id_of(entry.name)
        if alert not in live:
            live[alert] = store.clips.for_alert(alert)
        clip = live[alert]
        temporary = entry.name.startswith(".")
        if not temporary and clip is not None and not clip.purged:
            continue  # a live clip's own file or sidecar (flagged: kept longer)
        swept.append(entry.name)
        if not dry_run:
            try:
                Path(entry.path).unlink(missing_ok=True)
            except OSError as exc:
                log.error("clip purge: cannot delete orphan %s: %s", entry.path, exc)
    return swept
