"""Coupons: the welcome-coupon ledger, campaign stops, funnel facts and member tags.

Revision ID: 0600_coupons
Revises: 0002_agent_runs
"""

import sqlalchemy as sa
from alembic import op

revision = "0600_coupons"
down_revision = "0002_agent_runs"
branch_labels = ("coupons",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "coupon_ledger",
        sa.Column("campaign", sa.String(32), primary_key=True),
        sa.Column("line_user_id", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(8), nullable=True),
        sa.Column("code", sa.String(16), nullable=False, unique=True),
        sa.Column("retry_key", sa.String(36), nullable=False, unique=True),
        sa.Column("store_id", sa.String(32), nullable=False),
        sa.Column("device_id", sa.String(32), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=True),
        sa.Column("reply_token", sa.String(256), nullable=True),
        sa.Column("reply_ambiguous", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("first_push_at", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("sent_at", sa.Float, nullable=True),
        sa.Column("month", sa.String(7), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("redeemed_at", sa.Float, nullable=True),
        sa.Column("redeemed_order_id", sa.String(64), nullable=True),
    )
    op.create_index("ix_coupon_ledger_state", "coupon_ledger", ["state"])
    op.create_index("ix_coupon_ledger_month", "coupon_ledger", ["campaign", "month", "channel"])
    op.create_table(
        "coupon_campaign_stops",
        sa.Column("campaign", sa.String(32), primary_key=True),
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("stopped_at", sa.Float, nullable=False),
    )
    op.create_table(
        "funnel_facts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("fact_key", sa.String(200), nullable=False, unique=True),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("store_id", sa.String(32), nullable=False),
        sa.Column("device_id", sa.String(32), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("order_id", sa.String(64), nullable=True),
        sa.Column("line_user_id", sa.String(64), nullable=True),
        sa.Column("amount_twd", sa.Integer, nullable=True),
        sa.Column("categories", sa.Text, nullable=True),
        sa.Column("campaign", sa.String(32), nullable=True),
    )
    op.create_index("ix_funnel_facts_at", "funnel_facts", ["at"])
    op.create_table(
        "member_tags",
        sa.Column("line_user_id", sa.String(64), primary_key=True),
        sa.Column("tag", sa.String(40), primary_key=True),
        sa.Column("assigned_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("member_tags")
    op.drop_index("ix_funnel_facts_at", "funnel_facts")
    op.drop_table("funnel_facts")
    op.drop_table("coupon_campaign_stops")
    op.drop_index("ix_coupon_ledger_month", "coupon_ledger")
    op.drop_index("ix_coupon_ledger_state", "coupon_ledger")
    op.drop_table("coupon_ledger")
