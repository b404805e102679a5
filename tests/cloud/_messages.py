"""Device-shaped uplink messages for the cloud tests (the device's own encoder and topics)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from base.envelope import Envelope, encode_message, format_ts
from base.topics import status_topic, up_topic

NS = uuid.UUID("6f1c2d0e-3a4b-4c5d-8e9f-0a1b2c3d4e5f")


def envelope(
    stream: str,
    seq: int,
    data: dict[str, Any],
    *,
    device: str = "counter-1",
    store: str = "store-001",
    ts: float = 1_764_500_000.0,
) -> Envelope:
    return Envelope(
        id=str(uuid.uuid5(NS, f"{store}/{device}/{stream}/{seq}")),
        kind=stream,
        ts=format_ts(ts),
        seq=seq,
        data=data,
    )


def message(*envelopes: Envelope, store: str = "store-001", device: str = "counter-1") -> tuple[str, bytes]:
    return up_topic(store, device, envelopes[0].kind), encode_message(list(envelopes))


def status(
    state: str, ts: float, *, store: str = "store-001", device: str = "counter-1", version: str = "0.1.0"
) -> tuple[str, bytes]:
    body = {
        "state": state,
        "store_id": store,
        "device_id": device,
        "agent_version": version,
        "protocol": "5",
        "ts": format_ts(ts),
    }
    return status_topic(store, device), json.dumps(body).encode()


def payment(order: str, amount: int, at: float) -> dict[str, Any]:
    return {
        "order_id": order,
        "line_order_id": order,
        "method": "qr",
        "amount": amount,
        "currency": "TWD",
        "product_name": "latte",
        "state": "paid",
        "created_at": at,
        "version": 3,
        "paid_amount": amount,
    }


def conversion(order: str, user: str, at: float, *, new: bool = True, amount: int = 120) -> dict[str, Any]:
    return {
        "store_id": "store-001",
        "device_id": "counter-1",
        "order_id": order,
        "line_user_id": user,
        "amount_twd": amount,
        "member_phone_hash": None,
        "is_new_follower": new,
        "token_issued_at": int(at) - 30,
        "converted_at": at,
        "recorded_at": at,
        "webhook_event_id": "01H" + order,
    }
