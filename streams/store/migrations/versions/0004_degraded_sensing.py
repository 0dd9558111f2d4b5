"""Degraded sensing on window metrics: seconds with untrusted eye state and the main reason.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

Frozen copy of the columns at this revision (no imports from ``streams.store.models``).
Windows stored before it read back as fully measured (0 s degraded, no reason), which is what
their aggregator knew. Alerts need nothing: their reason is a free string.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("window_metrics") as batch:
        batch.add_column(
            sa.Column("degraded_s", sa.Double(), nullable=False, server_default=sa.text("0"))
        )
        batch.add_column(sa.Column("sensing", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("window_metrics") as batch:
        batch.drop_column("sensing")
        batch.drop_column("degraded_s")
