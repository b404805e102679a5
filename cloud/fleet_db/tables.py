"""The fleet database's tables (SQLAlchemy Core), the same on PostgreSQL and SQLite.

The schema is made by the Alembic history in `cloud/fleet_db/migrations` (apart from the
device's); these definitions are what the code queries and must match the latest revision
(a test compares them). Times are epoch seconds (float), days are ISO dates in the report's
zone, JSON is JSONB on PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

__all__ = [
    "desired_config",
    "device_days",
    "devices",
    "envelopes",
    "fleet_facts",
    "metadata",
    "quarantine",
    "seq_gaps",
    "stream_positions",
]

metadata = MetaData()
Json = JSON().with_variant(JSONB(), "postgresql")
_ID = 32

# Every envelope ever received, once: the envelope id is the device-made idempotency key.
envelopes = Table(
    "envelopes",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("store_id", String(_ID), nullable=False),
    Column("device_id", String(_ID), nullable=False),
    Column("stream", String(32), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("ts", Float, nullable=False),
    Column("data", Json, nullable=False),
    Column("received_at", Float, nullable=False),
    Index("ix_envelopes_device_stream_seq", "store_id", "device_id", "stream", "seq"),
    Index("ix_envelopes_stream_ts", "stream", "ts"),
)

# Per (store, device, stream): the highest seq seen and how many seqs are still missing below it.
stream_positions = Table(
    "stream_positions",
    metadata,
    Column("store_id", String(_ID), primary_key=True),
    Column("device_id", String(_ID), primary_key=True),
    Column("stream", String(32), primary_key=True),
    Column("last_seq", BigInteger, nullable=False, server_default="0"),
    Column("last_ts", Float),
    Column("last_received_at", Float),
    Column("envelopes", BigInteger, nullable=False, server_default="0"),
    Column("missing", BigInteger, nullable=False, server_default="0"),
    Column("rewinds", Integer, nullable=False, server_default="0"),
)

# Seq ranges not (yet) received: split or removed when a late envelope fills them.
seq_gaps = Table(
    "seq_gaps",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("store_id", String(_ID), nullable=False),
    Column("device_id", String(_ID), nullable=False),
    Column("stream", String(32), nullable=False),
    Column("first_seq", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("detected_at", Float, nullable=False),
    Index("ix_seq_gaps_stream", "store_id", "device_id", "stream"),
)

# Every device ever seen: presence from its retained status / last will, health from its events.
devices = Table(
    "devices",
    metadata,
    Column("store_id", String(_ID), primary_key=True),
    Column("device_id", String(_ID), primary_key=True),
    Column("online", Boolean),
    Column("status_ts", Float),
    Column("agent_version", String(64)),
    Column("protocol", String(8)),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("outbox_depth", Integer),
    Column("health", Json),
    Column("health_at", Float),
)

# What could not be read as a v1 message, kept with the reason (never stops the worker).
quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("topic", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("reason", Text, nullable=False),
    Column("store_id", String(_ID)),
    Column("device_id", String(_ID)),
    Column("received_at", Float, nullable=False),
)

# Funnel facts read from live events (payments, conversions, coupons), one per fact key.
fleet_facts = Table(
    "fleet_facts",
    metadata,
    Column("fact_key", String(255), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("store_id", String(_ID), nullable=False),
    Column("device_id", String(_ID), nullable=False),
    Column("at", Float, nullable=False),
    Column("order_id", String(64)),
    Column("line_user_id", String(64)),
    Column("amount_twd", BigInteger),
    Column("campaign", String(64)),
    Column("envelope_id", String(36), nullable=False),
    Index("ix_fleet_facts_store_at", "store_id", "at"),
)

# The device's own closed-day funnel summary (`funnel` stream, type daily_summary): the truth
# for a closed day, replacing what the live facts say about it.
device_days = Table(
    "device_days",
    metadata,
    Column("store_id", String(_ID), primary_key=True),
    Column("device_id", String(_ID), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("payments", Integer, nullable=False),
    Column("payments_twd", BigInteger, nullable=False),
    Column("binding_qr_shown", Integer, nullable=False),
    Column("binding_messages", Integer, nullable=False),
    Column("new_friends", Integer, nullable=False),
    Column("bound_members", Integer, nullable=False),
    Column("coupons_replied", Integer, nullable=False),
    Column("coupons_pushed", Integer, nullable=False),
    Column("coupons_redeemed", Integer, nullable=False),
    Column("linepay_fee_twd", Float, nullable=False),
    Column("message_cost_twd", Float, nullable=False),
    Column("envelope_id", String(36), nullable=False),
)

# Cloud-desired live config per device and key, beside what the device reported back.
desired_config = Table(
    "desired_config",
    metadata,
    Column("store_id", String(_ID), primary_key=True),
    Column("device_id", String(_ID), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("desired", Json, nullable=False),
    Column("set_at", Float, nullable=False),
    Column("request_id", String(36), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("reported", Json),
    Column("reported_at", Float),
    Column("reported_ok", Boolean),
    Column("reported_detail", Text),
    Column("reported_version", String(64)),
    Index("ix_desired_config_request", "request_id"),
)
