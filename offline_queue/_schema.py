"""The outbox's tables, defined once, for every database that holds an outbox.

Two databases hold one: the device's state DB, whose schema is the agent's Alembic history
(migration `0100_outbox` runs `OUTBOX_TABLES_V1` through `op.execute`), and the webhook relay's
own file in the merchant's cloud, which holds nothing but the outbox and has no Alembic
history: `prepare_outbox_db` (what the relay passes as `Outbox.open(prepare=...)`) runs the
same statements. Why not a second Alembic history for the cloud: it would be a second copy of
this DDL, and the two would drift. The outbox owns its schema; each consumer applies it.

The statements are versioned, never edited: a later change to the outbox tables becomes
`OUTBOX_TABLES_V2` (the ALTERs from V1), a new device migration that executes it, and one
more step in `prepare_outbox_db` keyed on `PRAGMA user_version`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["OUTBOX_SCHEMA_VERSION", "OUTBOX_TABLES_V1", "prepare_outbox_db"]

# The DDL SQLAlchemy emitted for the original 0100_outbox migration, verbatim, so a device
# migrated before this module existed and one migrated after hold identical tables.
OUTBOX_TABLES_V1: tuple[str, ...] = (
    """CREATE TABLE outbox (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    stream VARCHAR(64) NOT NULL,
    payload TEXT NOT NULL,
    dedupe_key VARCHAR(255),
    durability VARCHAR(16) NOT NULL,
    attempts INTEGER DEFAULT '0' NOT NULL,
    created_at FLOAT NOT NULL,
    expires_at FLOAT,
    not_before FLOAT DEFAULT '0' NOT NULL,
    lease_until FLOAT,
    last_error TEXT,
    nbytes INTEGER NOT NULL
)""",
    "CREATE INDEX ix_outbox_stream_id ON outbox (stream, id)",
    "CREATE INDEX ix_outbox_durability_id ON outbox (durability, id)",
    """CREATE TABLE outbox_keys (
    stream VARCHAR(64) NOT NULL,
    dedupe_key VARCHAR(255) NOT NULL,
    record_id INTEGER NOT NULL,
    created_at FLOAT NOT NULL,
    PRIMARY KEY (stream, dedupe_key)
)""",
    """CREATE TABLE outbox_dead (
    id INTEGER NOT NULL,
    stream VARCHAR(64) NOT NULL,
    payload TEXT NOT NULL,
    dedupe_key VARCHAR(255),
    durability VARCHAR(16) NOT NULL,
    attempts INTEGER NOT NULL,
    created_at FLOAT NOT NULL,
    expires_at FLOAT,
    failed_at FLOAT NOT NULL,
    reason TEXT NOT NULL,
    nbytes INTEGER NOT NULL,
    PRIMARY KEY (id)
)""",
    "CREATE INDEX ix_outbox_dead_stream_id ON outbox_dead (stream, id)",
)
OUTBOX_SCHEMA_VERSION = 1


def prepare_outbox_db(path: Path) -> None:
    """Create the outbox tables in a file that holds only an outbox (the relay's); idempotent.

    Raises:
        sqlite3.Error: the file cannot be created or written (the caller reports it).
        OSError: the directory cannot be created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > OUTBOX_SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"{path}: outbox schema version {version} is newer than this release "
                f"({OUTBOX_SCHEMA_VERSION})"
            )
        if version < 1:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in OUTBOX_TABLES_V1:
                    conn.execute(statement)
                conn.execute("PRAGMA user_version=1")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
    finally:
        conn.close()
