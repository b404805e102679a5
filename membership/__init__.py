"""The LINE Official Account membership domain.

Binding tokens and URLs, phone hashing, friend conversion, welcome coupons (policy, ledger, the
Messaging API client), funnel facts, member tags and the funnel report, and the beacon
greeting (`beacon_code`: the rotating device message; `greeting`: its policy; `greeter`: the
shell that answers a relayed `beacon` event). Imports only
`offline_queue` and `base`; what it needs from the device (the display, the sale behind an
order, the outbox) arrives through the ports in `membership.context`.
"""

__all__: list[str] = []
