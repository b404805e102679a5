"""The POS API's bearer token: only the exact configured token passes (issue 14).

A token of the same length with one character changed, at any position, is refused on every
/v1 route, and the refused request changes nothing: no payment row, no LINE Pay call.
"""

from __future__ import annotations

import time
from pathlib import Path

from emulators.linepay import EmulatorServer
from tests.integration.payments.harness import TOKEN, running


def _one_off(token: str, at: int) -> str:
    swapped = "x" if token[at] != "x" else "y"
    return token[:at] + swapped + token[at + 1 :]


async def test_a_token_one_character_off_is_refused(tmp_path: Path, emulator: EmulatorServer) -> None:
    async with running(tmp_path, emulator.url) as h:
        key = emulator.state.issue_key(time.time())
        body = {
            "order_id": "AUTH1",
            "amount": 50,
            "currency": "TWD",
            "product_name": "tea",
            "method": "scan_code",
            "one_time_key": key,
        }
        wrong = [_one_off(TOKEN, i) for i in range(len(TOKEN))]
        assert all(len(w) == len(TOKEN) and w != TOKEN for w in wrong)
        headers = (
            [f"Bearer {w}" for w in wrong]
            + [
                f"bearer {TOKEN}",  # the scheme is matched exactly too (a trailing space is HTTP's to strip)
                f"Bearer  {TOKEN}",
                f"Bearer {TOKEN[:-1]}",
                "Bearer ",
                TOKEN,
                "",
            ]
        )
        for value in headers:
            for path, payload in (
                ("/v1/payments", body),
                ("/v1/payments/AUTH1/cancel", None),
                ("/v1/payments/AUTH1/refund", {}),
            ):
                status, answer = await h.post(path, payload, headers={"Authorization": value}, auth=False)
                assert (status, answer.get("error")) == (401, "unauthorized"), (value, path, answer)
            async with h.http.get(h.url + "/v1/payments/AUTH1", headers={"Authorization": value}) as r:
                assert r.status == 401, value
        assert emulator.state.charges == {} and emulator.state.bodies == []
        # The right token, same request: accepted, and only now is the payment made.
        status, answer = await h.post("/v1/payments", body)
        assert status == 201, answer
        assert (await h.until("AUTH1", "paid"))["paid_amount"] == 50
