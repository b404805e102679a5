"""Screen states validate on construction and name the bad field."""

from __future__ import annotations

import dataclasses

import pytest

from drivers.display import screens as s
from tests.display_samples import NOW, PAY_URL, all_screens


def test_valid_screens_construct_positionally_and_by_keyword() -> None:
    assert s.PayScreen(180, PAY_URL, None, NOW) == s.PayScreen(
        amount_twd=180, qr_url=PAY_URL, access_token=None, expires_at=NOW
    )
    assert s.IdleScreen("Store").friend_url is None
    assert s.JoinedScreen().amount_twd is None


def test_screens_are_frozen() -> None:
    screen = s.WaitingScreen(180)
    with pytest.raises(dataclasses.FrozenInstanceError):
        screen.amount_twd = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: s.PayScreen(0, PAY_URL, None, NOW), "amount_twd"),
        (lambda: s.PayScreen(-5, PAY_URL, None, NOW), "amount_twd"),
        (lambda: s.PayScreen(True, PAY_URL, None, NOW), "amount_twd"),
        (lambda: s.PayScreen(180.5, PAY_URL, None, NOW), "amount_twd"),
        (lambda: s.PayScreen(s.MAX_AMOUNT_TWD + 1, PAY_URL, None, NOW), "amount_twd"),
        (lambda: s.PayScreen(180, "", None, NOW), "qr_url"),
        (lambda: s.PayScreen(180, "https://x y", None, NOW), "qr_url"),
        (lambda: s.PayScreen(180, "https://x/" + "a" * s.MAX_QR_TEXT, None, NOW), "qr_url"),
        (lambda: s.PayScreen(180, PAY_URL, "12345678901", NOW), "access_token"),
        (lambda: s.PayScreen(180, PAY_URL, "12345678901a", NOW), "access_token"),
        (lambda: s.PayScreen(180, PAY_URL, None, float("nan")), "expires_at"),
        (lambda: s.PayScreen(180, PAY_URL, None, -1.0), "expires_at"),
        (lambda: s.PayScreen(180, PAY_URL, None, "soon"), "expires_at"),
        (lambda: s.IdleScreen(""), "store_name"),
        (lambda: s.IdleScreen("x" * 65), "store_name"),
        (lambda: s.IdleScreen("Store", ""), "friend_url"),
        (lambda: s.WaitingScreen(0), "amount_twd"),
        (lambda: s.PaidScreen(180, "   "), "binding_url"),
        (lambda: s.FailedScreen("", "reason"), "reason_zh"),
        (lambda: s.FailedScreen("原因", " "), "reason_en"),
        (lambda: s.JoinedScreen(0), "amount_twd"),
    ],
)
def test_bad_input_names_the_field(build: object, field: str) -> None:
    with pytest.raises(s.ScreenError, match=rf"^{field}: "):
        build()  # type: ignore[operator]


def test_screen_error_is_a_value_error_and_a_display_error() -> None:
    assert issubclass(s.ScreenError, ValueError)
    assert issubclass(s.ScreenError, s.DisplayError)


def test_every_screen_type_has_a_name() -> None:
    names = {s.screen_name(screen) for screen in all_screens().values()}
    assert names == {"idle", "pay", "waiting", "paid", "failed", "joined"}
    assert set(s.SCREEN_NAMES) == set(s.Screen.__args__)  # type: ignore[attr-defined]


def test_package_exports_match_all() -> None:
    import drivers.display as package

    for name in package.__all__:
        assert getattr(package, name) is not None
    assert set(package.__all__) >= {"PayScreen", "IdleScreen", "Screen", "DisplayError"}
