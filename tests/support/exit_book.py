"""A small book of exits for the engine's pure decisions: one chain (root, node, leaf) under a round tx."""

from __future__ import annotations

from bitcoin.core import COutPoint, CScript, CTransaction, CTxIn, CTxOut, lx

from exitd.chain.view import BlockRef, TxLocation, TxState
from exitd.engine.model import ChildRecord, ChildSource, ChildStatus, ExitBook, LiveExit, TrackedTx
from exitd.engine.states import ExitState, ExitStateKind

ROOT, NODE, LEAF = "aa" * 32, "bb" * 32, "cc" * 32
FUNDING = "dd" * 32  # the round tx the root spends
TIP = BlockRef(500, "55" * 32)


def tracked(txid: str, input_txid: str, vsize: int = 150) -> TrackedTx:
    """A stand-in exit tx spending output 2 of `input_txid` (its raw bytes serve only that)."""
    spending = CTransaction([CTxIn(COutPoint(lx(input_txid), 2))], [CTxOut(0, CScript())])
    return TrackedTx(txid, spending.serialize(), vsize, input_txid, 1)


def book_of_one_chain() -> ExitBook:
    book = ExitBook()
    book.txs = {ROOT: tracked(ROOT, FUNDING), NODE: tracked(NODE, ROOT), LEAF: tracked(LEAF, NODE)}
    return book


def live(
    vtxo: str,
    txids: list[str],
    state: ExitState | None = None,
    amount: int = 100_000,
    expiry_height: int = 100_000,
) -> LiveExit:
    e = LiveExit(
        f"{vtxo}:0",
        amount,
        expiry_height,
        txids,
        state or ExitState(ExitStateKind.PROCESSING, TIP.height),
        "user",
        0,
    )
    e.claim_delay, e.claim_locktime = 12, None
    return e


def child(txid: str, parent: str, status: ChildStatus, fee: int = 600, ours: bool = True) -> ChildRecord:
    source = ChildSource.WALLET if ours else ChildSource.NETWORK
    return ChildRecord(txid, parent, b"", fee, 150, 2000, source, status)


def confirmed_at(height: int) -> TxLocation:
    return TxLocation(TxState.CONFIRMED, BlockRef(height, f"{height:064x}"))
