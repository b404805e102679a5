"""SQLAlchemy Core tables of the coupons capability (created by migration 0600_coupons)."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Float, Integer, MetaData, String, Table, Text

__all__ = [
    "campaign_stops",
    "funnel_facts",
    "ledger",
    "member_tags",
    "metadata",
]

metadata = MetaData()

ledger = Table(
    "coupon_ledger",
    metadata,
    Column("campaign", String(32), primary_key=True),
    Column("line_user_id", String(64), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("channel", String(8)),
    Column("code", String(16), nullable=False, unique=True),
    Column("retry_key", String(36), nullable=False, unique=True),
    Column("store_id", String(32), nullable=False),
    Column("device_id", String(32), nullable=False),
    Column("order_id", String(64)),
    Column("reply_token", String(256)),
    Column("reply_ambiguous", Boolean, nullable=False, default=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("first_push_at", Float),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("sent_at", Float),
    Column("month", String(7)),
    Column("request_id", String(64)),
    Column("error", Text),
    Column("redeemed_at", Float),
    Column("redeemed_order_id", String(64)),
)

campaign_stops = Table(
    "coupon_campaign_stops",
    metadata,
    Column("campaign", String(32), primary_key=True),
    Column("month", String(7), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("stopped_at", Float, nullable=False),
)

funnel_facts = Table(
    "funnel_facts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("fact_key", String(200), nullable=False, unique=True),
    Column("kind", String(24), nullable=False),
    Column("store_id", String(32), nullable=False),
    Column("device_id", String(32), nullable=False),
    Column("at", Float, nullable=False),
    Column("order_id", String(64)),
    Column("line_user_id", String(64)),
    Column("amount_twd", Integer),
    Column("categories", Text),
    Column("campaign", String(32)),
)

member_tags = Table(
    "member_tags",
    metadata,
    Column("line_user_id", String(64), primary_key=True),
    Column("tag", String(40), primary_key=True),
    Column("assigned_at", Float, nullable=False),
)
