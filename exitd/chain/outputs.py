"""Outputs of txs, spent or not, found without a tx index.

The UTXO set (with the mempool) holds every unspent output. A spent one is read from its tx: in the
mempool, through the tx index when the node has one, or in a block the caller names (getrawtransaction
with a block hash reads that block from disk, which every node still storing it can do, index or not). A
pruned node no longer stores old blocks: a named block below its prune height is refused, saying which
and how to fetch it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from exitd.ark.encoding import OutPoint, TxOut
from exitd.chain.fees import btc_to_sat
from exitd.chain.rpc import (
    BitcoinRpc,
    RpcError,
    RpcInvalidAddressOrKey,
    RpcInvalidParameter,
    RpcMiscError,
)
from exitd.chain.view import BlockRef


@dataclass(frozen=True)
class UnspentOutputs:
    outputs: dict[OutPoint, TxOut]
    # The node has a synced tx index: a tx it cannot find is in no block of its chain.
    indexed: bool


class BlockUnusable(Exception):
    """A block the caller named cannot be searched: no such block, not in the node's active chain, or
    pruned; the message says which and what to do."""


def _raise_if_error(answer: Any) -> Any:
    if isinstance(answer, RpcError):
        raise answer
    return answer


def _txout(output: dict[str, Any]) -> TxOut:
    return TxOut(btc_to_sat(output["value"]), bytes.fromhex(output["scriptPubKey"]["hex"]))


def pruned_message(block: BlockRef, prune_height: int | None) -> str:
    kept = f" (it keeps blocks from height {prune_height} up)" if prune_height is not None else ""
    return (
        f"block {block.hash} (height {block.height}) is pruned from this node{kept}: fetch it back with "
        f"`bitcoin-cli getblockfrompeer {block.hash} <peer id>` (ids from `bitcoin-cli getpeerinfo`), then "
        f"try again"
    )


async def unspent_outputs(rpc: BitcoinRpc, outpoints: Sequence[OutPoint]) -> UnspentOutputs:
    """The outputs of `outpoints` the UTXO set or the mempool holds unspent, in one round trip."""
    calls: list[tuple[str, Sequence[Any]]] = [("getindexinfo", ["txindex"])]
    calls += [("gettxout", [o.txid_hex, o.vout, True]) for o in outpoints]
    index, *answers = await rpc.batch(calls)
    found = {
        outpoint: _txout(answer)
        for outpoint, answer in zip(outpoints, answers, strict=True)
        if _raise_if_error(answer) is not None
    }
    txindex = index.get("txindex") if isinstance(index, dict) else None
    return UnspentOutputs(found, bool(txindex and txindex.get("synced")))


async def named_blocks(rpc: BitcoinRpc, named: Sequence[str | int]) -> list[BlockRef]:
    """Each block named by hash or height, checked to be in the node's active chain and still stored;
    BlockUnusable naming the first that is not."""
    if not named:
        return []
    heights = sorted({n for n in named if isinstance(n, int)})
    by_height: dict[int, str] = {}
    if heights:
        tip, *answers = await rpc.batch([("getblockcount", []), *(("getblockhash", [h]) for h in heights)])
        for height, answer in zip(heights, answers, strict=True):
            if isinstance(answer, RpcInvalidParameter):
                raise BlockUnusable(f"no block at height {height}: bitcoind's chain ends at {tip}")
            by_height[height] = str(_raise_if_error(answer))
    block_hashes = [by_height[n] if isinstance(n, int) else n for n in named]
    chain, *headers = await rpc.batch(
        [("getblockchaininfo", []), *(("getblockheader", [h]) for h in block_hashes)]
    )
    chain = _raise_if_error(chain)
    prune_height = int(chain.get("pruneheight", 0)) if chain.get("pruned") else None
    blocks = []
    for block_hash, header in zip(block_hashes, headers, strict=True):
        if isinstance(header, RpcInvalidAddressOrKey):
            raise BlockUnusable(f"bitcoind knows no block {block_hash}")
        header = _raise_if_error(header)
        block = BlockRef(int(header["height"]), block_hash)
        if int(header["confirmations"]) < 0:
            raise BlockUnusable(
                f"block {block_hash} (height {block.height}) is not in bitcoind's active chain (a reorg "
                f"left it): name the block of the active chain holding the tx"
            )
        if prune_height is not None and block.height < prune_height:
            raise BlockUnusable(pruned_message(block, prune_height))
        blocks.append(block)
    return blocks


async def tx_outputs(
    rpc: BitcoinRpc, txids: Sequence[str], blocks: Sequence[BlockRef]
) -> dict[str, list[TxOut]]:
    """Every output of each tx found in the mempool, through the tx index, or in one of `blocks` (from
    named_blocks), in one round trip; a tx found nowhere is left out."""
    calls: list[tuple[str, Sequence[Any]]] = [("getrawtransaction", [t, 1]) for t in txids]
    calls += [("getrawtransaction", [t, 1, b.hash]) for t in txids for b in blocks]
    answers = await rpc.batch(calls)
    lookups = [(t, None) for t in txids] + [(t, b) for t in txids for b in blocks]
    found: dict[str, list[TxOut]] = {}
    for (txid, block), answer in zip(lookups, answers, strict=True):
        if isinstance(answer, RpcInvalidAddressOrKey):
            continue  # not in the mempool, the index, or that block
        if isinstance(answer, RpcMiscError) and block is not None:
            # "Block not available": pruned since named_blocks looked (or never downloaded).
            raise BlockUnusable(pruned_message(block, None))
        found[txid] = [_txout(out) for out in _raise_if_error(answer)["vout"]]
    return found
