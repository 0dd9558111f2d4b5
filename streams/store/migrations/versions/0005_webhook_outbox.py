"""Webhook outbox: deliveries carry their payload and schedule, so retries survive restarts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

Frozen copy of the columns at this revision (no imports from ``streams.store.models``).
``payload`` is the exact body that is signed and sent; ``next_attempt_at`` is when a pending
delivery is next due; ``retry_from`` is when its retry schedule started (creation, or the
last ``vigil webhooks redeliver``); ``claimed_until`` is a dispatcher's lease on a row it is
sending (a crashed dispatcher's lease runs out and another one takes the row over).

Rows still pending before this revision have no payload to send again: they become failed
with a reason, so that they show up in ``vigil webhooks list-failed`` instead of staying
pending forever.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ORPHANED = "pending before the outbox (migration 0005): no payload kept to send again"


def upgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(sa.Column("payload", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("next_attempt_at", sa.Double(), nullable=True))
        batch.add_column(sa.Column("retry_from", sa.Double(), nullable=True))
        batch.add_column(sa.Column("claimed_until", sa.Double(), nullable=True))
    op.create_index(
        "ix_webhook_deliveries_status_next_attempt_at",
        "webhook_deliveries",
        ["status", "next_attempt_at"],
    )
    deliveries = sa.table(
        "webhook_deliveries",
        sa.column("status", sa.String()),
        sa.column("last_error", sa.Text()),
        sa.column("created_at", sa.Double()),
        sa.column("retry_from", sa.Double()),
    )
    op.execute(deliveries.update().values(retry_from=deliveries.c.created_at))
    op.execute(
        deliveries.update()
        .where(deliveries.c.status == "pending")
        .values(status="failed", last_error=_ORPHANED)
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_status_next_attempt_at", "webhook_deliveries")
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_column("claimed_until")
        batch.drop_column("retry_from")
        batch.drop_column("next_attempt_at")
        batch.drop_column("payload")
