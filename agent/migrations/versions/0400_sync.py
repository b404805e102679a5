"""Cloud sync: per-stream sequence numbers, and the live config set over MQTT.

Revision ID: 0400_sync
Revises: 0002_agent_runs
"""

import sqlalchemy as sa
from alembic import op

revision = "0400_sync"
down_revision = "0002_agent_runs"
branch_labels = ("sync",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_streams",
        sa.Column("stream", sa.String(32), primary_key=True),
        sa.Column("last_seq", sa.Integer, nullable=False),
    )
    op.create_table(
        "sync_seq",
        sa.Column("record_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("stream", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
    )
    op.create_table(
        "sync_live_config",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sync_live_config")
    op.drop_table("sync_seq")
    op.drop_table("sync_streams")
