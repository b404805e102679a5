"""The LINE Pay emulator checks signatures with its own implementation of LINE's formula.

The vectors were computed outside Python, with OpenSSL:
    printf '%s' "$SECRET$PATH$BODY_OR_QUERY$NONCE" | openssl dgst -sha256 -hmac "$SECRET" -binary | base64
so neither the emulator nor the client's `pos_bridge.linepay.signature` is checked against itself.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import aiohttp
import pytest

from emulators.linepay import EmulatorServer
from emulators.linepay._app import documented_signature
from pos_bridge.linepay import signature as client_signature
from tests.integration.payments.conftest import CHANNEL_ID, CHANNEL_SECRET

PAY_BODY = '{"amount":100,"currency":"TWD","orderId":"ORDER-1","productName":"tea","oneTimeKey":"123456789012345678"}'
VECTORS = [  # (api path, body or query string, nonce, openssl's answer)
    (
        "/v4/payments/oneTimeKeys/pay",
        PAY_BODY,
        "d9f2b1e4-2f3c-4c1a-9a7e-6b1d2c3e4f50",
        "osSXe2G1wogTEBemybYuVZTCd/ntXnZxKPcqFuLPCvA=",
    ),
    (
        "/v4/payments/orders/ORDER-1/check",
        "",
        "d9f2b1e4-2f3c-4c1a-9a7e-6b1d2c3e4f51",
        "TUCPdlYLk+BcluGSHgXPCwlvH5FwoSqQjmT9f0WIthQ=",
    ),
    (
        "/v3/payments",
        "orderId=ORDER-1&transactionId=2024000000000000001",
        "1700000000000",
        "4xa25cttwI0aXz/p6zXNPdZ1Y8+dNV9anOxAy3yk+CY=",
    ),
    (
        "/v3/payments/request",
        '{"productName":"珍珠奶茶","amount":60}',
        "nonce-中",
        "q8dJgZ7rzz5+yh6TZC7Hdgh1+fkljxIZN7o8VeENZIw=",
    ),
]


@pytest.mark.parametrize(("path", "payload", "nonce", "expected"), VECTORS)
def test_emulator_signature_matches_openssl(path: str, payload: str, nonce: str, expected: str) -> None:
    assert documented_signature(CHANNEL_SECRET, path, payload, nonce) == expected
    assert client_signature(CHANNEL_SECRET, path, payload, nonce) == expected  # the client agrees


def test_emulator_imports_no_production_code() -> None:
    production = {"pos_bridge", "agent", "offline_queue", "drivers", "membership", "cloud", "base"}
    root = Path(__file__).resolve().parents[3] / "emulators"
    for source in root.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):  # lazy imports too
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            assert not {name.split(".")[0] for name in names} & production, (source, names)


async def _call(url: str, method: str, path: str, payload: str, nonce: str, sig: str) -> dict[str, object]:
    headers = {
        "Content-Type": "application/json",
        "X-LINE-ChannelId": CHANNEL_ID,
        "X-LINE-Authorization-Nonce": nonce,
        "X-LINE-Authorization": sig,
    }
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
        http.request(
            method, url + path, data=payload.encode() if method == "POST" else None, headers=headers
        ) as r,
    ):
        return json.loads(await r.text())  # type: ignore[no-any-return]


async def test_emulator_accepts_the_vector_and_refuses_one_character_off(emulator: EmulatorServer) -> None:
    path, _, nonce, sig = VECTORS[1]
    wrong = ("A" if sig[0] != "A" else "B") + sig[1:]
    refused = await _call(emulator.url, "GET", path, "", nonce + "x", wrong)
    assert refused["returnCode"] == "1106", refused
    answer = await _call(emulator.url, "GET", path, "", nonce, sig)
    assert answer["returnCode"] != "1106", answer  # authenticated: LINE's answer for an unknown order

    path, body, nonce, sig = VECTORS[0]
    refused = await _call(emulator.url, "POST", path, body.replace("100", "101"), nonce, sig)
    assert refused["returnCode"] == "1106", refused  # the body is signed: a changed amount is caught
