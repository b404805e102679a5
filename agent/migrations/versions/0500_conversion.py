"""Friend conversions (one per sale) and counters of rejected binding messages.

Revision ID: 0500_conversion
Revises: 0002_agent_runs
"""

import sqlalchemy as sa
from alembic import op

revision = "0500_conversion"
down_revision = "0002_agent_runs"
branch_labels = ("conversion",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("store_id", sa.String(32), nullable=False),
        sa.Column("device_id", sa.String(32), nullable=False),
        sa.Column("order_id", sa.String(128), nullable=False),
        sa.Column("line_user_id", sa.String(64), nullable=False),
        sa.Column("amount_twd", sa.Integer, nullable=True),
        sa.Column("member_phone_hash", sa.String(64), nullable=True),
        sa.Column("is_new_follower", sa.Boolean, nullable=False),
        sa.Column("token_issued_at", sa.Integer, nullable=False),
        sa.Column("converted_at", sa.Float, nullable=False),
        sa.Column("recorded_at", sa.Float, nullable=False),
        sa.Column("webhook_event_id", sa.String(64), nullable=True),
        sa.Column("reply_token", sa.String(64), nullable=True),
        sa.UniqueConstraint("store_id", "device_id", "order_id", name="uq_conversions_sale"),
    )
    op.create_index("ix_conversions_converted_at", "conversions", ["converted_at"])
    op.create_index("ix_conversions_line_user_id", "conversions", ["line_user_id"])
    op.create_table(
        "binding_rejections",
        sa.Column("reason", sa.String(32), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("last_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("binding_rejections")
    op.drop_index("ix_conversions_line_user_id", "conversions")
    op.drop_index("ix_conversions_converted_at", "conversions")
    op.drop_table("conversions")
