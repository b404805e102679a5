"""Alembic runs only when the stored schema differs from the code's (a real SQLite file)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent.db import code_heads, current_heads, migrate, open_engine, script_heads, stored_heads

ROOT = Path(__file__).resolve().parents[2]


def test_code_heads_read_from_the_files_match_alembic_s() -> None:
    assert code_heads() == script_heads()
    assert code_heads()


def test_fresh_then_behind_then_current(tmp_path: Path) -> None:
    engine = open_engine(tmp_path / "state.db")
    try:
        assert stored_heads(engine) == frozenset()
        migrate(engine, "0100_outbox")  # as an older release that had only the outbox left it
        assert stored_heads(engine) == {"0100_outbox"} != code_heads()
        migrate(engine)  # the stored revisions differ: Alembic brings every branch up
        assert stored_heads(engine) == code_heads() == current_heads(engine)
        migrate(engine)  # idempotent
        assert stored_heads(engine) == code_heads()
    finally:
        engine.dispose()


def _modules_after_migrate(db: Path) -> str:
    code = (
        "import sys; from pathlib import Path; from agent.db import migrate, open_engine;"
        f"e = open_engine(Path({str(db)!r})); migrate(e); e.dispose();"
        "print('alembic' in sys.modules)"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_a_start_on_a_current_schema_never_imports_alembic(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    assert _modules_after_migrate(db) == "True"  # a new file: Alembic creates the schema
    assert _modules_after_migrate(db) == "False"  # the next start: nothing to do, nothing loaded
