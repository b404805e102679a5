"""The systemd units pass `systemd-analyze verify` (no warnings) and the agent unit's sandbox
scores an exposure of 2.0 or lower in `systemd-analyze security --offline=true`.

`verify` runs against a throwaway root holding the distribution's unit files and stand-ins for
the binaries the units start, so a missing target, an unknown key or a typo fails the test.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ["shopedge.service", "shopedge-relay.service", "shopedge-kiosk.service"]
EXECUTABLES = ["opt/shopedge/.venv/bin/shopedge", "usr/bin/cage", "usr/bin/chromium"]
SYSTEM_UNITS = Path("/usr/lib/systemd/system")

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")


def _fake_root(tmp_path: Path, units: dict[str, str]) -> Path:
    root = tmp_path / "root"
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    for rel in EXECUTABLES:
        exe = root / rel
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    unit_dir = root / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    for name, text in units.items():
        (unit_dir / name).write_text(text)
    return root


def _verify(root: Path, unit: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={root}", unit],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("unit", UNITS)
def test_unit_verifies_cleanly(tmp_path: Path, unit: str) -> None:
    root = _fake_root(tmp_path, {name: (ROOT / "systemd" / name).read_text() for name in UNITS})
    result = _verify(root, unit)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_verify_catches_a_typo(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key is reported."""
    text = (ROOT / "systemd/shopedge.service").read_text().replace("\nRestart=", "\nRestrt=")
    root = _fake_root(tmp_path, {"shopedge.service": text})
    result = _verify(root, "shopedge.service")
    assert "Unknown key 'Restrt'" in result.stderr


def _exposure(unit: Path) -> tuple[int, float, str]:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=20", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    return result.returncode, float(match[1]), match[2]


def test_agent_unit_exposure_is_ok() -> None:
    rc, exposure, verdict = _exposure(ROOT / "systemd/shopedge.service")
    assert exposure <= 2.0 and verdict == "OK", (exposure, verdict)
    assert rc == 0


def test_security_threshold_fails_a_weak_unit(tmp_path: Path) -> None:
    """The threshold really fails: the same unit without its hardening block scores far worse."""
    text = (ROOT / "systemd/shopedge.service").read_text()
    weak = tmp_path / "shopedge.service"
    weak.write_text(text.split("# Hardening")[0] + "\n[Install]\nWantedBy=multi-user.target\n")
    rc, exposure, _ = _exposure(weak)
    assert exposure > 2.0 and rc != 0


def test_agent_unit_contract() -> None:
    """What the issue requires of the agent unit, beyond what the tools check."""
    text = (ROOT / "systemd/shopedge.service").read_text()
    for line in [
        "Type=notify",
        "Restart=on-failure",
        "User=shopedge",
        "SupplementaryGroups=bluetooth",
        "StateDirectory=shopedge",
        "ConfigurationDirectory=shopedge",
    ]:
        assert f"\n{line}\n" in text, line
    assert re.search(r"\nWatchdogSec=\d+", text)
    assert not re.search(r"^DynamicUser=", text, re.MULTILINE)
