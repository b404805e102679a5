"""Welcome coupons and the counter funnel (issue #9).

Pure policy (`_policy`), the ledger (`_ledger`), delivery through a small typed Messaging API
client (`_line_http`, `_service`), redemption at the till (`_redeem`, mounted with
`add_coupon_routes`), tag rules (`_tags`), the funnel (`_funnel`, `_report`, and `_upstream`
for the daily summary) and the demo steps (`demo_steps`). Other capabilities feed the funnel
with `record_fact`; the binding flow calls `deliver_welcome`.
"""

from membership.coupons._funnel import (
    REPORT_KEYS,
    Fact,
    FactKind,
    FunnelRow,
    facts_since_blocking,
    funnel_rows,
    funnel_total,
    parse_since,
    record_fact_blocking,
    record_facts_blocking,
)
from membership.coupons._ledger import LedgerRow, LedgerState, RedeemStatus
from membership.coupons._line_http import CouponsError, LineRefused
from membership.coupons._policy import (
    Answer,
    Budget,
    BudgetVerdict,
    Outcome,
    budget_verdict,
    classify,
    make_code,
    normalize_code,
)
from membership.coupons._redeem import REDEEM_PATH, add_coupon_routes
from membership.coupons._service import (
    PUSH_STREAM,
    CouponService,
    DeliveryResult,
    DeliveryStatus,
    ServiceNotRunning,
    WelcomeRequest,
    deliver_welcome,
    record_fact,
    record_facts,
)
from membership.coupons._upstream import FUNNEL_STREAM, FunnelUpstream

__all__ = [
    "FUNNEL_STREAM",
    "PUSH_STREAM",
    "REDEEM_PATH",
    "REPORT_KEYS",
    "Answer",
    "Budget",
    "BudgetVerdict",
    "CouponService",
    "CouponsError",
    "DeliveryResult",
    "DeliveryStatus",
    "Fact",
    "FactKind",
    "FunnelRow",
    "FunnelUpstream",
    "LedgerRow",
    "LedgerState",
    "LineRefused",
    "Outcome",
    "RedeemStatus",
    "ServiceNotRunning",
    "WelcomeRequest",
    "add_coupon_routes",
    "budget_verdict",
    "classify",
    "deliver_welcome",
    "facts_since_blocking",
    "funnel_rows",
    "funnel_total",
    "make_code",
    "normalize_code",
    "parse_since",
    "record_fact",
    "record_fact_blocking",
    "record_facts",
    "record_facts_blocking",
]
