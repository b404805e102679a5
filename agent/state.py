"""Small device state kept in the agent DB: settings (identity, generated keys) and run history."""

from __future__ import annotations

import time

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)

__all__ = ["StateSettings", "finish_run", "get_setting", "last_run_was_clean", "put_setting", "start_run"]

metadata = MetaData()

settings = Table(
    "settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

agent_runs = Table(
    "agent_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version", String(32), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("stopped_at", Float, nullable=True),
)


def get_setting(engine: Engine, key: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(settings.c.value).where(settings.c.key == key)).scalar_one_or_none()


def put_setting(engine: Engine, key: str, value: str) -> None:
    with engine.begin() as conn:
        exists = conn.execute(select(settings.c.key).where(settings.c.key == key)).first()
        stmt = (
            update(settings).where(settings.c.key == key).values(value=value, updated_at=time.time())
            if exists
            else insert(settings).values(key=key, value=value, updated_at=time.time())
        )
        conn.execute(stmt)


class StateSettings:
    """The settings table as the other rooms' port (`ctx.services["settings"]`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get_setting_blocking(self, key: str) -> str | None:
        return get_setting(self.engine, key)

    def put_setting_blocking(self, key: str, value: str) -> None:
        put_setting(self.engine, key, value)


def last_run_was_clean(engine: Engine) -> bool:
    """False when the previous run has no stop time: power loss, SIGKILL or a crash."""
    with engine.connect() as conn:
        row = conn.execute(select(agent_runs.c.stopped_at).order_by(agent_runs.c.id.desc()).limit(1)).first()
    return row is None or row.stopped_at is not None


def start_run(engine: Engine, version: str) -> int:
    with engine.begin() as conn:
        result = conn.execute(insert(agent_runs).values(version=version, started_at=time.time()))
        return int(result.inserted_primary_key[0])  # type: ignore[index]


def finish_run(engine: Engine, run_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(update(agent_runs).where(agent_runs.c.id == run_id).values(stopped_at=time.time()))
