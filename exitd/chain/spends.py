"""Who spent an outpoint in the chain: bitcoind keeps no index of spends (and exitd requires no tx index),
so the blocks are read back from the tip, a window per round trip, down to where the outpoint was made.
Asked rarely: once when an exit finds its input gone to a tx that is not its own. And how a mempool tx
spends an outpoint (its witness), which the mempool answers without a tx index.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from exitd.ark.encoding import OutPoint
from exitd.chain.rpc import BitcoinRpc, RpcError
from exitd.chain.view import BlockRef

# Blocks read per round trip, and how far back a search goes at most (two days).
SEARCH_WINDOW = 12
SEARCH_DEPTH = 288


@dataclass(frozen=True)
class ChainSpend:
    txid: str
    block: BlockRef


async def find_chain_spend(
    rpc: BitcoinRpc, outpoint: OutPoint, tip: int, lowest: int, depth: int = SEARCH_DEPTH
) -> ChainSpend | None:
    """The confirmed tx spending `outpoint`, searched from block `tip` down to `lowest` (the block the
    outpoint was made in) and at most `depth` blocks; None when not found there."""
    txid, vout = outpoint.txid_hex, outpoint.vout
    height = tip
    bottom = max(lowest, tip - depth + 1, 0)
    while height >= bottom:
        heights = list(range(height, max(bottom, height - SEARCH_WINDOW + 1) - 1, -1))
        hashes = await rpc.batch(("getblockhash", [h]) for h in heights)
        blocks = await rpc.batch(("getblock", [h, 2]) for h in hashes if not isinstance(h, RpcError))
        for block in blocks:
            if isinstance(block, RpcError):
                raise block
            for tx in block["tx"]:
                if any(i.get("txid") == txid and i.get("vout") == vout for i in tx["vin"]):
                    return ChainSpend(str(tx["txid"]), BlockRef(int(block["height"]), str(block["hash"])))
        height = heights[-1] - 1
    return None


async def mempool_witnesses(rpc: BitcoinRpc, spends: Mapping[str, OutPoint]) -> dict[str, list[bytes]]:
    """The witness with which each mempool tx (by txid) spends its outpoint, in one round trip; a tx that
    left the mempool since (mined, replaced, evicted) is left out."""
    txids = list(spends)
    answers = await rpc.batch(("getrawtransaction", [txid, 1]) for txid in txids)
    found = {}
    for txid, answer in zip(txids, answers, strict=True):
        if isinstance(answer, RpcError):
            continue
        spent = spends[txid]
        for txin in answer["vin"]:
            if txin.get("txid") == spent.txid_hex and txin.get("vout") == spent.vout:
                found[txid] = [bytes.fromhex(item) for item in txin.get("txinwitness", [])]
    return found
