"""chain: the txids the locator watches for in blocks, and where it found them (no tx index needed)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "watched_txs",
        sa.Column("txid", sa.String(64), primary_key=True),
        sa.Column("block_height", sa.Integer(), nullable=True),
        sa.Column("block_hash", sa.String(64), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("watched_txs")
