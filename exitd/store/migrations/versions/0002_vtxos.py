"""vtxos: imported bark VTXOs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "vtxos",
        sa.Column("vtxo_id", sa.String(80), primary_key=True),
        sa.Column("encoded", sa.LargeBinary(), nullable=False),
        sa.Column("amount_sat", sa.BigInteger(), nullable=False),
        sa.Column("expiry_height", sa.Integer(), nullable=False),
        sa.Column("exit_delta", sa.Integer(), nullable=False),
        sa.Column("exit_depth", sa.Integer(), nullable=False),
        sa.Column("policy_type", sa.String(40), nullable=False),
        sa.Column("user_pubkey", sa.String(66), nullable=False),
        sa.Column("server_pubkey", sa.String(66), nullable=False),
        sa.Column("chain_anchor", sa.String(80), nullable=False),
        sa.Column("key_index", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("imported_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_vtxos_user_pubkey", "vtxos", ["user_pubkey"])
    op.create_index("ix_vtxos_chain_anchor", "vtxos", ["chain_anchor"])


def downgrade() -> None:
    op.drop_table("vtxos")
