"""Dashboard logins: local operators with a role and a salted scrypt password hash.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26

Frozen copy of the columns at this revision (no imports from ``streams.store.models``).
The table starts empty: the dashboard (or ``vigil demo``) creates the first admin.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES = "('viewer', 'operator', 'admin')"


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("last_login_at", sa.Double(), nullable=True),
        sa.Column("failed_logins", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("locked_until", sa.Double(), nullable=True),
        sa.CheckConstraint(f"role IN {ROLES}", name=op.f("ck_operators_role")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_operators")),
    )


def downgrade() -> None:
    op.drop_table("operators")
