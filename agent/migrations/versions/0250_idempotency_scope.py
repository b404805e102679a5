"""Payments: Idempotency-Keys get a scope (payment or refund), so the two can never collide.

Before, refund keys shared the key column with a `refund:` prefix, and a payment sent with
`Idempotency-Key: refund:K` matched the refund sent with `K`. Rows keep their meaning: a
stored `refund:K` becomes scope refund, key K (exactly what the old lookups matched); every
other row becomes scope payment. SQLite cannot change a primary key in place, so the table is
rebuilt.

Revision ID: 0250_idempotency_scope
Revises: 0200_payments
"""

import sqlalchemy as sa
from alembic import op

revision = "0250_idempotency_scope"
down_revision = "0200_payments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payment_idempotency_scoped",
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("line_order_id", sa.String(100), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.execute(
        "INSERT INTO payment_idempotency_scoped (scope, key, request_hash, order_id, line_order_id, created_at) "
        "SELECT CASE WHEN key LIKE 'refund:%' THEN 'refund' ELSE 'payment' END, "
        "CASE WHEN key LIKE 'refund:%' THEN substr(key, 8) ELSE key END, "
        "request_hash, order_id, line_order_id, created_at FROM payment_idempotency"
    )
    op.drop_table("payment_idempotency")
    op.rename_table("payment_idempotency_scoped", "payment_idempotency")


def downgrade() -> None:
    op.create_table(
        "payment_idempotency_flat",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("line_order_id", sa.String(100), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    # A payment key that itself starts with `refund:` would clash with a refund key here: the
    # refund's row wins (OR IGNORE keeps the first inserted), as it did before the split.
    op.execute(
        "INSERT OR IGNORE INTO payment_idempotency_flat (key, request_hash, order_id, line_order_id, created_at) "
        "SELECT CASE WHEN scope = 'refund' THEN 'refund:' || key ELSE key END, "
        "request_hash, order_id, line_order_id, created_at FROM payment_idempotency ORDER BY scope DESC"
    )
    op.drop_table("payment_idempotency")
    op.rename_table("payment_idempotency_flat", "payment_idempotency")
