"""The membership adapters: the sale behind an order, read from the payments room's journal.

Membership and payments never import each other; the conversion asks `ctx.services
["sale_lookup"]` for the sale a binding token names, and this is the lookup the agent
registers there.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import Engine, bindparam, select

from membership.conversion import SaleFacts
from pos_bridge.journal import payments

__all__ = ["JournalSaleLookup"]

# Built once (every binding message asks): a reused statement skips SQLAlchemy's per-call
# construction and cache-key generation.
_SALE = (
    select(payments.c.amount, payments.c.paid_amount, payments.c.member_phone_hash)
    .where(payments.c.order_id == bindparam("w_order_id"))
    .order_by(payments.c.attempt.desc())
    .limit(1)
)


class JournalSaleLookup:
    """The sale behind an order, read from the payment journal (pos_bridge's `payments` table):
    the latest attempt's paid amount (else the requested amount) and its member phone hash."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def sale_facts(self, order_id: str) -> SaleFacts | None:
        return await asyncio.to_thread(self.sale_facts_blocking, order_id)

    def sale_facts_blocking(self, order_id: str) -> SaleFacts | None:
        with self.engine.connect() as conn:
            row = conn.execute(_SALE, {"w_order_id": order_id}).first()
        if row is None:
            return None
        amount = int(row.paid_amount or row.amount)
        return SaleFacts(amount_twd=amount, member_phone_hash=row.member_phone_hash)
