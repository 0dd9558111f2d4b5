"""The model-version registry: retrained checkpoints, which one is served, rollback.

Versions of a model are numbered v1, v2, ... in order of registration. At most one version
of a name is promoted (served); none promoted means the shipped weights are served.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, func, select, text, update

from streams.errors import InputError
from streams.store.database import Database, json_safe, now_or, required_text
from streams.store.errors import ModelVersionNotFoundError
from streams.store.models import MODELS, ModelStatus
from streams.store.results import ModelVersion

log = logging.getLogger(__name__)

_MODEL_COLUMNS = tuple(c for c in MODELS.columns if c.name != "checkpoint")
_PG_REGISTRY_LOCK = 0x56494D52  # "VIMR": serialises version numbering


class ModelVersionRepository:
    """Registered model versions and the served one."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def register(
        self, name: str, checkpoint: bytes, *, data_hash: str, metrics: Mapping[str, Any],
        parent: str | None = None, note: str | None = None, at: float | None = None,
    ) -> ModelVersion:
        """Stores a new version (status candidate, numbered after the newest) -> it."""
        required_text("model name", name)
        if not checkpoint:
            raise InputError("a model version needs its checkpoint bytes")
        row = {"name": name, "parent": parent, "created_at": now_or(at), "data_hash": data_hash,
               "metrics": json_safe(dict(metrics)), "checkpoint": checkpoint,
               "sha256": hashlib.sha256(checkpoint).hexdigest(),
               "status": ModelStatus.CANDIDATE.value, "note": note}
        with self.db.begin() as conn:
            if conn.dialect.name == "postgresql":  # two registrations must not share a number
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                             {"k": _PG_REGISTRY_LOCK})
            newest = conn.execute(select(func.max(MODELS.c.version))
                                  .where(MODELS.c.name == name)).scalar()
            row["version"] = (newest or 0) + 1
            conn.execute(MODELS.insert().values(**row))
        log.info("registered %s %s (parent %s)", name, _version_label(row["version"]), parent)
        return self.version(name, _version_label(row["version"]))

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest first."""
        q = select(*_MODEL_COLUMNS).where(MODELS.c.name == name).order_by(MODELS.c.version)
        with self.db.begin() as conn:
            return [_model_version(r) for r in conn.execute(q).all()]

    def version(self, name: str, version: str) -> ModelVersion:
        """One version without its weights (ModelVersionNotFoundError if unknown)."""
        number = _version_number(name, version)
        q = select(*_MODEL_COLUMNS).where(MODELS.c.name == name, MODELS.c.version == number)
        with self.db.begin() as conn:
            r = conn.execute(q).first()
        if r is None:
            raise ModelVersionNotFoundError(name, version)
        return _model_version(r)

    def checkpoint(self, name: str, version: str) -> bytes:
        """The checkpoint bytes of one version (ModelVersionNotFoundError if unknown)."""
        q = select(MODELS.c.checkpoint).where(MODELS.c.name == name,
                                              MODELS.c.version == _version_number(name, version))
        with self.db.begin() as conn:
            blob = conn.execute(q).scalar()
        if blob is None:
            raise ModelVersionNotFoundError(name, version)
        return bytes(blob)

    def promoted(self, name: str) -> tuple[str, bytes] | None:
        """(version, checkpoint bytes) of the version of ``name`` served now, or None (the
        shipped weights are served)."""
        q = select(MODELS.c.version, MODELS.c.checkpoint).where(
            MODELS.c.name == name, MODELS.c.status == ModelStatus.PROMOTED.value)
        with self.db.begin() as conn:
            r = conn.execute(q).first()
        return None if r is None else (_version_label(r.version), bytes(r.checkpoint))

    def promote(self, name: str, version: str, *, at: float | None = None) -> ModelVersion:
        """Serves ``version`` from now on; the one served before is retired (rollback returns
        to it). Promoting the served version again changes nothing."""
        number = _version_number(name, version)
        with self.db.begin() as conn:
            current = _lock_models(conn, name)
            if number not in current:
                raise ModelVersionNotFoundError(name, version)
            if current[number] != ModelStatus.PROMOTED.value:
                _set_served(conn, name, number, ModelStatus.RETIRED, now_or(at))
        return self.version(name, version)

    def rollback(self, name: str, *, at: float | None = None) -> ModelVersion | None:
        """Takes the served version out of service and serves the one promoted before it
        (-> that version), or the shipped weights when there is none (-> None). Raises
        InputError when no version is promoted."""
        with self.db.begin() as conn:
            current = _lock_models(conn, name)
            if ModelStatus.PROMOTED.value not in current.values():
                raise InputError(f"no version of {name!r} is promoted; nothing to roll back")
            previous = conn.execute(
                select(MODELS.c.version).where(MODELS.c.name == name,
                                               MODELS.c.status == ModelStatus.RETIRED.value)
                .order_by(MODELS.c.promoted_at.desc(), MODELS.c.version.desc()).limit(1)
            ).scalar()
            _set_served(conn, name, previous, ModelStatus.ROLLED_BACK, now_or(at))
        return None if previous is None else self.version(name, _version_label(previous))


def _lock_models(conn: Connection, name: str) -> dict[int, str]:
    """version -> status of ``name``, rows locked until the transaction ends."""
    q = select(MODELS.c.version, MODELS.c.status).where(MODELS.c.name == name)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    return {r.version: r.status for r in conn.execute(q).all()}


def _set_served(conn: Connection, name: str, number: int | None,
                former: ModelStatus, at: float) -> None:
    conn.execute(update(MODELS).where(MODELS.c.name == name,
                                      MODELS.c.status == ModelStatus.PROMOTED.value)
                 .values(status=former.value))
    if number is not None:
        conn.execute(update(MODELS).where(MODELS.c.name == name, MODELS.c.version == number)
                     .values(status=ModelStatus.PROMOTED.value, promoted_at=at))
    log.info("%s: now serving %s", name,
             "the shipped weights" if number is None else _version_label(number))


def _version_label(number: int) -> str:
    return f"v{number}"


def _version_number(name: str, version: str) -> int:
    """"v3" or "3" -> 3; anything else is a version that cannot exist."""
    digits = str(version).removeprefix("v")
    if not digits.isdigit():
        raise ModelVersionNotFoundError(name, version)
    return int(digits)


def _model_version(r: Any) -> ModelVersion:
    return ModelVersion(name=r.name, version=_version_label(r.version), parent=r.parent,
                        created_at=r.created_at, data_hash=r.data_hash, metrics=r.metrics,
                        sha256=r.sha256, status=r.status, promoted_at=r.promoted_at,
                        note=r.note)
