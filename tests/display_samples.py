"""Sample screen states and payloads shared by the display tests."""

from __future__ import annotations

from drivers.display.screens import (
    FailedScreen,
    IdleScreen,
    JoinedScreen,
    PaidScreen,
    PayScreen,
    Screen,
    WaitingScreen,
)

NOW = 1_790_000_000.0
# A LINE Pay v3 web payment URL (the longest payload the display shows: version 7 at EC M).
PAY_URL = (
    "https://sandbox-web-pay.line.me/web/payment/wait?transactionReserveId="
    "UW1KOHRsWGtKU3VYNnNFWk1mT3Z0Z3pP&locale=zh-TW_LP"
)
BINDING_URL = "https://line.me/R/oaMessage/@shopedge/?b.Ab3dEfGh0123456789xyzQ"
FRIEND_URL = "https://line.me/R/ti/p/@shopedge"
SIZES = [(480, 320), (800, 480), (1024, 600), (1280, 720), (1920, 1080)]


def qr_screens() -> dict[str, tuple[Screen, str]]:
    """Every screen that carries a QR, with the text the QR must decode to."""
    return {
        "idle": (IdleScreen("ShopEdge 示範門市", FRIEND_URL), FRIEND_URL),
        "pay": (PayScreen(180, PAY_URL, "123456789012", NOW + 299), PAY_URL),
        "pay-no-token": (PayScreen(1_280, PAY_URL, None, NOW + 20), PAY_URL),
        "paid": (PaidScreen(180, BINDING_URL), BINDING_URL),
    }


def all_screens() -> dict[str, Screen]:
    screens: dict[str, Screen] = {name: screen for name, (screen, _) in qr_screens().items()}
    screens.update(
        {
            "idle-plain": IdleScreen("ShopEdge 示範門市"),
            "waiting": WaitingScreen(180),
            "paid-no-binding": PaidScreen(99_999_999, None),
            "failed": FailedScreen("LINE Pay 餘額不足", "Not enough LINE Pay balance"),
            "joined": JoinedScreen(180),
            "joined-no-amount": JoinedScreen(),
        }
    )
    return screens
