"""Binding tokens: round trips, any tampering fails, expiry and single use, URL and QR size."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agent.config import parse_config
from membership.binding import (
    CLOCK_SKEW_S,
    MAX_QR_VERSION,
    URL_PROMPT,
    BindingClaims,
    BindingError,
    Rejection,
    Route,
    account_link_url,
    binding_url,
    binding_url_provider,
    decode_claims,
    encode_token,
    find_token,
    issue_binding,
    phone_hash,
    qr_version,
    route_of,
    verify_token,
)

KEY = b"k" * 32
NOW = 1_795_000_000
ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

ids = st.text(alphabet=ID_CHARS, min_size=1, max_size=32)
orders = st.one_of(
    st.text(alphabet=ID_CHARS, min_size=1, max_size=128),
    st.text(alphabet="0123456789", min_size=1, max_size=128),
    st.text(min_size=1, max_size=40).filter(lambda s: len(s.encode()) <= 128),
)
claims_st = st.builds(
    BindingClaims,
    store_id=ids,
    device_id=ids,
    order_id=orders,
    issued_at=st.integers(0, 2**32 - 1),
    ttl_minutes=st.integers(1, 2**14 - 1),
)


def config(**line: str) -> object:
    return parse_config(
        {
            "device": {"store_id": "demo-store", "device_id": "counter-1"},
            "binding": {"key": KEY.decode(), "ttl_s": 1800},
            "line": line or {"oa_basic_id": "@123abcde"},
        },
        environ={},
    )


@given(claims_st)
def test_round_trip_verifies_and_routes(claims: BindingClaims) -> None:
    token = encode_token(claims, KEY)
    assert set(token) <= set(B32)
    assert route_of(token) == Route(store_id=claims.store_id, device_id=claims.device_id)
    assert decode_claims(token) == claims
    now = claims.issued_at
    assert (
        verify_token(token, key=KEY, store_id=claims.store_id, device_id=claims.device_id, now=now) == claims
    )
    assert find_token(f"{URL_PROMPT}{token}") == token
    assert find_token(f"hello {token} thanks") == token


@settings(max_examples=300)
@given(claims_st, st.data())
def test_any_single_character_change_fails(claims: BindingClaims, data: st.DataObject) -> None:
    token = encode_token(claims, KEY)
    pos = data.draw(st.integers(0, len(token) - 1))
    new = data.draw(st.sampled_from(B32).filter(lambda c: c != token[pos]))
    tampered = token[:pos] + new + token[pos + 1 :]
    result = verify_token(tampered, key=KEY, store_id=claims.store_id, now=claims.issued_at)
    assert isinstance(result, Rejection)


@given(claims_st, st.binary(min_size=1, max_size=64))
def test_other_key_is_bad_signature(claims: BindingClaims, other: bytes) -> None:
    assume(other != KEY)
    token = encode_token(claims, other)
    result = verify_token(token, key=KEY, store_id=claims.store_id, now=claims.issued_at)
    assert result is Rejection.BAD_SIGNATURE


@given(claims_st, st.data())
def test_forged_claims_with_reused_mac_fail(claims: BindingClaims, data: st.DataObject) -> None:
    """Changing a field and keeping the MAC (the tail of a real token) never verifies."""
    order = data.draw(orders.filter(lambda o: o != claims.order_id))
    forged = BindingClaims(
        store_id=claims.store_id,
        device_id=claims.device_id,
        order_id=order,
        issued_at=claims.issued_at,
        ttl_minutes=claims.ttl_minutes,
    )
    real = encode_token(claims, KEY)
    fake = encode_token(forged, b"attacker")
    spliced = fake[: len(fake) - 13] + real[len(real) - 13 :]
    # 13 characters are 65 bits: with no padding the real tail also carries the body's last bit,
    # so an order id differing only there splices back into the real token, which is no forgery.
    assume(spliced != real)
    assert verify_token(spliced, key=KEY, store_id=claims.store_id, now=claims.issued_at) in {
        Rejection.BAD_SIGNATURE,
        Rejection.MALFORMED,
    }


@given(claims_st, st.integers(0, 10))
def test_truncated_or_extended_tokens_are_rejected(claims: BindingClaims, cut: int) -> None:
    token = encode_token(claims, KEY)
    for bad in (token[: len(token) - 1 - cut], token + "A" * (cut + 1), token.lower()):
        assert isinstance(
            verify_token(bad, key=KEY, store_id=claims.store_id, now=claims.issued_at), Rejection
        )


@given(claims_st)
def test_expiry_is_enforced_at_the_second(claims: BindingClaims) -> None:
    token = encode_token(claims, KEY)
    before = verify_token(token, key=KEY, store_id=claims.store_id, now=claims.expires_at - 0.001)
    assert before == claims
    at = verify_token(token, key=KEY, store_id=claims.store_id, now=claims.expires_at)
    assert at is Rejection.EXPIRED


@given(claims_st)
def test_single_use_and_wrong_store_or_device(claims: BindingClaims) -> None:
    token = encode_token(claims, KEY)
    now = claims.issued_at
    used = {claims.order_id}
    assert (
        verify_token(token, key=KEY, store_id=claims.store_id, now=now, used_orders=used)
        is Rejection.ALREADY_USED
    )
    assert verify_token(token, key=KEY, store_id=claims.store_id + "x", now=now) is Rejection.WRONG_STORE
    other_device = claims.device_id + "x"
    assert (
        verify_token(token, key=KEY, store_id=claims.store_id, device_id=other_device, now=now)
        is Rejection.WRONG_DEVICE
    )


@given(st.text(max_size=200))
def test_arbitrary_text_never_crashes(text: str) -> None:
    assert isinstance(verify_token(text, key=KEY, store_id="s", now=NOW), Rejection)
    token = find_token(text)
    assert token is None or route_of(token) is not None


def test_empty_key_cannot_sign_or_verify() -> None:
    claims = BindingClaims(store_id="s", device_id="d", order_id="1", issued_at=NOW, ttl_minutes=30)
    with pytest.raises(BindingError, match=r"binding\.key"):
        encode_token(claims, b"")
    token = encode_token(claims, KEY)
    assert verify_token(token, key=b"", store_id="s", now=NOW) is Rejection.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("store_id", "bad store"),
        ("device_id", ""),
        ("order_id", ""),
        ("order_id", "x" * 129),
        ("ttl_minutes", 0),
    ],
)
def test_claims_out_of_range_are_refused(field: str, value: object) -> None:
    fields: dict[str, object] = {
        "store_id": "s",
        "device_id": "d",
        "order_id": "1",
        "issued_at": NOW,
        "ttl_minutes": 30,
    }
    fields[field] = value
    with pytest.raises(BindingError, match=field):
        BindingClaims(**fields)  # type: ignore[arg-type]


def test_issue_binding_oamessage_url_decodes_to_prompt_and_token() -> None:
    token, url = issue_binding(config(), "A20261123-0042", NOW + 0.9)  # type: ignore[arg-type]
    prefix = "https://line.me/R/oaMessage/%40123abcde/?"
    assert url.startswith(prefix)
    text = urllib.parse.unquote(url[len(prefix) :])
    assert text == URL_PROMPT + token
    claims = verify_token(token, key=KEY, store_id="demo-store", device_id="counter-1", now=NOW + 1799)
    assert isinstance(claims, BindingClaims)
    assert (claims.order_id, claims.issued_at, claims.expires_at) == ("A20261123-0042", NOW, NOW + 1800)
    assert verify_token(token, key=KEY, store_id="demo-store", now=NOW + 1800) is Rejection.EXPIRED


def test_liff_url_when_configured() -> None:
    token, url = issue_binding(config(liff_id="1234567890-AbCdEfGh"), "42", NOW)  # type: ignore[arg-type]
    assert url == f"https://liff.line.me/1234567890-AbCdEfGh?t={token}"


def test_no_account_id_is_a_clear_error() -> None:
    with pytest.raises(BindingError, match="oa_basic_id"):
        binding_url("TOKEN")


@pytest.mark.parametrize(
    "order",
    ["1", "20261123000042123456", "A20261123-0042", "POS1-000123", "ORD_2611230001"],
)
@pytest.mark.parametrize(("store", "device"), [("demo-store", "counter-1"), ("taipei-0012", "till-02")])
def test_qr_stays_at_version_6_for_realistic_ids(order: str, store: str, device: str) -> None:
    cfg = parse_config(
        {
            "device": {"store_id": store, "device_id": device},
            "binding": {"key": "x" * 43},
            "line": {"oa_basic_id": "@123abcde"},
        },
        environ={},
    )
    _, url = issue_binding(cfg, order, NOW)
    assert qr_version(url) <= MAX_QR_VERSION, (len(url), url)


def test_qr_version_grows_with_long_orders() -> None:
    """The check is real: a UUID order id does not fit version 6 (documented limit)."""
    _, url = issue_binding(config(), "7f0c2d0e-6c1b-4c53-9a53-2f4a3b8e9d10", NOW)  # type: ignore[arg-type]
    assert qr_version(url) > MAX_QR_VERSION


def test_phone_hash_is_salted_and_normalised() -> None:
    a = phone_hash("0912-345-678", "salt")
    assert a == phone_hash("+886 912 345 678", "salt")
    assert a != phone_hash("0912345678", "pepper")
    assert "0912345678" not in a and len(a) == 64
    with pytest.raises(BindingError, match="phone_salt"):
        phone_hash("0912345678", "")
    with pytest.raises(BindingError, match="digits"):
        phone_hash("12-34", "salt")


def test_qr_round_trip_through_a_real_decoder() -> None:
    """Encode the URL as the display would (level M), decode the image with zxing-cpp, and the
    decoded text still carries a token that verifies."""
    zxingcpp = pytest.importorskip("zxingcpp")
    import qrcode
    from qrcode.constants import ERROR_CORRECT_M

    token, url = issue_binding(config(), "A20261123-0042", NOW)  # type: ignore[arg-type]
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=4, border=4)
    qr.add_data(url)
    image = qr.make_image().get_image().convert("L")
    [result] = zxingcpp.read_barcodes(image)
    assert result.text == url
    assert qr.version <= MAX_QR_VERSION
    text = urllib.parse.unquote(result.text.split("?", 1)[1])
    assert find_token(text) == token
    assert isinstance(verify_token(token, key=KEY, store_id="demo-store", now=NOW), BindingClaims)


@pytest.mark.parametrize(
    "order",
    ["9", "x", "9" * 128, "x" * 128, "訂" * 42 + "ab", "é" * 64],
)
def test_extreme_sizes_round_trip_and_are_found_in_text(order: str) -> None:
    for ident in ("a", "z" * 32):
        claims = BindingClaims(
            store_id=ident, device_id=ident, order_id=order, issued_at=2**32 - 1, ttl_minutes=1
        )
        token = encode_token(claims, KEY)
        assert 30 <= len(token) <= 308
        assert find_token(f"{URL_PROMPT}{token}") == token
        assert verify_token(token, key=KEY, store_id=ident, now=claims.issued_at) == claims


def test_binding_url_provider_for_the_payment_service() -> None:
    provider = binding_url_provider(config(), lambda: NOW)  # type: ignore[arg-type]
    url = provider("A-1")
    assert url == issue_binding(config(), "A-1", NOW)[1]  # type: ignore[arg-type]
    keyless = parse_config(
        {"device": {"store_id": "s", "device_id": "d"}, "line": {"oa_basic_id": "@x12"}}, environ={}
    )
    assert binding_url_provider(keyless, lambda: NOW)("A-1") is None


def test_account_link_url_carries_the_token_as_nonce() -> None:
    token, _ = issue_binding(config(), "A-1", NOW)  # type: ignore[arg-type]
    url = account_link_url("lt/+ 1", token)
    parsed = urllib.parse.urlsplit(url)
    assert (parsed.scheme, parsed.netloc, parsed.path) == (
        "https",
        "access.line.me",
        "/dialog/bot/accountLink",
    )
    assert urllib.parse.parse_qs(parsed.query) == {"linkToken": ["lt/+ 1"], "nonce": [token]}
    with pytest.raises(BindingError, match="10-255"):
        account_link_url("lt", "A" * 256)
    with pytest.raises(BindingError, match="link_token"):
        account_link_url("", token)


def test_a_token_from_the_future_is_not_yet_valid() -> None:
    claims = BindingClaims(store_id="s", device_id="d", order_id="o", issued_at=10_000, ttl_minutes=30)
    token = encode_token(claims, KEY)
    at_skew = claims.issued_at - CLOCK_SKEW_S
    assert verify_token(token, key=KEY, store_id="s", now=at_skew) == claims  # within the skew
    assert verify_token(token, key=KEY, store_id="s", now=at_skew - 1) is Rejection.NOT_YET_VALID
