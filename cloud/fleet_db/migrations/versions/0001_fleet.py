"""The fleet database: envelopes, stream positions and gaps, devices, quarantine, funnel
facts, device-day summaries and desired/reported config.

Revision ID: 0001_fleet
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001_fleet"
down_revision = None
branch_labels = ("fleet",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "desired_config",
        sa.Column("store_id", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column(
            "desired",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("set_at", sa.Float(), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column(
            "reported",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("reported_at", sa.Float(), nullable=True),
        sa.Column("reported_ok", sa.Boolean(), nullable=True),
        sa.Column("reported_detail", sa.Text(), nullable=True),
        sa.Column("reported_version", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("store_id", "device_id", "key"),
    )
    op.create_index("ix_desired_config_request", "desired_config", ["request_id"], unique=False)
    op.create_table(
        "device_days",
        sa.Column("store_id", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("payments", sa.Integer(), nullable=False),
        sa.Column("payments_twd", sa.BigInteger(), nullable=False),
        sa.Column("binding_qr_shown", sa.Integer(), nullable=False),
        sa.Column("binding_messages", sa.Integer(), nullable=False),
        sa.Column("new_friends", sa.Integer(), nullable=False),
        sa.Column("bound_members", sa.Integer(), nullable=False),
        sa.Column("coupons_replied", sa.Integer(), nullable=False),
        sa.Column("coupons_pushed", sa.Integer(), nullable=False),
        sa.Column("coupons_redeemed", sa.Integer(), nullable=False),
        sa.Column("linepay_fee_twd", sa.Float(), nullable=False),
        sa.Column("message_cost_twd", sa.Float(), nullable=False),
        sa.Column("envelope_id", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("store_id", "device_id", "day"),
    )
    op.create_table(
        "devices",
        sa.Column("store_id", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=True),
        sa.Column("status_ts", sa.Float(), nullable=True),
        sa.Column("agent_version", sa.String(length=64), nullable=True),
        sa.Column("protocol", sa.String(length=8), nullable=True),
        sa.Column("first_seen", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.Column("outbox_depth", sa.Integer(), nullable=True),
        sa.Column(
            "health",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("health_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("store_id", "device_id"),
    )
    op.create_table(
        "envelopes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("store_id", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("stream", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_envelopes_device_stream_seq",
        "envelopes",
        ["store_id", "device_id", "stream", "seq"],
        unique=False,
    )
    op.create_index("ix_envelopes_stream_ts", "envelopes", ["stream", "ts"], unique=False)
    op.create_table(
        "fleet_facts",
        sa.Column("fact_key", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("store_id", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.Column("line_user_id", sa.String(length=64), nullable=True),
        sa.Column("amount_twd", sa.BigInteger(), nullable=True),
        sa.Column("campaign", sa.String(length=64), nullable=True),
        sa.Column("envelope_id", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("fact_key"),
    )
    op.create_index("ix_fleet_facts_store_at", "fleet_facts", ["store_id", "at"], unique=False)
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("store_id", sa.String(length=32), nullable=True),
        sa.Column("device_id", sa.String(length=32), nullable=True),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "seq_gaps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("store_id", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("stream", sa.String(length=32), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("detected_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_seq_gaps_stream", "seq_gaps", ["store_id", "device_id", "stream"], unique=False)
    op.create_table(
        "stream_positions",
        sa.Column("store_id", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("stream", sa.String(length=32), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_ts", sa.Float(), nullable=True),
        sa.Column("last_received_at", sa.Float(), nullable=True),
        sa.Column("envelopes", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("missing", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("rewinds", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("store_id", "device_id", "stream"),
    )


def downgrade() -> None:
    op.drop_table("stream_positions")
    op.drop_table("seq_gaps")
    op.drop_table("quarantine")
    op.drop_table("fleet_facts")
    op.drop_table("envelopes")
    op.drop_table("devices")
    op.drop_table("device_days")
    op.drop_table("desired_config")
