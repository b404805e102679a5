"""Alembic environment: runs migrations on the engine the agent hands over (no alembic.ini)."""

from alembic import context
from sqlalchemy import Engine

engine = context.config.attributes["engine"]
assert isinstance(engine, Engine)

with engine.connect() as connection:
    context.configure(connection=connection, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
