"""Where each window's fatigue score and AU rates came from: the rules and blendshape proxies,
or the learnt network (MODEL@VERSION) the workers served.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

Frozen copy of the columns at this revision (no imports from ``streams.store.models``).
Windows stored before this revision keep NULL: their figures came from the rules and the
blendshape proxies, the only sources there were, but nobody recorded it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("window_metrics") as batch:
        batch.add_column(sa.Column("fatigue_source", sa.String(length=96), nullable=True))
        batch.add_column(sa.Column("au_source", sa.String(length=96), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("window_metrics") as batch:
        batch.drop_column("au_source")
        batch.drop_column("fatigue_source")
