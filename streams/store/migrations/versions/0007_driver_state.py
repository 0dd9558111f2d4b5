"""The aggregator's decision on each window: the driver state it says and the reasons behind it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

Frozen copy of the columns at this revision (no imports from ``streams.store.models``).
``state`` holds a ``streams.schemas.DriverState`` value, ``state_reasons`` a JSON list of
``StateReason`` values (no CHECK: a new state or reason needs no migration). Windows stored
before this revision keep NULL in both: nobody decided their state, and the dashboard shows it
as unknown rather than deciding it afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("window_metrics") as batch:
        batch.add_column(sa.Column("state", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("state_reasons", JSON_DOC, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("window_metrics") as batch:
        batch.drop_column("state_reasons")
        batch.drop_column("state")
