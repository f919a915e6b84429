"""leader: the leadership term of daemons sharing one PostgreSQL database

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    leader = op.create_table(
        "leader",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("term", sa.BigInteger(), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("rest_url", sa.String(200), nullable=False),
        sa.Column("since", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(leader, [{"id": 1, "term": 0, "holder": "", "rest_url": "", "since": 0}])


def downgrade() -> None:
    op.drop_table("leader")
