"""claims: every signed claim candidate, so that whichever confirms completes its exits

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "claim_txs",
        sa.Column("txid", sa.String(64), primary_key=True),
        sa.Column("first_txid", sa.String(64), nullable=False, index=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("fee", sa.BigInteger(), nullable=False),
        sa.Column("vsize", sa.Integer(), nullable=False),
        sa.Column("fee_rate", sa.BigInteger(), nullable=False),
        sa.Column("signed_height", sa.Integer(), nullable=False),
        sa.Column("refused_height", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("claim_txs")
