"""Agent runs: each start and clean stop, so a crash (no clean stop) is detected at the next start.

Revision ID: 0002_agent_runs
Revises: 0001_base
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_agent_runs"
down_revision = "0001_base"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("stopped_at", sa.Float, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("agent_runs")
