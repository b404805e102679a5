"""Welcome coupons and the counter funnel (issue #9).

Pure policy (`_policy`), the ledger (`_ledger`), delivery through line-bot-sdk v3 (`_line`,
`_service`), redemption at the till (`_redeem`), tag rules (`_tags`) and the funnel (`_funnel`).
"""

from agent.coupons._funnel import (
    REPORT_KEYS,
    Fact,
    FactKind,
    FunnelRow,
    facts_since_blocking,
    funnel_rows,
    funnel_total,
    record_fact_blocking,
)
from agent.coupons._ledger import LedgerRow, LedgerState, RedeemStatus
from agent.coupons._policy import Answer, Outcome, classify, make_code, normalize_code
from agent.coupons._service import (
    PUSH_STREAM,
    CouponService,
    DeliveryResult,
    DeliveryStatus,
    WelcomeRequest,
    deliver_welcome,
    record_fact,
)
from agent.coupons._upstream import FUNNEL_STREAM, FunnelUpstream

__all__ = [
    "FUNNEL_STREAM",
    "PUSH_STREAM",
    "REPORT_KEYS",
    "Answer",
    "CouponService",
    "DeliveryResult",
    "DeliveryStatus",
    "Fact",
    "FactKind",
    "FunnelRow",
    "FunnelUpstream",
    "LedgerRow",
    "LedgerState",
    "Outcome",
    "RedeemStatus",
    "WelcomeRequest",
    "classify",
    "deliver_welcome",
    "facts_since_blocking",
    "funnel_rows",
    "funnel_total",
    "make_code",
    "normalize_code",
    "record_fact",
    "record_fact_blocking",
]
