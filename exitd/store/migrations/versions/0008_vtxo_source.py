"""vtxos: where each VTXO came from and what its source last said of it

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("vtxos") as batch:
        batch.add_column(sa.Column("source", sa.String(16), nullable=False, server_default="import"))
        batch.add_column(sa.Column("protect", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("seen_state", sa.String(16), nullable=True))
        batch.add_column(sa.Column("seen_at", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("gone_at", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vtxos") as batch:
        for column in ("gone_at", "seen_at", "seen_state", "protect", "source"):
            batch.drop_column(column)
