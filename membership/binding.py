"""Membership-binding tokens and the QR URL shown after a payment (pure functions, no I/O
apart from `binding_url_provider`'s warning log).

Owns the token format, signing, verification, the oaMessage/LIFF URL and the QR-size check.

Why a packed token: the binding QR must stay at version 6 or lower, and the whole URL
(`https://line.me/R/oaMessage/%40{id}/?{prompt}{token}`) has to fit. The token is therefore a
bit-packed record written in upper-case base32 (A-Z, 2-7), which a QR code stores in its dense
alphanumeric mode (5.5 bits a character instead of 8), as is the percent-encoded prompt.

Layout, most significant bit first (version 1):

    version 3 | issued_at 32 (unix s) | ttl 14 (minutes)
    | store: len-1 5, 6 bits a char | device: len-1 5, 6 bits a char
    | order: kind 2 (0 = [A-Za-z0-9_-], 6 bits a char; 1 = decimal digits, one integer of
      ceil(len * log2 10) bits; 2 = UTF-8, 8 bits a byte) len-1 7, then the units
    | mac 64 | zero padding to a whole base32 character (< 5 bits)

The routing part (store, device) is in clear: the cloud relay decodes it with `route_of`
without any key. Everything, routing included, is covered by the MAC: HMAC-SHA256 over the
packed fields with the per-store key, truncated to 64 bits (a forger gets one try per LINE
message and every rejected try is counted on the device). Only canonical encodings verify, so
one set of claims has exactly one token.

Size: with a 9-character Official Account id the URL stays at QR version 6 (level M) while
store_id + device_id + order id total at most 33 characters (a digits-only order id counts
about 0.55 a digit). Longer ids still work, at a larger QR (a UUID order id needs version 8).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import urllib.parse
from collections.abc import Callable, Container
from dataclasses import dataclass
from enum import StrEnum

from membership.context import MembershipSettings

__all__ = [
    "CLOCK_SKEW_S",
    "MAX_QR_VERSION",
    "MAX_TOKEN",
    "MIN_TOKEN",
    "QR_ERROR_CORRECTION",
    "URL_PROMPT",
    "BindingClaims",
    "BindingError",
    "Rejection",
    "Route",
    "account_link_url",
    "binding_url",
    "binding_url_provider",
    "decode_claims",
    "encode_token",
    "find_token",
    "issue_binding",
    "phone_hash",
    "phone_hasher",
    "qr_version",
    "route_of",
    "verify_token",
]

log = logging.getLogger(__name__)

VERSION = 1
MAX_QR_VERSION = 6
# Level M: at Q (30% recovery) no token that names store, device and order fits version 6
# (measured: a 64-character token alone needs version 8 at Q, version 6 at M).
QR_ERROR_CORRECTION = "M"
# Short bilingual prompt; LINE shows it pre-filled and the shopper taps send. No space before
# the token: the CJK characters already end the word, and each space costs 3 characters.
URL_PROMPT = "JOIN 入會"
MAC_BITS = 64
_DOMAIN = b"shopedge-binding-v1\x00"
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_ID_INDEX = {ch: i for i, ch in enumerate(_ID_ALPHABET)}
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}\Z")
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B32_INDEX = {ch: i for i, ch in enumerate(_B32)}
# Shortest token: 3+32+14 + (5+6)*2 + 2+7+4 + 64 = 148 bits -> 30 characters; longest:
# 3+32+14 + (5+192)*2 + 2+7+1024 + 64 = 1540 bits -> 308 characters.
MIN_TOKEN, MAX_TOKEN = 30, 308
_TOKEN_IN_TEXT = re.compile(rf"(?<![A-Z2-7])[A-Z2-7]{{{MIN_TOKEN},{MAX_TOKEN}}}(?![A-Z2-7])")
_MAX_TTL_MIN = 2**14 - 1
_MAX_ORDER_UNITS = 128
_ALPHABET, _DIGITS, _UTF8 = 0, 1, 2


def _digit_bits(count: int) -> int:
    largest: int = 10**count - 1
    return largest.bit_length()


class BindingError(ValueError):
    """A token cannot be issued for these inputs (key missing, ids out of range)."""


class Rejection(StrEnum):
    """Why a token did not verify."""

    MALFORMED = "malformed"
    WRONG_STORE = "wrong_store"
    WRONG_DEVICE = "wrong_device"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"  # issued in the future (beyond the clock skew allowed)
    ALREADY_USED = "already_used"


@dataclass(frozen=True, kw_only=True)
class Route:
    """The clear routing part of a token: where the relay sends the shopper's message."""

    store_id: str
    device_id: str


