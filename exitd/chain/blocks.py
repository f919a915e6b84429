"""Blocks and raw transactions as the engine asks for them, each kind for many at once in one round trip."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from exitd.ark.encoding import OutPoint
from exitd.chain.rpc import BitcoinRpc, RpcError
from exitd.chain.view import BlockRef


@dataclass(frozen=True)
class BlockTx:
    """A tx of a block, as much of it as a record of a CPFP child needs."""

    txid: str
    raw: bytes
    vsize: int


@dataclass(frozen=True)
class BlockSpends:
    """A block, and the tx of it that spends each outpoint asked about that is spent there."""

    block: BlockRef
    spenders: dict[OutPoint, BlockTx]


async def tip_height(rpc: BitcoinRpc) -> int:
    return int(await rpc.call("getblockcount"))


async def best_block(rpc: BitcoinRpc) -> BlockRef:
    info = await rpc.call("getblockchaininfo")
    return BlockRef(int(info["blocks"]), str(info["bestblockhash"]))


async def raw_transactions(rpc: BitcoinRpc, txids: Sequence[str]) -> list[bytes | RpcError]:
    """Each tx's serialization, or the error that came instead (an unknown tx, a node gone)."""
    answers = await rpc.batch(("getrawtransaction", [txid]) for txid in txids)
    return [a if isinstance(a, RpcError) else bytes.fromhex(a) for a in answers]


async def block_spends(
    rpc: BitcoinRpc, block_hashes: Sequence[str], outpoints: Collection[OutPoint]
) -> list[BlockSpends | RpcError]:
    """Each block with the spender of each of `outpoints` its txs spend, or the error that came instead."""
    wanted = {(o.txid_hex, o.vout): o for o in outpoints}
    answers = await rpc.batch(("getblock", [h, 2]) for h in block_hashes)
    results: list[BlockSpends | RpcError] = []
    for block_hash, block in zip(block_hashes, answers, strict=True):
        if isinstance(block, RpcError):
            results.append(block)
            continue
        spenders = {
            wanted[key]: BlockTx(tx["txid"], bytes.fromhex(tx["hex"]), int(tx["vsize"]))
            for tx in block["tx"]
            for vin in tx["vin"]
            if (key := (vin.get("txid"), vin.get("vout"))) in wanted
        }
        results.append(BlockSpends(BlockRef(int(block["height"]), block_hash), spenders))
    return results


async def wait_for_height(rpc: BitcoinRpc, height: int, timeout: float) -> None:
    """Return once bitcoind's tip reaches `height` (at once if it already has), or after `timeout` s.
    waitforblockheight is a long poll: a block is seen within milliseconds of its arrival, not at the next
    poll. A node without it is polled: this then just sleeps."""
    try:
        await rpc.call("waitforblockheight", height, int(timeout * 1000))
    except RpcError:
        await asyncio.sleep(timeout)
