"""One consistent look at the chain per cycle: tip, where each tracked tx is, who spends what in the mempool.

No tx index is needed. A tx is confirmed where the locator (exitd.chain.locator) saw it in a block; else
it is in the mempool if getmempoolentry knows it; else, for a tx mined before exitd watched it, the UTXO
set places it through one of its outputs still unspent (`outputs`); else, when a tx spending one of its
outputs is confirmed (`inputs`), it is confirmed too, at or below that block: a middle level of a chain
mined before exitd watched it has no output left unspent, and this places it without a tx index. That
placement is made again every snapshot, never stored, so a reorg taking the spender out takes it out too.
An idle cycle costs one batched round
trip whatever the number of exits: the tracked txs' mempool entries, the hints' and VTXOs' UTXOs, the
mempool spenders of every anchor, the block hashes the engine re-checks for reorgs, and last the tip (so
that a tx that left the mempool for a block is in a block at or below it). A second one asks for the
package fee data of the spenders found; a new block rides in it (one block on the same chain) or costs
one more (several, or a reorg). The engine decides from this snapshot alone.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from exitd.ark.encoding import OutPoint
from exitd.chain.fees import btc_to_sat
from exitd.chain.locator import BlockRef, BlocksPruned, ChainMoved, LocatorStore, TxLocator
from exitd.chain.rpc import BitcoinRpc, RpcError, RpcInvalidAddressOrKey, RpcInvalidParameter

__all__ = ["BlockRef", "ChainSnapshot", "ChainView", "MempoolPackage", "TxLocation", "TxState"]


class TxState(Enum):
    NOT_FOUND = "not-found"
    MEMPOOL = "mempool"
    CONFIRMED = "confirmed"


@dataclass(frozen=True)
class TxLocation:
    state: TxState
    block: BlockRef | None = None
    # Confirmed because a tx spending it is, at that tx's block: mined there or in an earlier block.
    inferred: bool = False


NOT_FOUND = TxLocation(TxState.NOT_FOUND)
MEMPOOL = TxLocation(TxState.MEMPOOL)


@dataclass(frozen=True)
class MempoolPackage:
    """A mempool tx with its unconfirmed ancestors: for a CPFP child, the whole exit package.

    bitcoind's ancestor size already counts the tx itself, so fee/size is the package's real rate (barkd
    adds the child's weight a second time and underestimates it).
    """

    txid: str
    fee: int
    vsize: int

    @property
    def rate(self) -> int:
        """sat/kvB, rounded down: a package is never reported above what it pays."""
        return self.fee * 1000 // self.vsize


@dataclass
class ChainSnapshot:
    tip: BlockRef
    txs: dict[str, TxLocation] = field(default_factory=dict)
    spenders: dict[OutPoint, str] = field(default_factory=dict)
    packages: dict[str, MempoolPackage] = field(default_factory=dict)
    block_hashes: dict[int, str] = field(default_factory=dict)
    unspent: dict[OutPoint, bool] = field(default_factory=dict)

    def location(self, txid: str) -> TxLocation:
        return self.txs.get(txid, NOT_FOUND)

    def is_confirmed(self, txid: str) -> bool:
        return self.location(txid).state is TxState.CONFIRMED


class ChainView:
    def __init__(self, rpc: BitcoinRpc, store: LocatorStore | None = None) -> None:
        self.rpc = rpc
        self.locator = TxLocator(rpc, store)
        # Why the last snapshot could not be taken when the node lacks blocks exitd needs (pruned); None
        # since a snapshot succeeded. The node status shows it.
        self.blocked: BlocksPruned | None = None

    async def snapshot(
        self,
        txids: Iterable[str] = (),
        spent_outpoints: Iterable[OutPoint] = (),
        heights: Iterable[int] = (),
        utxos: Iterable[OutPoint] = (),
        outputs: Mapping[str, int] | None = None,
        inputs: Mapping[str, Collection[str]] | None = None,
    ) -> ChainSnapshot:
        """Where `txids` are, mempool spenders of `spent_outpoints`, hashes at `heights`, and whether
        `utxos` are unspent in the chain (mempool ignored). `outputs`: an output index of some of
        `txids` that the UTXO set may still hold, to place a tx mined before exitd watched it. `inputs`:
        for some of `txids`, the ones of `txids` it spends, confirmed wherever it is."""
        async with self.locator.lock:
            await self.locator.load()
            try:
                snap = await self._snapshot(
                    list(dict.fromkeys(txids)),
                    list(dict.fromkeys(spent_outpoints)),
                    list(dict.fromkeys(heights)),
                    list(dict.fromkeys(utxos)),
                    outputs or {},
                )
                _confirm_inputs(snap, inputs or {})
            except BlocksPruned as e:
                self.blocked = e
                raise
            self.blocked = None
            return snap

    async def place(self, snap: ChainSnapshot, txid: str, block: BlockRef) -> None:
        """A tx of `snap`'s found mined in `block` by a search of the blocks (exitd.chain.spends): `snap`
        shows it there, and the locator keeps it there from now on (a reorg taking the block out takes it
        out too), so that it is not searched for again."""
        async with self.locator.lock:
            self.locator.place(txid, block)
            await self.locator.flush()
        snap.txs[txid] = TxLocation(TxState.CONFIRMED, block)

    async def _snapshot(
        self,
        txids: list[str],
        outpoints: list[OutPoint],
        heights: list[int],
        utxos: list[OutPoint],
        outputs: Mapping[str, int],
    ) -> ChainSnapshot:
        locator = self.locator
        unplaced = [txid for txid in txids if locator.located(txid) is None]
        hinted = [(txid, outputs[txid]) for txid in unplaced if txid in outputs]
        first = await self._first_round(unplaced, hinted, outpoints, heights, utxos)
        snap = ChainSnapshot(first.tip)
        _record_answers(snap, first, heights, utxos)
        mined_before = _mined_heights(hinted, first.hint_answers, first.known)
        reorged = await self._second_round(snap, txids, first, mined_before)
        in_mempool = first.in_mempool | await self._back_in_mempool(reorged, txids)
        for txid in txids:
            block = locator.located(txid)
            if block is not None:
                snap.txs[txid] = TxLocation(TxState.CONFIRMED, block)
            elif txid in in_mempool:
                snap.txs[txid] = MEMPOOL
            else:
                snap.txs[txid] = NOT_FOUND
        await locator.flush()
        return snap

    async def _first_round(
        self,
        unplaced: list[str],
        hinted: list[tuple[str, int]],
        outpoints: list[OutPoint],
        heights: list[int],
        utxos: list[OutPoint],
    ) -> _FirstRound:
        """The one round trip of an idle cycle, the tip asked last."""
        calls: list[tuple[str, list[object]]] = [("getmempoolentry", [txid]) for txid in unplaced]
        calls += [("gettxout", [txid, vout, False]) for txid, vout in hinted]
        calls += [("getblockhash", [h]) for h in heights]
        calls += [("gettxout", [o.txid_hex, o.vout, False]) for o in utxos]
        if outpoints:
            calls.append(
                ("gettxspendingprevout", [[{"txid": o.txid_hex, "vout": o.vout} for o in outpoints]])
            )
        probes = self.locator.probes()
        calls += probes
        calls.append(("getblockchaininfo", []))
        answers = iter(await self.rpc.batch(calls))
        in_mempool = {txid for txid in unplaced if not isinstance(next(answers), RpcInvalidAddressOrKey)}
        hint_answers = [next(answers) for _ in hinted]
        hashes = [next(answers) for _ in heights]
        unspent = [next(answers) for _ in utxos]
        spending = next(answers) if outpoints else []
        known = self.locator.probed_hashes([next(answers) for _ in probes])
        info = _raise_if_error(next(answers))
        tip = BlockRef(int(info["blocks"]), str(info["bestblockhash"]))
        known[tip.height] = tip.hash
        prune_height = int(info["pruneheight"]) if info.get("pruned") else None
        return _FirstRound(tip, prune_height, in_mempool, hint_answers, hashes, unspent, spending, known)

    async def _second_round(
        self, snap: ChainSnapshot, txids: list[str], first: _FirstRound, mined_before: Mapping[str, int]
    ) -> list[str]:
        """The round trip the locator makes to catch up with the tip, carrying the package fee data of the
        mempool spenders found and the hashes of the blocks the UTXO set placed hinted txs in; those txs
        placed. Returns the txids a reorg took out of the chain meanwhile."""
        locator, known = self.locator, first.known
        spenders = list(dict.fromkeys(snap.spenders.values()))
        hash_asks = sorted({h for h in mined_before.values() if h not in known})
        extra: list[tuple[str, list[object]]] = [("getmempoolentry", [txid]) for txid in spenders]
        extra += [("getblockhash", [h]) for h in hash_asks]
        reorged, replies = await locator.catch_up(first.tip, txids, known, first.prune_height, extra)
        for txid, entry in zip(spenders, replies, strict=False):
            if isinstance(entry, RpcInvalidAddressOrKey):
                continue  # confirmed or evicted between the two round trips; seen next cycle
            entry = _raise_if_error(entry)
            snap.packages[txid] = MempoolPackage(
                txid, btc_to_sat(entry["fees"]["ancestor"]), int(entry["ancestorsize"])
            )
        for height, answer in zip(hash_asks, replies[len(spenders) :], strict=True):
            known[height] = str(_raise_if_error(answer))
        for txid, height in mined_before.items():
            if locator.located(txid) is None:
                locator.place(txid, BlockRef(height, known[height]))
        return reorged

    async def _back_in_mempool(self, reorged: list[str], txids: list[str]) -> set[str]:
        """Of `txids`, those a reorg took out of the chain during this snapshot that are back in the
        mempool."""
        back = [txid for txid in reorged if txid in txids and self.locator.located(txid) is None]
        entries = await self.rpc.batch(("getmempoolentry", [txid]) for txid in back)
        return {t for t, e in zip(back, entries, strict=True) if not isinstance(e, RpcError)}


@dataclass(frozen=True)
class _FirstRound:
    """The answers of a snapshot's first round trip, in the order asked."""

    tip: BlockRef
    prune_height: int | None
    in_mempool: set[str]  # of the txs the locator has not placed
    hint_answers: list[Any]  # gettxout of each hinted tx's output
    hashes: list[Any]  # getblockhash of each height asked
    unspent: list[Any]  # gettxout of each VTXO asked
    spending: Any  # gettxspendingprevout of the outpoints asked
    known: dict[int, str]  # block hashes by height: the locator's probes and the tip


def _record_answers(
    snap: ChainSnapshot, first: _FirstRound, heights: list[int], utxos: list[OutPoint]
) -> None:
    """The block hashes, unspent VTXOs and mempool spenders the first round trip found, into `snap`."""
    for height, answer in zip(heights, first.hashes, strict=True):
        if isinstance(answer, RpcInvalidParameter):
            continue  # above the tip after a reorg
        snap.block_hashes[height] = str(_raise_if_error(answer))
    for outpoint, answer in zip(utxos, first.unspent, strict=True):
        snap.unspent[outpoint] = _raise_if_error(answer) is not None
    for entry in _raise_if_error(first.spending):
        if "spendingtxid" in entry:
            snap.spenders[OutPoint.of(entry["txid"], entry["vout"])] = str(entry["spendingtxid"])


def _confirm_inputs(snap: ChainSnapshot, inputs: Mapping[str, Collection[str]]) -> None:
    """Places every tx a confirmed tx spends that the chain did not place otherwise, at the lowest block
    of its confirmed spenders (it is mined there or below), down the whole chain of `inputs`."""
    changed = True
    while changed:
        changed = False
        for txid, parents in inputs.items():
            block = snap.location(txid).block
            if block is None:
                continue
            for parent in parents:
                location = snap.txs.get(parent)
                if location is None or location.state is TxState.MEMPOOL:
                    continue
                if location.block is None or (location.inferred and location.block.height > block.height):
                    snap.txs[parent] = TxLocation(TxState.CONFIRMED, block, inferred=True)
                    changed = True


def _mined_heights(
    hinted: list[tuple[str, int]], answers: list[Any], known: Mapping[int, str]
) -> dict[str, int]:
    """The heights of hinted txs whose output the UTXO set holds: its depth under the block gettxout saw
    as the tip (the tip or a probed block: the answers came before the tip was asked)."""
    heights_of = {block_hash: height for height, block_hash in known.items()}
    mined: dict[str, int] = {}
    for (txid, _), answer in zip(hinted, answers, strict=True):
        utxo = _raise_if_error(answer)
        if utxo is None:
            continue
        best = heights_of.get(str(utxo["bestblock"]))
        if best is None:
            raise ChainMoved("the tip moved twice while exitd asked the UTXO set", "gettxout")
        mined[txid] = best - int(utxo["confirmations"]) + 1
    return mined


def _raise_if_error(answer: Any) -> Any:
    if isinstance(answer, RpcError):
        raise answer
    return answer
