"""deploy/install-pi.sh into a temporary root with stub apt-get/systemctl/useradd on PATH:
a first install on a device that already has a DB, then a re-run (the update path). The DB
is kept, backed up and migrated for real; the second run creates nothing twice."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agent.db import current_heads, migrate, open_state_db, script_heads
from agent.state import get_setting, put_setting

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy/install-pi.sh"

STUBS = {
    # Packages: "installed" once apt-get installed them.
    "dpkg-query": 'grep -qx "${@: -1}" "$STUB/pkgs" 2>/dev/null && echo "install ok installed"',
    "apt-cache": "exit 0",
    "apt-get": 'if [ "$1" = install ]; then for p in "$@"; do echo "$p" >> "$STUB/pkgs"; done; fi',
    # Accounts.
    "getent": 'grep -qx "$2" "$STUB/$1" 2>/dev/null',
    "groupadd": 'echo "${@: -1}" >> "$STUB/group"',
    "useradd": 'echo "${@: -1}" >> "$STUB/passwd"; echo "${@: -1}" >> "$STUB/group"',
    "usermod": "exit 0",
    "id": 'echo "$2 bluetooth"',
    "chown": "exit 0",
    # Services: is-active answers from a flag file that start/stop maintain.
    "systemctl": (
        'case "$1" in is-active) [ -f "$STUB/active" ];; start) touch "$STUB/active";; '
        'stop) rm -f "$STUB/active";; *) exit 0;; esac'
    ),
    "runuser": 'shift 3; exec "$@"',
    # python3 -m venv DIR: a venv whose python records pip and runs everything else for real.
    "python3": (
        '[ "$1 $2" = "-m venv" ] || exit 9; mkdir -p "$3/bin"; '
        "printf '%s\\n' '#!/usr/bin/env bash' "
        '\'if [ "$1 $2" = "-m pip" ]; then echo "pip $*" >> "$STUB/log"; exit 0; fi\' '
        '\'exec "$REAL_PYTHON" "$@"\' > "$3/bin/python"; chmod +x "$3/bin/python"'
    ),
}

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _stubs(tmp_path: Path) -> tuple[Path, Path]:
    bin_dir, state = tmp_path / "stub-bin", tmp_path / "stub-state"
    bin_dir.mkdir()
    state.mkdir()
    for name, body in STUBS.items():
        path = bin_dir / name
        path.write_text(f'#!/usr/bin/env bash\necho "{name} $*" >> "$STUB/log"\n{body}\n')
        path.chmod(0o755)
    return bin_dir, state


def _install(root: Path, bin_dir: Path, state: Path) -> tuple[str, list[str]]:
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SHOPEDGE_ROOT": str(root),
        "STUB": str(state),
        "REAL_PYTHON": sys.executable,
        "PYTHONPATH": str(ROOT),
    }
    (state / "log").write_text("")
    result = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout, (state / "log").read_text().splitlines()


def _index(log: list[str], prefix: str) -> int:
    return next(i for i, line in enumerate(log) if line.startswith(prefix))


def test_shellcheck_is_clean() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("needs shellcheck")
    result = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_install_then_update_keeps_and_migrates_the_db(tmp_path: Path) -> None:
    root = tmp_path / "root"
    bin_dir, state = _stubs(tmp_path)
    db = root / "var/lib/shopedge/shopedge.db"
    state_db = open_state_db(db)
    migrate(state_db, "0002_agent_runs")
    put_setting(state_db, "device_identity", "kept-identity")
    state_db.close()
    (root / "etc/shopedge").mkdir(parents=True)
    (root / "etc/shopedge/config.toml").write_text("# provisioned\n")
    (state / "active").touch()  # the agent is running
    (state / "group").write_text("video\ninput\n")  # this image has no "render" group

    out, log = _install(root, bin_dir, state)
    [apt_install] = [line.split() for line in log if line.startswith("apt-get install")]
    assert {"bluez", "python3-venv", "fonts-noto-cjk", "cage", "chromium"} <= set(apt_install)
    assert any(
        line.startswith("useradd") and "--groups bluetooth" in line and line.endswith(" shopedge")
        for line in log
    )
    assert any(line.startswith("useradd") and "--groups video,input shopedge-kiosk" in line for line in log)
    # Order: stop the agent, install the code, back up and migrate the DB, then start again.
    assert (
        _index(log, "systemctl stop shopedge.service")
        < _index(log, "pip -m pip install --quiet --upgrade " + str(ROOT))
        < _index(log, "runuser -u shopedge")
        < _index(log, "systemctl start shopedge.service")
    )
    assert "systemctl enable --quiet shopedge.service" in log
    assert "systemctl enable --quiet shopedge-kiosk.service" in log

    state_db = open_state_db(db)
    assert current_heads(state_db) == script_heads()
    assert get_setting(state_db, "device_identity") == "kept-identity"
    state_db.close()
    backups = sorted((root / "var/lib/shopedge/backups").glob("shopedge-*.db"))
    assert len(backups) == 1
    with sqlite3.connect(backups[0]) as conn:
        assert conn.execute("SELECT value FROM settings WHERE key='device_identity'").fetchone() == (
            "kept-identity",
        )
    units = root / "etc/systemd/system"
    assert (units / "shopedge.service").read_text() == (ROOT / "systemd/shopedge.service").read_text()
    assert "--kiosk" in (units / "shopedge-kiosk.service").read_text()
    assert not (units / "shopedge-relay.service").exists()

    # Update: the same script again creates nothing twice and keeps the data.
    out, log = _install(root, bin_dir, state)
    assert not [line for line in log if line.startswith(("apt-get install", "useradd", "groupadd"))]
    assert "creating" not in out
    assert "systemctl stop shopedge.service" in log and "systemctl start shopedge.service" in log
    state_db = open_state_db(db)
    assert get_setting(state_db, "device_identity") == "kept-identity"
    state_db.close()


def test_fresh_install_without_config_asks_for_provision(tmp_path: Path) -> None:
    root = tmp_path / "root"
    bin_dir, state = _stubs(tmp_path)
    out, log = _install(root, bin_dir, state)
    assert "Next: sudo shopedge provision" in out
    assert not any(line.startswith("systemctl start") for line in log)
    assert not any(line.startswith("runuser") for line in log)  # no DB yet, nothing to migrate
    assert "systemctl enable --quiet shopedge.service" in log
