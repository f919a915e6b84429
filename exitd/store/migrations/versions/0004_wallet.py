"""wallet: coin reservations of the on-chain wallet

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "coin_reservations",
        sa.Column("txid", sa.String(64), primary_key=True),
        sa.Column("vout", sa.Integer(), primary_key=True),
        sa.Column("reserved_by", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_coin_reservations_reserved_by", "coin_reservations", ["reserved_by"])


def downgrade() -> None:
    op.drop_table("coin_reservations")
