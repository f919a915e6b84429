"""The per-cycle chain snapshot against a real node: locations, spenders, package data, block hashes."""

from decimal import Decimal

import pytest

from exitd.chain.rpc import BitcoinRpc, RpcCredentials
from exitd.chain.view import ChainView, TxState
from exitd.regtest.node import RegtestNode

pytestmark = pytest.mark.bitcoind


async def test_snapshot_in_two_round_trips(bitcoind: RegtestNode) -> None:
    rpc = BitcoinRpc(bitcoind.rpc_url, RpcCredentials(cookie_file=bitcoind.cookie_file))
    try:
        confirmed = bitcoind.send(bitcoind.miner_address(), Decimal("0.1"))
        bitcoind.mine(1)
        parent = bitcoind.send(bitcoind.miner_address(), Decimal("0.2"))
        spent_input = bitcoind.rpc("getrawtransaction", parent, 1)["vin"][0]
        tip = bitcoind.height()
        before = rpc.round_trips
        snap = await ChainView(rpc).snapshot(
            txids=[confirmed, parent, "00" * 32],
            spent_outpoints=[(spent_input["txid"], spent_input["vout"]), ("11" * 32, 0)],
            heights=[tip, tip + 5],
            utxos=[(confirmed, 0), (spent_input["txid"], spent_input["vout"])],
        )
        assert rpc.round_trips == before + 2
        assert snap.tip.height == tip and snap.tip.hash == bitcoind.rpc("getbestblockhash")
        located = snap.location(confirmed)
        assert located.state is TxState.CONFIRMED and located.block is not None
        assert located.block.height == tip and located.block.hash == snap.tip.hash
        assert snap.location(parent).state is TxState.MEMPOOL
        assert snap.location("00" * 32).state is TxState.NOT_FOUND
        assert snap.spenders == {(spent_input["txid"], spent_input["vout"]): parent}
        package = snap.packages[parent]
        entry = bitcoind.rpc("getmempoolentry", parent)
        assert package.vsize == entry["ancestorsize"] and package.fee == int(
            entry["fees"]["ancestor"] * 10**8
        )
        assert package.rate == package.fee * 1000 // package.vsize
        assert snap.block_hashes == {tip: snap.tip.hash}  # tip + 5 does not exist yet
        assert snap.unspent[(spent_input["txid"], spent_input["vout"])] is True  # spent only in the mempool
        bitcoind.mine(1)
    finally:
        await rpc.close()


async def test_a_tx_left_in_a_stale_block_is_not_found(private_bitcoind: RegtestNode) -> None:
    """getrawtransaction (with -txindex) still returns a tx of a block that was reorged away, with
    confirmations 0: that is neither the chain nor the mempool."""
    node = private_bitcoind
    node.fund_miner()
    tip = node.height()
    locked = node.rpc("createrawtransaction", [], [{node.miner_address(): "0.001"}], tip)
    funded = node.rpc("fundrawtransaction", locked, {"locktime": tip}, wallet="miner")["hex"]
    signed = node.rpc("signrawtransactionwithwallet", funded, wallet="miner")["hex"]
    txid = node.rpc("sendrawtransaction", signed)
    node.mine(1)
    # Two blocks back, its locktime is in the future again: it cannot return to the mempool.
    node.rpc("invalidateblock", node.rpc("getblockhash", tip))
    assert txid not in node.rpc("getrawmempool")
    rpc = BitcoinRpc(node.rpc_url, RpcCredentials(cookie_file=node.cookie_file))
    try:
        assert (await ChainView(rpc).snapshot([txid])).location(txid).state is TxState.NOT_FOUND
    finally:
        await rpc.close()
