"""Initial schema.

Vehicles, drivers, window metrics, alerts and their flags, webhook deliveries and attempts,
dead letters.

Revision ID: 0001
Revises:
Create Date: 2026-11-21

Frozen copy of the schema at this revision (no imports from ``streams.store.models``, which
will move on). Timestamps are epoch seconds in DOUBLE PRECISION; JSON is JSONB on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ID = sa.String(length=128)
ALERT_ID = sa.String(length=64)
FLAGS = "('true_positive', 'false_positive')"


def upgrade() -> None:
    op.create_table(
        "vehicles",
        sa.Column("vehicle_id", ID, nullable=False),
        sa.Column("first_seen", sa.Double(), nullable=False),
        sa.Column("last_seen", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("vehicle_id", name=op.f("pk_vehicles")),
    )
    op.create_table(
        "drivers",
        sa.Column("driver_id", ID, nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("vehicle_id", ID, nullable=False),
        sa.Column("first_seen", sa.Double(), nullable=False),
        sa.Column("last_seen", sa.Double(), nullable=False),
        sa.Column("last_state", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("driver_id", name=op.f("pk_drivers")),
    )
    op.create_table(
        "window_metrics",
        sa.Column("driver_id", ID, nullable=False),
        sa.Column("window_start", sa.Double(), nullable=False),
        sa.Column("vehicle_id", ID, nullable=False),
        sa.Column("window_end", sa.Double(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("face_frames", sa.Integer(), nullable=False),
        sa.Column("perclos", sa.Double(), nullable=True),
        sa.Column("blink_count", sa.Integer(), nullable=False),
        sa.Column("blink_rate_per_min", sa.Double(), nullable=True),
        sa.Column("blink_duration_mean_s", sa.Double(), nullable=True),
        sa.Column("blink_duration_max_s", sa.Double(), nullable=True),
        sa.Column("long_closures", sa.Integer(), nullable=False),
        sa.Column("yawns", sa.Integer(), nullable=False),
        sa.Column("off_road_s", sa.Double(), nullable=False),
        sa.Column("au_rates", JSON_DOC, nullable=False),
        sa.Column("fatigue_score", sa.Double(), nullable=True),
        sa.Column("kss", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("driver_id", "window_start", name=op.f("pk_window_metrics")),
    )
    op.create_table(
        "alerts",
        sa.Column("alert_id", ALERT_ID, nullable=False),
        sa.Column("driver_id", ID, nullable=False),
        sa.Column("vehicle_id", ID, nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("detected_at", sa.Double(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("evidence", JSON_DOC, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("acked_at", sa.Double(), nullable=True),
        sa.Column("acked_by", sa.Text(), nullable=True),
        sa.Column("resolved_at", sa.Double(), nullable=True),
        sa.Column("resolved_by", sa.Text(), nullable=True),
        sa.Column("flag", sa.String(length=16), nullable=True),
        sa.Column("flagged_at", sa.Double(), nullable=True),
        sa.Column("flagged_by", sa.Text(), nullable=True),
        sa.CheckConstraint(f"flag IN {FLAGS}", name=op.f("ck_alerts_flag")),
        sa.CheckConstraint("state IN ('open', 'acked', 'resolved')", name=op.f("ck_alerts_state")),
        sa.PrimaryKeyConstraint("alert_id", name=op.f("pk_alerts")),
    )
    op.create_index("ix_alerts_detected_at", "alerts", ["detected_at"])
    op.create_index("ix_alerts_driver_id_detected_at", "alerts", ["driver_id", "detected_at"])
    op.create_index("ix_alerts_flag", "alerts", ["flag"])
    op.create_index("ix_alerts_state_detected_at", "alerts", ["state", "detected_at"])

    op.create_table(
        "alert_flags",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("alert_id", ALERT_ID, nullable=False),
        sa.Column("label", sa.String(length=16), nullable=False),
        sa.Column("flagged_by", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("flagged_at", sa.Double(), nullable=False),
        sa.CheckConstraint(f"label IN {FLAGS}", name=op.f("ck_alert_flags_label")),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.alert_id"],
            name=op.f("fk_alert_flags_alert_id_alerts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_flags")),
    )
    op.create_index("ix_alert_flags_alert_id_flagged_at", "alert_flags", ["alert_id", "flagged_at"])

    op.create_table(
        "webhook_deliveries",
        sa.Column("alert_id", ALERT_ID, nullable=False),
        sa.Column("endpoint", sa.String(length=512), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("delivered_at", sa.Double(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')",
            name=op.f("ck_webhook_deliveries_status"),
        ),
        sa.PrimaryKeyConstraint("alert_id", "endpoint", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index("ix_webhook_deliveries_status", "webhook_deliveries", ["status"])

    op.create_table(
        "webhook_attempts",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("alert_id", ALERT_ID, nullable=False),
        sa.Column("endpoint", sa.String(length=512), nullable=False),
        sa.Column("attempt_no", sa.Integer(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id", "endpoint"],
            ["webhook_deliveries.alert_id", "webhook_deliveries.endpoint"],
            name=op.f("fk_webhook_attempts_alert_id_webhook_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
    )
    op.create_index(
        "ix_webhook_attempts_alert_id_endpoint",
        "webhook_attempts",
        ["alert_id", "endpoint", "attempt_no"],
    )

    op.create_table(
        "dead_letters",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("source_topic", sa.String(length=255), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.Text(), nullable=True),
        sa.Column("failed_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint(
            "source_topic",
            "partition",
            "offset",
            "reason",
            name=op.f("uq_dead_letters_source_topic_partition_offset_reason"),
        ),
    )
    op.create_index("ix_dead_letters_failed_at", "dead_letters", ["failed_at"])


def downgrade() -> None:
    for table in (
        "dead_letters",
        "webhook_attempts",
        "webhook_deliveries",
        "alert_flags",
        "alerts",
        "window_metrics",
        "drivers",
        "vehicles",
    ):
        op.drop_table(table)
