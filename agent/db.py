"""The agent's state database: one SQLite file (WAL) in the state directory.

Owns opening it (`base.statedb.StateDB`: pragmas on every connection) and bringing its schema
up to date with the Alembic migrations in `agent/migrations`, applied at start so a device in the
field upgrades in place. Each capability adds its own migration branch off the base revision,
and `upgrade("heads")` applies them all. Alembic and SQLAlchemy (~0.7 s and ~25 MB together on
this machine) are imported only when the stored revisions differ from the code's, which
`code_heads` reads from the revision files themselves; most starts load neither. When the
daemon does need them (a device's first start, a start after an upgrade), `start_migration`
runs the migration in a child process: imported once, those ~25 MB would stay resident for as long
as that daemon runs.
"""

from __future__ import annotations

import ast
import functools
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from base.statedb import StateDB

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Engine

__all__ = [
    "Migration",
    "MigrationError",
    "MigrationFailed",
    "code_heads",
    "current_heads",
    "migrate",
    "migrate_apart",
    "open_engine",
    "open_state_db",
    "prepare_state_db",
    "script_heads",
    "start_migration",
    "stored_heads",
]

MIGRATIONS = Path(__file__).with_name("migrations")
# Under systemd's TimeoutStartSec (90 s, systemd/shopedge.service), so the daemon says why it
# could not start instead of being killed mid-start.
MIGRATE_TIMEOUT_S = 75.0
_DATABASE_ERROR_EXIT = 3  # the child's exit code for "the database cannot be written"
_HAS_VERSION_TABLE = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"


def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def open_state_db(path: Path) -> StateDB:
    """The state DB at `path` (its directory created if missing), as every room uses it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return StateDB(path)


def open_engine(path: Path) -> Engine:
    """An SQLAlchemy engine on the state DB, for Alembic and schema inspection only; every
    connection gets WAL, FULL sync and a busy timeout like `StateDB`'s."""
    from sqlalchemy import create_engine, event

    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{path}", future=True)
    event.listen(engine, "connect", _on_connect)
    return engine


def _alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


@functools.cache
def code_heads() -> frozenset[str]:
    """The head revisions this code's migrations end in, read from the revision files (their
    `revision` and `down_revision` assignments) without importing Alembic."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, expr = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target, expr = node.target, node.value
            else:
                continue
            if not isinstance(target, ast.Name) or target.id not in ("revision", "down_revision"):
                continue
            value = ast.literal_eval(expr)
            if target.id == "revision":
                revisions.add(str(value))
            elif value is not None:
                parents.update([value] if isinstance(value, str) else value)
    return frozenset(revisions - parents)


def _engine(db: StateDB | Engine) -> tuple[Engine, bool]:
    """An engine for Alembic on `db`, and whether it is ours to dispose of."""
    if isinstance(db, StateDB):
        return open_engine(db.path), True
    return db, False


def stored_heads(db: StateDB | Engine) -> frozenset[str]:
    """The revisions the database says it is at (empty for a new file), read without Alembic.
    The migration tests and tools may hand an SQLAlchemy engine instead of the StateDB."""
    if isinstance(db, StateDB):
        if not db.path.exists():  # a new device: nothing applied, and no empty file left behind
            return frozenset()
        with db.transaction() as conn:
            return _stored_heads(conn.execute)
    with db.connect() as connection:
        return _stored_heads(connection.exec_driver_sql)


def _stored_heads(execute: Callable[[str], Any]) -> frozenset[str]:
    if execute(_HAS_VERSION_TABLE).fetchone() is None:  # nothing applied yet
        return frozenset()
    return frozenset(str(row[0]) for row in execute("SELECT version_num FROM alembic_version").fetchall())


def migrate(db: StateDB | Engine, revision: str = "heads") -> None:
    """Apply migrations up to `revision` (default: every branch head). Idempotent; when the
    database is already at the code's heads, neither Alembic nor SQLAlchemy is imported."""
    if revision == "heads" and stored_heads(db) == code_heads():
        return
    from alembic import command

    engine, owned = _engine(db)
    try:
        command.upgrade(_alembic_config(engine), revision)
    finally:
        if owned:
            engine.dispose()


