"""Tables. The schema changes only through alembic revisions in `exitd/store/migrations/versions/`."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, LargeBinary, String, Text
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
    # spendable | locked (in an exit) | spent, as barkd's VtxoStateInfo.
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="spendable")
    imported_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # The 32-byte preimage of an HTLC-receive VTXO's payment hash, once known (its claim needs it).
    preimage: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # import (only a person vouched for it, once) | barkd (the followed wallet lists it).
    source: Mapped[str] = mapped_column(String(16), nullable=False, default="import")
    # The user asked the guard to protect it although no source vouches for it.
    protect: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # What the source last said of it (barkd's VtxoStateInfo type, or "missing" from its list), and when.
    seen_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    seen_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # When the user said it is no longer theirs (its state is then spent and nothing exits it).
    gone_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class ExitRow(Base):
    """One exit per VTXO: its current state, the states it left (oldest first) and its last error, as the
    engine's JSON records (exitd/engine/records.py); `state_kind` is the state's kind, for queries."""

    __tablename__ = "exits"

    vtxo_id: Mapped[str] = mapped_column(String(80), ForeignKey("vtxos.vtxo_id"), primary_key=True)
    state: Mapped[str] = mapped_column(Text, nullable=False)
    state_kind: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    history: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # user | expiry-guard | foreign-broadcast
    started_by: Mapped[str] = mapped_column(String(32), nullable=False)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class ExitTxRow(Base):
    """A signed exit tx, stored once however many exits share it."""

    __tablename__ = "exit_txs"

    txid: Mapped[str] = mapped_column(String(64), primary_key=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    vsize: Mapped[int] = mapped_column(Integer, nullable=False)
    # The tx this one spends: the previous level, or the on-chain chain anchor for level 0.
    input_txid: Mapped[str] = mapped_column(String(64), nullable=False)
    anchor_vout: Mapped[int] = mapped_column(Integer, nullable=False)


class ExitTxLinkRow(Base):
    """Level `level` of the exit of `vtxo_id` is `txid`: the reference count of a shared tx is its links."""

    __tablename__ = "exit_tx_links"

    vtxo_id: Mapped[str] = mapped_column(String(80), ForeignKey("exits.vtxo_id"), primary_key=True)
    level: Mapped[int] = mapped_column(Integer, primary_key=True)
    txid: Mapped[str] = mapped_column(String(64), ForeignKey("exit_txs.txid"), nullable=False, index=True)


class ExitChildRow(Base):
    """A CPFP child of an exit tx: ours (stored before it is ever broadcast) or one found on the network."""

    __tablename__ = "exit_children"

    txid: Mapped[str] = mapped_column(String(64), primary_key=True)
    parent_txid: Mapped[str] = mapped_column(
        String(64), ForeignKey("exit_txs.txid"), nullable=False, index=True
    )
    raw: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    fee: Mapped[int] = mapped_column(BigInteger, nullable=False)
    vsize: Mapped[int] = mapped_column(Integer, nullable=False)
    package_rate: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # wallet | network
    source: Mapped[str] = mapped_column(String(16), nullable=False)
    # stored | broadcast | confirmed | replaced | abandoned
    status: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    block_height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    block_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class CoinReservationRow(Base):
    """A wallet coin promised to a transaction that is not confirmed yet: no other builder may spend it.

    Stored in the same transaction as what spends the coin (a CPFP child, a send) and before it is
    broadcast, so two builders, or one before and one after a restart, never pick the same coin.
    """

    __tablename__ = "coin_reservations"

    txid: Mapped[str] = mapped_column(String(64), primary_key=True)
    vout: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The txid of the transaction that spends the coin.
    reserved_by: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    # cpfp (the exit engine releases it) | send (the wallet does, when bitcoind never saw the send)
    purpose: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class FundingSplitRow(Base):
    """A fan-out tx of the wallet turning a coin into the coins the funding plan needs
    (exitd/wallet/planner.py). Stored with its inputs' reservations before it is broadcast, so that after a
    restart it is broadcast again or found in the mempool, and never made a second time."""

    __tablename__ = "funding_splits"

    txid: Mapped[str] = mapped_column(String(64), primary_key=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    fee: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # The coins it makes (its outputs).
    coins: Mapped[int] = mapped_column(Integer, nullable=False)
    # stored | broadcast | confirmed | abandoned
    status: Mapped[str] = mapped_column(String(16), nullable=False, index=True)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class LeaderRow(Base):
    """The one row (id 1) naming the daemon that may spend, when several share a PostgreSQL database
    (exitd/store/leader.py). `term` grows with every new leader; a transaction that spends or changes
    exits checks it (Store.session(fenced=True)), so a deposed leader's write fails. Unused on SQLite: one
    daemon per file."""

    __tablename__ = "leader"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    term: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # hostname:pid of the leader, and its REST address, for the standbys' answers.
    holder: Mapped[str] = mapped_column(String(200), nullable=False)
    rest_url: Mapped[str] = mapped_column(String(200), nullable=False)
    since: Mapped[int] = mapped_column(BigInteger, nullable=False)


class WatchedTxRow(Base):
    """A txid the chain locator (exitd.chain.locator) watches for in new blocks, and the block it was in.

    The height read up to is in `meta` (chain_processed_height, chain_processed_hash).
    """

    __tablename__ = "watched_txs"

    txid: Mapped[str] = mapped_column(String(64), primary_key=True)
    block_height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    block_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ClaimTxRow(Base):
    """A signed claim candidate, stored before it is ever broadcast. The candidates of one claim spend the
    same exit outputs to the same destination; each replaces the one before it (BIP125), and whichever
    confirms completes the exits (exitd/engine/replacement.py)."""

    __tablename__ = "claim_txs"

    txid: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The claim's first candidate (its own txid for the first), and this one's place among them from 0.
    first_txid: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    raw: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    fee: Mapped[int] = mapped_column(BigInteger, nullable=False)
    vsize: Mapped[int] = mapped_column(Integer, nullable=False)
    fee_rate: Mapped[int] = mapped_column(BigInteger, nullable=False)  # sat/kvB
    # The tip when it was signed; the tip at which the node refused it for its fee, if it did.
    signed_height: Mapped[int] = mapped_column(Integer, nullable=False)
    refused_height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
