"""Package shape: explicit exports, pure modules, and no bleak import unless the bleak driver is chosen."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import drivers.ble

PACKAGE = Path(drivers.ble.__file__).parent
ROOT = PACKAGE.parents[1]


def test_package_all_is_explicit_and_importable() -> None:
    assert drivers.ble.__all__ == sorted(drivers.ble.__all__)
    for name in drivers.ble.__all__:
        assert hasattr(drivers.ble, name)


def _imports(module: Path) -> set[str]:
    tree = ast.parse(module.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("name", ["frames.py", "presence.py", "recovery.py", "const.py", "simple_beacon.py"])
def test_core_modules_do_no_io(name: str) -> None:
    assert not _imports(PACKAGE / name) & {
        "asyncio",
        "bleak",
        "dbus_fast",
        "sqlalchemy",
        "aiohttp",
        "socket",
        "logging",
    }


def test_importing_the_package_and_the_replay_path_never_imports_bleak() -> None:
    code = (
        "import sys\n"
        "import drivers.ble, agent.wiring.ble, drivers.ble.replay\n"
        "from agent.config import BLEConfig\n"
        "from drivers.ble.base import open_source\n"
        "open_source(BLEConfig(driver='replay'))\n"
        "print('bleak' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