@dataclass(frozen=True, kw_only=True)
class BindingClaims:
    """What a token says; `issued_at`/`expires_at` are unix seconds."""

    store_id: str
    device_id: str
    order_id: str
    issued_at: int
    ttl_minutes: int

    def __post_init__(self) -> None:
        for name in ("store_id", "device_id"):
            if not _ID_RE.match(getattr(self, name)):
                raise BindingError(f"{name} must be 1-32 of [A-Za-z0-9_-], got {getattr(self, name)!r}")
        units = len(self.order_id) if _is_id(self.order_id, 128) else len(self.order_id.encode())
        if not self.order_id or units > _MAX_ORDER_UNITS:
            raise BindingError(f"order_id must be 1-{_MAX_ORDER_UNITS} characters, got {self.order_id!r}")
        if not 0 <= self.issued_at < 2**32:
            raise BindingError(f"issued_at out of range: {self.issued_at}")
        if not 1 <= self.ttl_minutes <= _MAX_TTL_MIN:
            raise BindingError(f"ttl_minutes must be 1-{_MAX_TTL_MIN}, got {self.ttl_minutes}")

    @property
    def expires_at(self) -> int:
        return self.issued_at + 60 * self.ttl_minutes

    @property
    def route(self) -> Route:
        return Route(store_id=self.store_id, device_id=self.device_id)


def _is_id(text: str, limit: int) -> bool:
    return 0 < len(text) <= limit and all(ch in _ID_INDEX for ch in text)


# ---------------------------------------------------------------- bits


class _Writer:
    def __init__(self) -> None:
        self.value = 0
        self.bits = 0

    def put(self, value: int, width: int) -> None:
        assert 0 <= value < (1 << width)
        self.value = (self.value << width) | value
        self.bits += width


class _Reader:
    def __init__(self, value: int, bits: int) -> None:
        self.value = value
        self.left = bits

    def take(self, width: int) -> int:
        if width > self.left:
            raise _Malformed
        self.left -= width
        return (self.value >> self.left) & ((1 << width) - 1)


class _Malformed(Exception):
    pass


def _body_bits(claims: BindingClaims) -> _Writer:
    out = _Writer()
    out.put(VERSION, 3)
    out.put(claims.issued_at, 32)
    out.put(claims.ttl_minutes, 14)
    for ident in (claims.store_id, claims.device_id):
        out.put(len(ident) - 1, 5)
        for ch in ident:
            out.put(_ID_INDEX[ch], 6)
    order = claims.order_id
    if order.isascii() and order.isdigit():
        out.put(_DIGITS, 2)
        out.put(len(order) - 1, 7)
        out.put(int(order), _digit_bits(len(order)))
    elif _is_id(order, _MAX_ORDER_UNITS):
        out.put(_ALPHABET, 2)
        out.put(len(order) - 1, 7)
        for ch in order:
            out.put(_ID_INDEX[ch], 6)
    else:
        raw = order.encode()
        out.put(_UTF8, 2)
        out.put(len(raw) - 1, 7)
        for byte in raw:
            out.put(byte, 8)
    return out


