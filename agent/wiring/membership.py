"""The membership adapters: the sale behind an order, read from the payments room's journal.

Membership and payments never import each other; the conversion asks `ctx.services
["sale_lookup"]` for the sale a binding token names, and this is the lookup the agent
registers there.
"""

from __future__ import annotations

import asyncio

from base.statedb import StateDB
from membership.conversion import SaleFacts

__all__ = ["JournalSaleLookup"]

_SALE = (
    "SELECT amount, paid_amount, member_phone_hash FROM payments WHERE order_id = ?"
    " ORDER BY attempt DESC LIMIT 1"
)


class JournalSaleLookup:
    """The sale behind an order, read from the payment journal (pos_bridge's `payments` table):
    the latest attempt's paid amount (else the requested amount) and its member phone hash."""

    def __init__(self, db: StateDB) -> None:
        self.db = db

    async def sale_facts(self, order_id: str) -> SaleFacts | None:
        return await asyncio.to_thread(self.sale_facts_blocking, order_id)

    def sale_facts_blocking(self, order_id: str) -> SaleFacts | None:
        with self.db.transaction() as conn:
            row = conn.execute(_SALE, (order_id,)).fetchone()
        if row is None:
            return None
        amount, paid_amount, member_phone_hash = row
        return SaleFacts(amount_twd=int(paid_amount or amount), member_phone_hash=member_phone_hash)
