"""Alembic runs only when the stored schema differs from the code's (a real SQLite file)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agent.db import (
    MigrationError,
    MigrationFailed,
    code_heads,
    current_heads,
    migrate,
    migrate_apart,
    open_engine,
    open_state_db,
    script_heads,
    stored_heads,
)
from base.statedb import StateDB

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


def _in_a_fresh_process(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path;" + code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _modules_after_migrate(db: Path) -> str:
    return _in_a_fresh_process(
        "from agent.db import migrate, open_engine;"
        f"e = open_engine(Path({str(db)!r})); migrate(e); e.dispose();"
        "print('alembic' in sys.modules)"
    )


def test_a_start_on_a_current_schema_never_imports_alembic(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    assert _modules_after_migrate(db) == "True"  # a new file: Alembic creates the schema
    assert _modules_after_migrate(db) == "False"  # the next start: nothing to do, nothing loaded


def _migrate_apart_in_a_fresh_process(db: Path) -> str:
    return _in_a_fresh_process(
        "from agent.db import code_heads, migrate_apart, open_state_db, stored_heads;"
        f"db = open_state_db(Path({str(db)!r})); done = migrate_apart(db);"
        "print(done, stored_heads(db) == code_heads(), 'alembic' in sys.modules, 'sqlalchemy' in sys.modules)"
    )


def test_the_daemon_s_migration_runs_in_a_child_and_leaves_alembic_out_of_its_memory(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    assert _migrate_apart_in_a_fresh_process(db) == "True True False False"  # created apart
    assert _migrate_apart_in_a_fresh_process(db) == "False True False False"  # nothing to do
    engine = open_engine(db)
    try:
        assert current_heads(engine) == code_heads()  # as Alembic itself reads it
    finally:
        engine.dispose()


def test_an_older_schema_is_brought_up_apart(tmp_path: Path) -> None:
    engine = open_engine(tmp_path / "state.db")
    try:
        migrate(engine, "0100_outbox")  # as an older release left it
    finally:
        engine.dispose()
    db = open_state_db(tmp_path / "state.db")
    try:
        assert migrate_apart(db) is True
        assert stored_heads(db) == code_heads()
    finally:
        db.close()


def test_a_database_that_cannot_be_written_is_one_line_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("a file where the state directory should be")
    path = tmp_path / "not-a-dir" / "state.db"
    db = StateDB(path)
    with pytest.raises(MigrationError) as caught:
        migrate_apart(db)
    db.close()
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message


def test_a_database_from_a_newer_release_fails_with_alembic_s_reason(tmp_path: Path) -> None:
    """Software rolled back under a newer schema: the child's reason, and its traceback kept."""
    path = tmp_path / "state.db"
    db = open_state_db(path)
    try:
        migrate_apart(db)
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future' WHERE rowid = 1")
        with pytest.raises(MigrationFailed) as caught:
            migrate_apart(db)
    finally:
        db.close()
    assert "9999_from_the_future" in str(caught.value) and str(path) in str(caught.value)
    assert "Traceback" in caught.value.output


def test_the_daemon_on_a_newer_schema_says_so_in_one_line_and_exits_1(tmp_path: Path) -> None:
    state = tmp_path / "state"
    db = open_state_db(state / "shopedge.db")
    try:
        migrate_apart(db)
    finally:
        db.close()
    with sqlite3.connect(state / "shopedge.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future' WHERE rowid = 1")
    text = (ROOT / "config.example.toml").read_text()
    config = tmp_path / "config.toml"
    config.write_text(text.replace('state_dir = "/var/lib/shopedge"', f'state_dir = "{state}"'))
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    records = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    errors = [r for r in records if r.get("level") in ("ERROR", "error")]
    assert len(errors) == 1, records
    assert errors[0]["msg"] == "cannot start: the state database could not be migrated", errors
    assert "9999_from_the_future" in errors[0]["error"] and "Traceback" in errors[0]["output"]
