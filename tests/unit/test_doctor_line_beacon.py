"""Doctor row `line_beacon`: the verdict over every case, and the version probe against a stand-in
`bluetoothd` on PATH."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.doctor import CHECKS, Environment, Status, line_beacon_verdict
from agent.doctor._line_beacon import bluetoothd_version, check_line_beacon


@pytest.mark.parametrize(
    ("advertise", "greetings", "version", "status", "needle"),
    [
        (False, 0, None, Status.PASS, "off"),
        (False, 1, None, Status.WARN, "does not advertise"),
        (True, 1, None, Status.FAIL, "bluetoothd was not found"),
        (True, 1, (5, 55), Status.WARN, "ignores the advert interval"),
        (True, 1, (5, 56), Status.WARN, "--experimental"),
        (True, 1, (5, 76), Status.WARN, "--experimental"),
        (True, 1, (5, 77), Status.PASS, "152.5 ms"),
        (True, 0, (5, 82), Status.PASS, "BlueZ 5.82"),
    ],
)
def test_verdicts(
    advertise: bool, greetings: int, version: tuple[int, int] | None, status: Status, needle: str
) -> None:
    row = line_beacon_verdict(advertise=advertise, hwid="32af519e88", greetings=greetings, version=version)
    assert row.check == "line_beacon"
    assert row.status is status
    assert needle in row.detail
    assert (row.hint != "") is (status is not Status.PASS)


def test_the_row_is_one_of_the_doctors_checks() -> None:
    assert CHECKS["line_beacon"] is check_line_beacon


async def test_the_version_probe_reads_bluetoothd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bluetoothd"
    fake.write_text("#!/bin/sh\necho 5.66\n", encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert await bluetoothd_version(5.0) == (5, 66)
    config = parse_config(
        {
            "device": {"store_id": "s", "device_id": "d"},
            "binding": {"key": "k" * 32},
            "beacon": {"hwid": "32af519e88", "advertise": True},
        },
        environ={},
    )
    row = await check_line_beacon(config, Environment())
    assert (row.status, row.detail) == (
        Status.WARN,
        "BlueZ 5.66 honours the 152.5 ms interval only with --experimental",
    )
    fake.write_text("#!/bin/sh\necho garbage\n", encoding="utf-8")
    assert await bluetoothd_version(5.0) is None
