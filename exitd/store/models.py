"""Tables. The schema changes only through alembic revisions in `migrations/versions/`."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, LargeBinary, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Meta(Base):
    """Small facts about this datadir: the network it was made for, the wallet fingerprint, birthday."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String, nullable=False)


class VtxoRow(Base):
    """An imported VTXO: its bark encoding (always version 2) and the facts the API lists without decoding."""

    __tablename__ = "vtxos"

    vtxo_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    encoded: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    amount_sat: Mapped[int] = mapped_column(BigInteger, nullable=False)
    expiry_height: Mapped[int] = mapped_column(Integer, nullable=False)
    exit_delta: Mapped[int] = mapped_column(Integer, nullable=False)
    exit_depth: Mapped[int] = mapped_column(Integer, nullable=False)
    policy_type: Mapped[str] = mapped_column(String(40), nullable=False)
    user_pubkey: Mapped[str] = mapped_column(String(66), nullable=False, index=True)
    server_pubkey: Mapped[str] = mapped_column(String(66), nullable=False)
    chain_anchor: Mapped[str] = mapped_column(String(80), nullable=False, index=True)
    # Index i of bark's VTXO key m/350'/0'/i that owns user_pubkey; None while the wallet holds no such key.
    key_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # spendable | locked | spent, as barkd's VtxoStateInfo.
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="spendable")
    imported_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
