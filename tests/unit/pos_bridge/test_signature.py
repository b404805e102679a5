"""LINE Pay signature vectors, computed independently with `openssl dgst -sha256 -hmac | base64`
from LINE's recipe Base64(HMAC-SHA256(secret, secret + path + payload + nonce))."""

from __future__ import annotations

import pytest

from pos_bridge.linepay import signature

SECRET = "a917ab6a2367b536f8e5a6e2977e06f4"


@pytest.mark.parametrize(
    ("path", "payload", "nonce", "expected"),
    [
        (  # POST: the exact JSON text sent
            "/v3/payments/request",
            '{"amount":100,"currency":"TWD","orderId":"order-1"}',
            "6b7d5a3f-6c0c-4e8a-9a51-3c3a0f2b7e11",
            "q+CVikewjj+DpvICjhzYXa49MXDEpXxC0J0CbEKga3A=",
        ),
        (  # GET without a query string, URL-encoded order id, timestamp nonce
            "/v4/payments/orders/A%2F1/check",
            "",
            "1700000000000",
            "R1cNljSagd8uKzXYYe6iefnW8DKqRqSime6pWY1QOE4=",
        ),
        (  # GET: the query string without "?"
            "/v3/payments",
            "orderId=o-1&transactionId=2026000000000000123",
            "nonce-xyz",
            "MihduJR0QGXiTq5IIETcCUY8c7u/rCkoKpsZHgDUKUE=",
        ),
        (  # UTF-8 body (Chinese product name, not \\u-escaped)
            "/v4/payments/oneTimeKeys/pay",
            '{"productName":"咖啡","amount":65}',
            "n1",
            "oMw/UcyQ7XSG3uHaAd0t6FIO02CVhqyo8NvRbJMxKwg=",
        ),
    ],
)
def test_signature_vectors(path: str, payload: str, nonce: str, expected: str) -> None:
    assert signature(SECRET, path, payload, nonce) == expected


def test_signature_depends_on_every_part() -> None:
    base = signature(SECRET, "/v3/payments/request", "{}", "n")
    assert signature(SECRET + "x", "/v3/payments/request", "{}", "n") != base
    assert signature(SECRET, "/v3/payments/request?", "{}", "n") != base
    assert signature(SECRET, "/v3/payments/request", "{ }", "n") != base
    assert signature(SECRET, "/v3/payments/request", "{}", "m") != base
