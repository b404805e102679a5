"""Beacon greetings: every beacon event handled (its webhookEventId once), each shopper's last
greeting per store (the cool-down), and the counters of rejected beacon events.

Revision ID: 0700_greetings
Revises: 0002_agent_runs
"""

import sqlalchemy as sa
from alembic import op

revision = "0700_greetings"
down_revision = "0002_agent_runs"
branch_labels = ("greetings",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "beacon_events",
        sa.Column("webhook_event_id", sa.String(64), primary_key=True),
        sa.Column("store_id", sa.String(32), nullable=False),
        sa.Column("device_id", sa.String(32), nullable=False),
        sa.Column("line_user_id", sa.String(64), nullable=False),
        sa.Column("hwid", sa.String(10), nullable=False),
        sa.Column("type", sa.String(8), nullable=False),
        sa.Column("reason", sa.String(24), nullable=False),
        sa.Column("greeting", sa.String(32), nullable=True),
        sa.Column("channel", sa.String(8), nullable=True),
        sa.Column("outcome", sa.String(24), nullable=True),
        sa.Column("month", sa.String(7), nullable=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("recorded_at", sa.Float, nullable=False),
    )
    op.create_index("ix_beacon_events_push", "beacon_events", ["greeting", "month", "channel"])
    op.create_table(
        "beacon_greeted",
        sa.Column("store_id", sa.String(32), primary_key=True),
        sa.Column("line_user_id", sa.String(64), primary_key=True),
        sa.Column("greeting", sa.String(32), nullable=False),
        sa.Column("last_greeted_at", sa.Float, nullable=False),
    )
    op.create_table(
        "beacon_rejections",
        sa.Column("reason", sa.String(24), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("last_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("beacon_rejections")
    op.drop_table("beacon_greeted")
    op.drop_index("ix_beacon_events_push", table_name="beacon_events")
    op.drop_table("beacon_events")