def _mac(key: bytes, body: _Writer) -> int:
    packed = body.bits.to_bytes(2, "big") + body.value.to_bytes(math.ceil(body.bits / 8), "big")
    digest = hmac.new(key, _DOMAIN + packed, hashlib.sha256).digest()
    return int.from_bytes(digest[: MAC_BITS // 8], "big")


def encode_token(claims: BindingClaims, key: bytes) -> str:
    """The signed token for `claims` (upper-case base32, no padding)."""
    if not key:
        raise BindingError("binding.key is empty: run `shopedge provision` to generate the store's key")
    body = _body_bits(claims)
    body.put(_mac(key, body), MAC_BITS)
    pad = -body.bits % 5
    body.put(0, pad)
    value, chars = body.value, body.bits // 5
    return "".join(_B32[(value >> (5 * (chars - 1 - i))) & 31] for i in range(chars))


def _unpack(token: str) -> tuple[BindingClaims, _Writer, int]:
    """Parse the fields; raise _Malformed unless the token is a canonical version-1 token."""
    if not MIN_TOKEN <= len(token) <= MAX_TOKEN or any(ch not in _B32_INDEX for ch in token):
        raise _Malformed
    value = 0
    for ch in token:
        value = (value << 5) | _B32_INDEX[ch]
    reader = _Reader(value, 5 * len(token))
    if reader.take(3) != VERSION:
        raise _Malformed
    issued_at = reader.take(32)
    ttl = reader.take(14)
    idents = []
    for _ in range(2):
        length = reader.take(5) + 1
        idents.append("".join(_ID_ALPHABET[reader.take(6)] for _ in range(length)))
    kind = reader.take(2)
    length = reader.take(7) + 1
    if kind == _ALPHABET:
        order = "".join(_ID_ALPHABET[reader.take(6)] for _ in range(length))
        if order.isdigit():
            raise _Malformed  # digits have their own, shorter form
    elif kind == _DIGITS:
        number = reader.take(_digit_bits(length))
        if number >= 10**length:
            raise _Malformed
        order = str(number).zfill(length)
    elif kind == _UTF8:
        try:
            order = bytes(reader.take(8) for _ in range(length)).decode()
        except UnicodeDecodeError:
            raise _Malformed from None
        if _is_id(order, _MAX_ORDER_UNITS):
            raise _Malformed  # would have been written in a denser form
    else:
        raise _Malformed
    mac = reader.take(MAC_BITS)
    if reader.left >= 5 or reader.take(reader.left) != 0:
        raise _Malformed
    try:
        claims = BindingClaims(
            store_id=idents[0], device_id=idents[1], order_id=order, issued_at=issued_at, ttl_minutes=ttl
        )
    except BindingError:
        raise _Malformed from None
    return claims, _body_bits(claims), mac


def route_of(token: str) -> Route | None:
    """The store and device a token names, read without the key (None if it is not a token)."""
    try:
        claims, _, _ = _unpack(token)
    except _Malformed:
        return None
    return claims.route


def decode_claims(token: str) -> BindingClaims | None:
    """Unverified claims (for technicians' tools); never trust them without `verify_token`."""
    try:
        return _unpack(token)[0]
    except _Malformed:
        return None


# A token is issued by this device's own clock; one from further ahead than this was made with
# the key under a wrong clock (or by someone else), and would outlive its `ttl_s`.
CLOCK_SKEW_S = 300


def verify_token(
    token: str,
    *,
    key: bytes,
    store_id: str,
    now: float,
    device_id: str | None = None,
    used_orders: Container[str] = (),
) -> BindingClaims | Rejection:
    """Check a token: the claims if it is good, otherwise the first reason it is not.

    Order of checks: malformed, wrong store, wrong device, bad signature, expired, issued in
    the future (more than `CLOCK_SKEW_S` ahead of `now`), already used (`used_orders` holds the
    order ids this store already converted; the device's DB enforces it too). The device's
    handler and `shopedge binding verify` both decide with this function
    (`membership.conversion.verify_on_device_blocking` adds the DB's "already used").
    """
    try:
        claims, body, mac = _unpack(token)
    except _Malformed:
        return Rejection.MALFORMED
    if claims.store_id != store_id:
        return Rejection.WRONG_STORE
    if device_id is not None and claims.device_id != device_id:
        return Rejection.WRONG_DEVICE
    if not key or not hmac.compare_digest(mac.to_bytes(8, "big"), _mac(key, body).to_bytes(8, "big")):
        return Rejection.BAD_SIGNATURE
    if now >= claims.expires_at:
        return Rejection.EXPIRED
    if claims.issued_at > now + CLOCK_SKEW_S:
        return Rejection.NOT_YET_VALID
    if claims.order_id in used_orders:
        return Rejection.ALREADY_USED
    return claims


def find_token(text: str) -> str | None:
    """The first binding token in a chat message (the shopper may add words around it)."""
    for match in _TOKEN_IN_TEXT.finditer(text):
        if route_of(match.group(0)) is not None:
            return match.group(0)
    return None


# ---------------------------------------------------------------- URL and QR


def binding_url(token: str, *, oa_basic_id: str = "", liff_id: str = "") -> str:
    """The URL the binding QR encodes: the LIFF app if configured, else LINE's oaMessage scheme.

    oaMessage text is UTF-8, percent-encoded with nothing left unescaped except unreserved
    characters (LINE's URL scheme); hex digits are upper case so the QR can use alphanumeric mode.
    """
    if liff_id:
        return f"https://liff.line.me/{liff_id}?t={token}"
    if not oa_basic_id:
        raise BindingError("line.oa_basic_id is empty (or set line.liff_id): the binding QR needs one")
    account = urllib.parse.quote("@" + oa_basic_id.removeprefix("@"), safe="")
    return f"https://line.me/R/oaMessage/{account}/?{urllib.parse.quote(URL_PROMPT + token, safe='')}"


def account_link_url(link_token: str, binding_token: str) -> str:
    """Where a member site sends the shopper after login (LINE's account-link flow), with the
    binding token as the nonce; LINE then delivers an `accountLink` event carrying it, which the
    relay routes and the device records like a binding message.

    Raises:
        BindingError: an empty link token, or a token outside LINE's 10-255 nonce length.
    """
    if not link_token:
        raise BindingError("link_token is empty (POST /v2/bot/user/{userId}/linkToken issues one)")
    if not 10 <= len(binding_token) <= 255:
        raise BindingError(f"a nonce has 10-255 characters; this token has {len(binding_token)}")
    query = urllib.parse.urlencode({"linkToken": link_token, "nonce": binding_token})
    return f"https://access.line.me/dialog/bot/accountLink?{query}"


def issue_binding(config: MembershipSettings, order_id: str, now: float) -> tuple[str, str]:
    """The `(token, url)` for the paid screen's QR of `order_id`, issued at wall-clock `now`.

    Raises:
        BindingError: no binding key, no Official Account id, or an order id the token cannot carry.
    """
    claims = BindingClaims(
        store_id=config.device.store_id,
        device_id=config.device.device_id,
        order_id=order_id,
        issued_at=int(now),
        ttl_minutes=min(_MAX_TTL_MIN, max(1, math.ceil(config.binding.ttl_s / 60))),
    )
    token = encode_token(claims, config.binding.key.get_secret_value().encode())
    return token, binding_url(token, oa_basic_id=config.line.oa_basic_id, liff_id=config.line.liff_id)


def binding_url_provider(
    config: MembershipSettings, wall_clock: Callable[[], float]
) -> Callable[[str], str | None]:
    """The payment service's `binding_url(order_id)`: the paid screen's QR URL, or None (the
    paid screen then shows no binding QR) when this device cannot issue one, e.g. no key yet."""

    def url_for(order_id: str) -> str | None:
        try:
            return issue_binding(config, order_id, wall_clock())[1]
        except BindingError as exc:
            log.warning("no binding QR for this sale", extra={"order_id": order_id, "error": str(exc)})
            return None

    return url_for


def qr_version(url: str) -> int:
    """The QR version qrcode's `best_fit` picks for `url` at the binding QR's error correction."""
    import qrcode
    from qrcode.constants import ERROR_CORRECT_M

    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M)
    qr.add_data(url)
    return int(qr.best_fit())


def phone_hash(phone: str, salt: str) -> str:
    """Salted SHA-256 of a member phone (digits only, Taiwan +886 folded to 0); the raw number is
    never stored.

    Raises:
        BindingError: no salt, or fewer than 8 digits.
    """
    if not salt:
        raise BindingError("binding.phone_salt is empty: member phones cannot be hashed")
    digits = "".join(ch for ch in phone if ch.isdigit())
    if phone.strip().startswith("+886") or (digits.startswith("886") and len(digits) == 12):
        digits = "0" + digits[3:]
    if len(digits) < 8:
        raise BindingError(f"member phone has {len(digits)} digits, expected at least 8")
    return hashlib.sha256(f"{salt}\x00{digits}".encode()).hexdigest()


def phone_hasher(salt: str) -> Callable[[str], str] | None:
    """The payment journal's member-phone hash under `salt` (`binding.phone_salt`), or None
    without a salt: an unsalted hash of a phone number is as good as the number itself."""
    if not salt:
        return None
    return lambda phone: phone_hash(phone, salt)