class MigrationError(Exception):
    """The state DB could not be migrated because of the database itself (full disk, read-only
    file, I/O error); the message names the file and SQLite's reason."""


class MigrationFailed(Exception):
    """The migration itself failed (a database from a newer release, a broken revision): the
    message is the child's last line, `output` its whole stderr (the traceback)."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


def _database_error(exc: BaseException) -> sqlite3.Error | OSError | None:
    """The database's own error behind `exc`, if that is what it is (Alembic runs SQLAlchemy,
    whose DBAPIError wraps the sqlite3 one); None for anything else, a bug to surface."""
    if isinstance(exc, (sqlite3.Error, OSError)):
        return exc
    orig = getattr(exc, "orig", None)
    return orig if isinstance(orig, sqlite3.Error) else None


class Migration:
    """The state DB's migration: a child process bringing it to the code's heads (`python -m
    agent.db PATH`), started by `start_migration` so the daemon's own imports run beside it, or
    nothing to do when the schema is current (`child` None)."""

    def __init__(self, path: Path, child: subprocess.Popen[str] | None, timeout_s: float) -> None:
        self.path = path
        self._child = child
        self._timeout_s = timeout_s
        self._deadline = time.monotonic() + timeout_s

    def wait(self) -> bool:
        """Block until the child is done (call it from a thread); False if there was none.

        Raises:
            MigrationError: the database cannot be written (the child's one-line reason).
            MigrationFailed: the migration itself failed, or did not finish within the timeout
                (the child is killed; SQLite rolls back what it had not committed).
        """
        if self._child is None:
            return False
        try:
            _, stderr = self._child.communicate(timeout=max(0.0, self._deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.communicate()
            raise MigrationFailed(
                f"{self.path}: the migration did not finish within {self._timeout_s:g} s", ""
            ) from None
        code = self._child.returncode
        if code == _DATABASE_ERROR_EXIT:
            raise MigrationError((stderr.strip().splitlines() or ["the database cannot be written"])[-1])
        if code != 0:
            last = (stderr.strip().splitlines() or [f"exit code {code}"])[-1]
            raise MigrationFailed(f"{self.path}: {last}", stderr)
        return True


def start_migration(path: Path, timeout_s: float = MIGRATE_TIMEOUT_S) -> Migration:
    """The state DB at `path`'s migration, its child started when the stored revisions differ
    from the code's (read once, here)."""
    db = StateDB(path)
    try:
        current = stored_heads(db) == code_heads()
    finally:
        db.close()
    if current:
        return Migration(path, None, timeout_s)
    package_root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    child = subprocess.Popen(
        [sys.executable, "-m", "agent.db", str(path)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return Migration(path, child, timeout_s)


def migrate_apart(db: StateDB, timeout_s: float = MIGRATE_TIMEOUT_S) -> bool:
    """Bring the state DB to the code's heads in a child process and wait for it; False if it
    was there already (no child started). Blocking: call it from a thread. Raises as
    `Migration.wait` does."""
    return start_migration(db.path, timeout_s).wait()


def current_heads(db: StateDB | Engine) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    engine, owned = _engine(db)
    try:
        with engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())
    finally:
        if owned:
            engine.dispose()


def script_heads() -> set[str]:
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory(str(MIGRATIONS)).get_heads())


def prepare_state_db(path: Path) -> None:
    """Create or upgrade the state DB at `path` (what `Outbox.open(prepare=...)` runs first)."""
    db = open_state_db(path)
    try:
        migrate(db)
    finally:
        db.close()


def _main(argv: list[str]) -> int:
    """`python -m agent.db PATH`: migrate the state DB at PATH (what `migrate_apart` runs)."""
    if len(argv) != 1:
        print("usage: python -m agent.db STATE_DB_PATH", file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        prepare_state_db(path)
    except Exception as exc:
        reason = _database_error(exc)
        if reason is None:
            raise
        print(f"{path}: {reason}", file=sys.stderr)
        return _DATABASE_ERROR_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
