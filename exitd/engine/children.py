"""Learning what became of CPFP children: ours confirmed, broadcast or beaten, and others' adopted.

Anyone may pay for an exit tx (its anchor is anyone-can-spend), so the engine records every child it sees
spending an anchor, in the mempool or in a block, and counts it as the tx's child: an exit goes on from
wherever the chain is, whoever paid.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from exitd.chain.blocks import BlockSpends, block_spends, raw_transactions
from exitd.chain.rpc import BitcoinRpc, RpcError
from exitd.chain.view import ChainSnapshot, TxState
from exitd.engine.errors import BlockRetrievalFailure, TransactionRetrievalFailure
from exitd.engine.model import ChildRecord, ChildSource, ChildStatus, ExitBook, LiveExit, TrackedTx, set_error
from exitd.engine.persist import ReservationHolder, save_children
from exitd.log import event, get_logger
from exitd.store.db import Store

log = get_logger("engine")

Sharers = Mapping[str, Sequence[LiveExit]]


def update_known(tracked: TrackedTx, snap: ChainSnapshot) -> list[ChildRecord]:
    """Move the tx's children in flight along as the snapshot shows them; the ones that changed."""
    location = snap.location(tracked.txid)
    spender = snap.spenders.get(tracked.anchor)
    changed = []
    for child in tracked.children.values():
        back = location.state is TxState.MEMPOOL and spender == child.txid
        if child.status is ChildStatus.CONFIRMED and back:
            # A reorg put our confirmed package back in the mempool: ours, and in flight again.
            child.status, child.block = ChildStatus.BROADCAST, None
            changed.append(child)
            continue
        if not child.status.in_flight:
            continue
        loc = snap.location(child.txid)
        if loc.state is TxState.CONFIRMED:
            child.status, child.block = ChildStatus.CONFIRMED, loc.block
        elif loc.state is TxState.MEMPOOL and child.status is ChildStatus.STORED:
            child.status = ChildStatus.BROADCAST
        elif (spender is not None and spender != child.txid) or location.state is TxState.CONFIRMED:
            # Another child won the anchor (a replacement of ours, or someone else's).
            child.status = ChildStatus.REPLACED
        else:
            continue
        changed.append(child)
    return changed


class ChildLearner:
    def __init__(
        self, store: Store, rpc: BitcoinRpc, book: ExitBook, wallet: ReservationHolder | None
    ) -> None:
        self.store = store
        self.rpc = rpc
        self.book = book
        self.wallet = wallet
        # (exit txid, block hash) already searched for the tx's child.
        self._scanned: set[tuple[str, str]] = set()

    async def learn(self, snap: ChainSnapshot, sharers: Sharers) -> None:
        """Bring our records of children in line with the chain: confirmed, lost, or adopted from others."""
        changed: list[ChildRecord] = []
        adopt: list[tuple[TrackedTx, str]] = []
        for tracked in self._in_snapshot(snap):
            changed += update_known(tracked, snap)
            spender = snap.spenders.get(tracked.anchor)
            if spender is not None and spender not in tracked.children:
                adopt.append((tracked, spender))
        if adopt:
            changed += await self._adopt(snap, adopt, sharers)
        changed += await self._resolve_confirmed(snap, sharers)
        if changed:
            replaced = [c for c in changed if c.status is ChildStatus.REPLACED]
            await save_children(self.store, self.wallet, changed, release=replaced)

    def _in_snapshot(self, snap: ChainSnapshot) -> list[TrackedTx]:
        """The exit txs the snapshot asked about: of the others it knows nothing, so nothing is learnt."""
        txs = self.book.txs
        return [txs[txid] for txid in snap.txs if txid in txs]

    async def _adopt(
        self, snap: ChainSnapshot, adopt: Sequence[tuple[TrackedTx, str]], sharers: Sharers
    ) -> list[ChildRecord]:
        """Record others' children found in the mempool, with their package's fee data."""
        adopted = []
        raws = await raw_transactions(self.rpc, [txid for _, txid in adopt])
        for (tracked, txid), raw in zip(adopt, raws, strict=True):
            package = snap.packages.get(txid)
            if isinstance(raw, RpcError):
                set_error(sharers.get(tracked.txid, ()), TransactionRetrievalFailure(txid, raw.message))
                continue
            if package is None:
                continue  # confirmed or gone since the snapshot: the next cycle sees where
            child = ChildRecord(
                txid,
                tracked.txid,
                raw,
                package.fee,
                package.vsize - tracked.vsize,
                package.rate,
                ChildSource.NETWORK,
                ChildStatus.BROADCAST,
            )
            tracked.children[txid] = child
            adopted.append(child)
            event(log, logging.INFO, "child_adopted", txid=tracked.txid, child=txid, rate=package.rate)
        return adopted

    async def _resolve_confirmed(self, snap: ChainSnapshot, sharers: Sharers) -> list[ChildRecord]:
        """For exit txs confirmed without a known child, find the P2A spender in their block (once per
        tx and block: a tx mined without its child is not looked for again)."""
        wanted: dict[str, list[TrackedTx]] = {}
        for tracked in self._in_snapshot(snap):
            loc = snap.txs.get(tracked.txid)
            if loc is None or loc.state is not TxState.CONFIRMED or loc.block is None or loc.inferred:
                continue  # an inferred block is a spender's: the tx's own child is not in it
            if any(
                c.status is ChildStatus.CONFIRMED and c.block == loc.block for c in tracked.children.values()
            ):
                continue
            if (tracked.txid, loc.block.hash) in self._scanned:
                continue
            wanted.setdefault(loc.block.hash, []).append(tracked)
        if not wanted:
            return []
        found: list[ChildRecord] = []
        anchors = [tracked.anchor for trackeds in wanted.values() for tracked in trackeds]
        blocks = await block_spends(self.rpc, list(wanted), anchors)
        for (block_hash, trackeds), block in zip(wanted.items(), blocks, strict=True):
            if isinstance(block, RpcError):
                for tracked in trackeds:
                    height = snap.location(tracked.txid).block
                    error = BlockRetrievalFailure(height.height if height else 0, block.message)
                    set_error(sharers.get(tracked.txid, ()), error)
                continue
            self._scanned.update((tracked.txid, block_hash) for tracked in trackeds)
            found += [c for tracked in trackeds if (c := _confirmed_child(tracked, block)) is not None]
        return found


def _confirmed_child(tracked: TrackedTx, block: BlockSpends) -> ChildRecord | None:
    """The tx's child in `block`, marked confirmed there (recorded first if we did not know it)."""
    tx = block.spenders.get(tracked.anchor)
    if tx is None:
        return None
    child = tracked.children.get(tx.txid)
    if child is None:
        child = ChildRecord(
            tx.txid,
            tracked.txid,
            tx.raw,
            0,
            tx.vsize,
            0,
            ChildSource.NETWORK,
            ChildStatus.CONFIRMED,
            block.block,
        )
        tracked.children[child.txid] = child
    child.status, child.block = ChildStatus.CONFIRMED, block.block
    return child
