"""Outbox: the durable offline queue (`offline_queue`), its dedupe keys and its dead letters.

Revision ID: 0100_outbox
Revises: 0002_agent_runs
"""

import sqlalchemy as sa
from alembic import op

revision = "0100_outbox"
down_revision = "0002_agent_runs"
branch_labels = ("outbox",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("stream", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("dedupe_key", sa.String(255), nullable=True),
        sa.Column("durability", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("not_before", sa.Float, nullable=False, server_default="0"),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("nbytes", sa.Integer, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_outbox_stream_id", "outbox", ["stream", "id"])
    op.create_index("ix_outbox_durability_id", "outbox", ["durability", "id"])
    op.create_table(
        "outbox_keys",
        sa.Column("stream", sa.String(64), primary_key=True),
        sa.Column("dedupe_key", sa.String(255), primary_key=True),
        sa.Column("record_id", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "outbox_dead",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("stream", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("dedupe_key", sa.String(255), nullable=True),
        sa.Column("durability", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("failed_at", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("nbytes", sa.Integer, nullable=False),
    )
    op.create_index("ix_outbox_dead_stream_id", "outbox_dead", ["stream", "id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_dead_stream_id", "outbox_dead")
    op.drop_table("outbox_dead")
    op.drop_table("outbox_keys")
    op.drop_index("ix_outbox_durability_id", "outbox")
    op.drop_index("ix_outbox_stream_id", "outbox")
    op.drop_table("outbox")
