"""wallet: the funding plan's fan-out txs

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "funding_splits",
        sa.Column("txid", sa.String(64), primary_key=True),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("fee", sa.BigInteger(), nullable=False),
        sa.Column("coins", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_funding_splits_status", "funding_splits", ["status"])


def downgrade() -> None:
    op.drop_table("funding_splits")
