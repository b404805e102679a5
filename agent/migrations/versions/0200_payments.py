"""Payments journal: one row per LINE Pay attempt, and the POS API's idempotency keys.

A partial unique index lets an order have any number of failed or cancelled attempts but at
most one live one (created .. refunded), so one POS order maps to at most one charge.

Revision ID: 0200_payments
Revises: 0002_agent_runs
"""

import sqlalchemy as sa
from alembic import op

revision = "0200_payments"
down_revision = "0002_agent_runs"
branch_labels = ("payments",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payments",
        sa.Column("line_order_id", sa.String(100), primary_key=True),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("amount", sa.Integer, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("product_name", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("transaction_id", sa.String(32), nullable=True),
        sa.Column("payment_url", sa.Text, nullable=True),
        sa.Column("access_token", sa.String(32), nullable=True),
        sa.Column("paid_amount", sa.Integer, nullable=False, server_default="0"),
        sa.Column("refunded_amount", sa.Integer, nullable=False, server_default="0"),
        sa.Column("refund_pending", sa.Integer, nullable=False, server_default="0"),
        sa.Column("refund_base", sa.Integer, nullable=False, server_default="0"),
        sa.Column("fail_after_refund", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("sent_at", sa.Float, nullable=True),
        sa.Column("unknown_since", sa.Float, nullable=True),
        sa.Column("error_code", sa.String(32), nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("member_phone_hash", sa.String(64), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("outboxed_version", sa.Integer, nullable=False, server_default="-1"),
    )
    op.create_index("ix_payments_order", "payments", ["order_id", "attempt"], unique=True)
    op.create_index(
        "uq_payments_live_order",
        "payments",
        ["order_id"],
        unique=True,
        sqlite_where=sa.text("state NOT IN ('failed', 'cancelled')"),
    )
    op.create_index("ix_payments_state", "payments", ["state"])
    op.create_table(
        "payment_idempotency",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("line_order_id", sa.String(100), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("payment_idempotency")
    op.drop_index("ix_payments_state", table_name="payments")
    op.drop_index("uq_payments_live_order", table_name="payments")
    op.drop_index("ix_payments_order", table_name="payments")
    op.drop_table("payments")
