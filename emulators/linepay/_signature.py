"""LINE Pay's request signature, computed the way LINE documents it (the emulator's own copy:
emulators import no production code, so a client bug cannot hide behind a shared helper).

    Base64(HMAC-SHA256(key=channelSecret, channelSecret + apiPath + (body | queryString) + nonce))

`apiPath` is the path only (no host, no `?`); POST signs the exact body text, GET the query
string without `?` ("" if none).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = ["expected_signature"]


def expected_signature(channel_secret: str, api_path: str, body_or_query: str, nonce: str) -> str:
    """The X-LINE-Authorization value LINE Pay expects for one request."""
    key = channel_secret.encode("utf-8")
    message = b"".join(part.encode("utf-8") for part in (channel_secret, api_path, body_or_query, nonce))
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode("ascii")
