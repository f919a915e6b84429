"""One consistent look at the chain per cycle: tip, where each tracked tx is, who spends what in the mempool.

Everything is asked in two batched round trips whatever the number of exits: the first asks for the tip,
every tracked tx, the mempool spenders of every anchor and the block hashes the engine re-checks for reorgs;
the second asks for the package fee data of the spenders found. The engine decides from this snapshot alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from exitd.chain.fees import btc_to_sat
from exitd.chain.rpc import BitcoinRpc, RpcError, RpcInvalidAddressOrKey, RpcInvalidParameter

Outpoint = tuple[str, int]

# How long a snapshot waits for the tx index to reach a block that just arrived.
INDEX_WAIT_ATTEMPTS = 40
INDEX_WAIT_SECONDS = 0.05


class TxIndexBehind(RpcError):
    """bitcoind's tx index has not reached the tip after the wait: a tx of the newest blocks would look
    unknown and the engine would pay for it again, so nothing is decided on such a snapshot (the cycle
    fails and the next one asks again)."""


@dataclass(frozen=True)
class BlockRef:
    height: int
    hash: str


class TxState(Enum):
    NOT_FOUND = "not-found"
    MEMPOOL = "mempool"
    CONFIRMED = "confirmed"


@dataclass(frozen=True)
class TxLocation:
    state: TxState
    block: BlockRef | None = None


NOT_FOUND = TxLocation(TxState.NOT_FOUND)


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
    spenders: dict[Outpoint, str] = field(default_factory=dict)
    packages: dict[str, MempoolPackage] = field(default_factory=dict)
    block_hashes: dict[int, str] = field(default_factory=dict)
    unspent: dict[Outpoint, bool] = field(default_factory=dict)

    def location(self, txid: str) -> TxLocation:
        return self.txs.get(txid, NOT_FOUND)

    def is_confirmed(self, txid: str) -> bool:
        return self.location(txid).state is TxState.CONFIRMED


class ChainView:
    def __init__(self, rpc: BitcoinRpc) -> None:
        self.rpc = rpc

    async def snapshot(
        self,
        txids: Iterable[str] = (),
        spent_outpoints: Iterable[Outpoint] = (),
        heights: Iterable[int] = (),
        utxos: Iterable[Outpoint] = (),
    ) -> ChainSnapshot:
        """Where `txids` are, mempool spenders of `spent_outpoints`, hashes at `heights`, and whether
        `utxos` are unspent in the chain (mempool ignored)."""
        txids = list(dict.fromkeys(txids))
        outpoints = list(dict.fromkeys(spent_outpoints))
        heights = list(dict.fromkeys(heights))
        utxos = list(dict.fromkeys(utxos))
        calls: list[tuple[str, list[object]]] = [("getblockchaininfo", []), ("getindexinfo", ["txindex"])]
        calls += [("getrawtransaction", [txid, 1]) for txid in txids]
        calls += [("getblockhash", [h]) for h in heights]
        calls += [("gettxout", [txid, vout, False]) for txid, vout in utxos]
        if outpoints:
            calls.append(("gettxspendingprevout", [[{"txid": t, "vout": v} for t, v in outpoints]]))
        for _ in range(INDEX_WAIT_ATTEMPTS):
            answers = await self.rpc.batch(calls)
            info = _raise_if_error(answers[0])
            if _index_caught_up(answers[1], int(info["blocks"])):
                break
            # bitcoind indexes a new block's txs just after connecting it: asked now, a tx mined in that
            # block would look unknown and the engine would pay for it again.
            await asyncio.sleep(INDEX_WAIT_SECONDS)
        else:
            waited = INDEX_WAIT_ATTEMPTS * INDEX_WAIT_SECONDS
            raise TxIndexBehind(
                f"bitcoind's transaction index has not reached block {info['blocks']} after {waited:g} s; "
                "exitd decides nothing until it has",
                "getindexinfo",
            )
        tip = BlockRef(int(info["blocks"]), str(info["bestblockhash"]))
        snap = ChainSnapshot(tip)
        pos = 2
        for txid in txids:
            snap.txs[txid] = _location(answers[pos], tip.height)
            pos += 1
        for height in heights:
            answer = answers[pos]
            pos += 1
            if isinstance(answer, RpcInvalidParameter):
                continue  # above the tip after a reorg
            snap.block_hashes[height] = str(_raise_if_error(answer))
        for outpoint in utxos:
            snap.unspent[outpoint] = _raise_if_error(answers[pos]) is not None
            pos += 1
        if outpoints:
            for entry in _raise_if_error(answers[pos]):
                if "spendingtxid" in entry:
                    snap.spenders[(str(entry["txid"]), int(entry["vout"]))] = str(entry["spendingtxid"])
        spenders = list(dict.fromkeys(snap.spenders.values()))
        entries = await self.rpc.batch(("getmempoolentry", [txid]) for txid in spenders)
        for txid, entry in zip(spenders, entries, strict=True):
            if isinstance(entry, RpcInvalidAddressOrKey):
                continue  # confirmed or evicted between the two round trips; seen next cycle
            entry = _raise_if_error(entry)
            snap.packages[txid] = MempoolPackage(
                txid, btc_to_sat(entry["fees"]["ancestor"]), int(entry["ancestorsize"])
            )
        return snap


def _index_caught_up(answer: Any, tip_height: int) -> bool:
    """Whether the tx index has reached the tip (a node without one has nothing to wait for)."""
    index = answer.get("txindex") if isinstance(answer, dict) else None
    return index is None or int(index.get("best_block_height", tip_height)) >= tip_height


def _raise_if_error(answer: Any) -> Any:
    if isinstance(answer, RpcError):
        raise answer
    return answer


def _location(answer: Any, tip_height: int) -> TxLocation:
    if isinstance(answer, RpcInvalidAddressOrKey):
        return NOT_FOUND
    tx = _raise_if_error(answer)
    assert isinstance(tx, dict)
    if "blockhash" not in tx:
        return TxLocation(TxState.MEMPOOL)
    confirmations = int(tx.get("confirmations", 0))
    if confirmations <= 0:
        # Found through the tx index in a block a reorg left behind, and not back in the mempool.
        return NOT_FOUND
    return TxLocation(TxState.CONFIRMED, BlockRef(tip_height - confirmations + 1, str(tx["blockhash"])))
