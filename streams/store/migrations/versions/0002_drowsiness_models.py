"""The learnt drowsiness estimate on window metrics; the model-version registry.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21

Frozen copy of the schema at this revision (no imports from ``streams.store.models``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
MODEL_STATUSES = "('candidate', 'promoted', 'retired', 'rolled_back')"
DROWSINESS_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("drowsiness_state", sa.String(length=16)),
    ("drowsiness_score", sa.Double()),
    ("drowsiness_kss", sa.Integer()),
    ("drowsiness_probabilities", JSON_DOC),
    ("drowsiness_model", sa.String(length=64)),
)


def upgrade() -> None:
    with op.batch_alter_table("window_metrics") as batch:
        for name, type_ in DROWSINESS_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
    op.create_table(
        "model_versions",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("parent", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("data_hash", sa.String(length=64), nullable=False),
        sa.Column("metrics", JSON_DOC, nullable=False),
        sa.Column("checkpoint", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("promoted_at", sa.Double(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint(f"status IN {MODEL_STATUSES}", name=op.f("ck_model_versions_status")),
        sa.PrimaryKeyConstraint("name", "version", name=op.f("pk_model_versions")),
    )
    op.create_index("ix_model_versions_name_status", "model_versions", ["name", "status"])


def downgrade() -> None:
    op.drop_index("ix_model_versions_name_status", table_name="model_versions")
    op.drop_table("model_versions")
    with op.batch_alter_table("window_metrics") as batch:
        for name, _ in reversed(DROWSINESS_COLUMNS):
            batch.drop_column(name)
