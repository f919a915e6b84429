"""exits: exit states, shared exit txs, CPFP children; preimages of HTLC-receive VTXOs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("vtxos") as batch:
        batch.add_column(sa.Column("preimage", sa.LargeBinary(), nullable=True))
    op.create_table(
        "exits",
        sa.Column("vtxo_id", sa.String(80), sa.ForeignKey("vtxos.vtxo_id"), primary_key=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("state_kind", sa.String(32), nullable=False),
        sa.Column("history", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_by", sa.String(32), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_exits_state_kind", "exits", ["state_kind"])
    op.create_table(
        "exit_txs",
        sa.Column("txid", sa.String(64), primary_key=True),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("vsize", sa.Integer(), nullable=False),
        sa.Column("input_txid", sa.String(64), nullable=False),
        sa.Column("anchor_vout", sa.Integer(), nullable=False),
    )
    op.create_table(
        "exit_tx_links",
        sa.Column("vtxo_id", sa.String(80), sa.ForeignKey("exits.vtxo_id"), primary_key=True),
        sa.Column("level", sa.Integer(), primary_key=True),
        sa.Column("txid", sa.String(64), sa.ForeignKey("exit_txs.txid"), nullable=False),
    )
    op.create_index("ix_exit_tx_links_txid", "exit_tx_links", ["txid"])
    op.create_table(
        "exit_children",
        sa.Column("txid", sa.String(64), primary_key=True),
        sa.Column("parent_txid", sa.String(64), sa.ForeignKey("exit_txs.txid"), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("fee", sa.BigInteger(), nullable=False),
        sa.Column("vsize", sa.Integer(), nullable=False),
        sa.Column("package_rate", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("block_height", sa.Integer(), nullable=True),
        sa.Column("block_hash", sa.String(64), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_exit_children_parent_txid", "exit_children", ["parent_txid"])
    op.create_index("ix_exit_children_status", "exit_children", ["status"])


def downgrade() -> None:
    op.drop_table("exit_children")
    op.drop_table("exit_tx_links")
    op.drop_table("exit_txs")
    op.drop_table("exits")
    with op.batch_alter_table("vtxos") as batch:
        batch.drop_column("preimage")
