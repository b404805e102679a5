"""The house rules that import-linter does not check: no production file over 600 lines, and
the composition root keeps to about a third of the production code."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("agent", "base", "cloud", "membership", "pos_bridge", "drivers", "offline_queue", "emulators")


def _production_files() -> list[Path]:
    return [
        path
        for room in ROOMS
        for path in (ROOT / room).rglob("*.py")
        if "migrations/versions" not in path.as_posix()
    ]


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_production_file_is_over_600_lines() -> None:
    long = {str(path.relative_to(ROOT)): _lines(path) for path in _production_files() if _lines(path) > 600}
    assert long == {}


def test_the_composition_root_is_about_a_third_of_the_production_lines() -> None:
    files = _production_files()
    total = sum(_lines(path) for path in files)
    agent = sum(_lines(path) for path in files if path.relative_to(ROOT).parts[0] == "agent")
    assert agent / total < 0.36, f"agent/ holds {agent} of {total} production lines"


def test_every_room_says_what_it_owns() -> None:
    for room in ROOMS:
        doc = (ROOT / room / "__init__.py").read_text(encoding="utf-8").lstrip()
        assert doc.startswith('"""'), f"{room}/__init__.py has no docstring saying what the room owns"
