"""A validator's `$` lets one trailing newline through: `re.match(r"^[a-z]+$", "abc\\n")`
matches. `store-001\\n` then passed as a store id (in a topic, a token, a database row), so
every anchored validator in the rooms ends with `\\Z`; this test keeps it that way."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from base.topics import TopicError, parse_topic

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("agent", "base", "cloud", "membership", "pos_bridge", "drivers", "offline_queue", "emulators")


def _compiled_patterns() -> list[tuple[str, int, str, bool]]:
    found = []
    for room in ROOMS:
        for path in sorted((ROOT / room).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "compile"
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "re"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                ):
                    continue
                multiline = any("MULTILINE" in ast.unparse(arg) for arg in node.args[1:])
                found.append((str(path.relative_to(ROOT)), node.lineno, node.args[0].value, multiline))
    return found


def test_the_rooms_compile_anchored_validators() -> None:
    assert len(_compiled_patterns()) > 10


def test_no_validator_ends_with_a_dollar_that_lets_a_newline_through() -> None:
    offenders = [
        f"{path}:{line}: {pattern!r}"
        for path, line, pattern, multiline in _compiled_patterns()
        if pattern.endswith("$") and not pattern.endswith("\\$") and not multiline
    ]
    assert offenders == []


@pytest.mark.parametrize("part", ["store\n", "store-001\n"])
def test_a_topic_segment_with_a_trailing_newline_is_refused(part: str) -> None:
    with pytest.raises(TopicError):
        parse_topic(f"shopedge/v1/{part}/c01/up/presence")
    with pytest.raises(TopicError):
        parse_topic(f"shopedge/v1/store-001/{part}/up/presence")


def test_the_dollar_pitfall_is_real() -> None:
    assert re.match(r"^[a-z]+$", "abc\n") is not None
    assert re.match(r"^[a-z]+\Z", "abc\n") is None
