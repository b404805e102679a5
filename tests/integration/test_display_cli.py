"""`shopedge display render` as a process: writes a PNG whose QR decodes; bad input exits 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from tests.display_samples import BINDING_URL, PAY_URL

ROOT = Path(__file__).resolve().parents[2]


def shopedge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "display", "render", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "url", "size"),
    [
        (
            ["--screen", "pay", "--amount", "180", "--qr-url", PAY_URL, "--token", "123456789012"],
            PAY_URL,
            (800, 480),
        ),
        (
            [
                "--screen",
                "paid",
                "--amount",
                "180",
                "--qr-url",
                BINDING_URL,
                "--size",
                "480x320",
                "--lang",
                "en",
            ],
            BINDING_URL,
            (480, 320),
        ),
        (
            ["--screen", "waiting", "--amount", "99", "--size", "1920x1080", "--pending", "5"],
            None,
            (1920, 1080),
        ),
        (["--screen", "failed"], None, (800, 480)),
    ],
)
def test_render_writes_the_screen(
    tmp_path: Path, args: list[str], url: str | None, size: tuple[int, int]
) -> None:
    out = tmp_path / "screen.png"
    result = shopedge(*args, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {out}")
    with Image.open(out) as image:
        assert image.size == size
        decoded = [r.text for r in zxingcpp.read_barcodes(image)]
    assert decoded == ([url] if url else [])


def test_config_supplies_defaults(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[device]\nstore_id = "s"\ndevice_id = "d"\nname = "小店"\n[display]\nsize = "1024x600"\nlanguage = "en"\n'
    )
    out = tmp_path / "idle.png"
    result = shopedge("--screen", "idle", "--config", str(config), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "1024x600, en" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--screen", "pay", "--amount", "180"], "needs --qr-url"),
        (["--screen", "paid"], "needs --amount"),
        (["--screen", "pay", "--amount", "-1", "--qr-url", PAY_URL], "amount_twd: must be from 1"),
        (
            ["--screen", "pay", "--amount", "5", "--qr-url", PAY_URL, "--token", "12"],
            "access_token: must be 12 digits",
        ),
        (["--screen", "pay", "--size", "80x80"], "must be WIDTHxHEIGHT"),
        (["--screen", "nope"], "invalid choice"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = shopedge(*args, "--out", str(tmp_path / "x.png"))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_missing_font_exits_1_and_says_what_to_do(tmp_path: Path) -> None:
    result = shopedge(
        "--screen", "failed", "--font", str(tmp_path / "none.ttc"), "--out", str(tmp_path / "x.png")
    )
    assert result.returncode == 1
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_unwritable_output_exits_1(tmp_path: Path) -> None:
    result = shopedge("--screen", "failed", "--out", str(tmp_path / "missing-dir" / "x.png"))
    assert result.returncode == 1
    assert "cannot write in" in result.stderr
