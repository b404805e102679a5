"""Outbox: the durable offline queue (`offline_queue`), its dedupe keys and its dead letters.

Revision ID: 0100_outbox
Revises: 0002_agent_runs
"""

from alembic import op

from offline_queue import OUTBOX_TABLES_V1

revision = "0100_outbox"
down_revision = "0002_agent_runs"
branch_labels = ("outbox",)
depends_on = None


def upgrade() -> None:
    # The outbox owns its table definitions (`offline_queue._schema`): the webhook relay's
    # database, which has no Alembic history, is created from the same statements.
    for statement in OUTBOX_TABLES_V1:
        op.execute(statement)


def downgrade() -> None:
    op.drop_index("ix_outbox_dead_stream_id", "outbox_dead")
    op.drop_table("outbox_dead")
    op.drop_table("outbox_keys")
    op.drop_index("ix_outbox_durability_id", "outbox")
    op.drop_index("ix_outbox_stream_id", "outbox")
    op.drop_table("outbox")
