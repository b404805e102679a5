"""The agent's screen port: the rooms' screen dataclasses become the display room's, field for field."""

from __future__ import annotations

import dataclasses

import pytest

from agent.wiring.display import to_display_screen
from drivers.display import screens as display
from membership.conversion import JoinedScreen
from pos_bridge import screens as payments


@pytest.mark.parametrize(
    "screen",
    [
        payments.IdleScreen(store_name="Shop", friend_url="https://line.me/R/ti/p/@shop"),
        payments.PayScreen(amount_twd=5, qr_url="https://pay", access_token="123456789012", expires_at=1.0),
        payments.WaitingScreen(amount_twd=5),
        payments.PaidScreen(amount_twd=5, binding_url="https://bind"),
        payments.FailedScreen(reason_zh="失敗", reason_en="failed"),
        JoinedScreen(amount_twd=420),
    ],
)
def test_each_room_screen_becomes_the_display_screen_of_its_name(screen: object) -> None:
    converted = to_display_screen(screen)
    assert type(converted).__module__ == display.__name__
    assert type(converted).__name__ == type(screen).__name__
    assert dataclasses.asdict(converted) == dataclasses.asdict(screen)  # type: ignore[call-overload]


def test_payment_screens_mirror_the_display_contract_field_for_field() -> None:
    for cls in (payments.IdleScreen, payments.PayScreen, payments.WaitingScreen, payments.PaidScreen, payments.FailedScreen):
        ours = {f.name for f in dataclasses.fields(cls)}
        theirs = {f.name for f in dataclasses.fields(getattr(display, cls.__name__))}
        assert ours == theirs, cls.__name__


def test_an_unknown_screen_is_a_screen_error() -> None:
    @dataclasses.dataclass(frozen=True)
    class BannerScreen:
        text: str

    with pytest.raises(display.ScreenError, match="BannerScreen"):
        to_display_screen(BannerScreen("hi"))
