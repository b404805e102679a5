"""Alembic environment for the fleet database: runs on the engine handed over (no alembic.ini)."""

from alembic import context
from sqlalchemy import Engine

engine = context.config.attributes["engine"]
assert isinstance(engine, Engine)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        render_as_batch=connection.dialect.name == "sqlite",
        version_table="fleet_alembic_version",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
