"""Event clips: the (face-blurred) video file behind an alert, with retention tombstones.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

Frozen copy of the table at this revision (no imports from ``streams.store.models``). No FK
to alerts: a clip may be recorded before its alert. ``purged_at`` is set when retention
deletes the file; the row stays as a tombstone.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_clips",
        sa.Column("alert_id", sa.String(length=64), nullable=False),
        sa.Column("driver_id", sa.String(length=128), nullable=False),
        sa.Column("vehicle_id", sa.String(length=128), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("fps", sa.Double(), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("ended_at", sa.Double(), nullable=False),
        sa.Column("blurred", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("recorded_at", sa.Double(), nullable=False),
        sa.Column("purged_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("alert_id", name=op.f("pk_event_clips")),
    )
    op.create_index("ix_event_clips_created_at", "event_clips", ["created_at"])
    op.create_index(
        "ix_event_clips_driver_id_started_at", "event_clips", ["driver_id", "started_at"]
    )


def downgrade() -> None:
    op.drop_table("event_clips")
