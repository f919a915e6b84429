"""The per-cycle chain snapshot against real nodes (with and without a tx index, pruned): locations learnt
from the blocks, spenders, package data, block hashes, round trips, restarts, reorgs and pruned gaps."""

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from exitd.ark.encoding import OutPoint
from exitd.chain.locator import BlocksPruned
from exitd.chain.rpc import BitcoinRpc, RpcCredentials
from exitd.chain.view import ChainView, TxState
from exitd.regtest.node import NodeFlavor, RegtestNode
from exitd.store.db import Store, upgrade
from exitd.store.locations import StoredLocations
from tests.conftest import EVERY_NODE

pytestmark = pytest.mark.bitcoind


@pytest.fixture
async def rpc(bitcoind: RegtestNode) -> AsyncIterator[BitcoinRpc]:
    client = BitcoinRpc(bitcoind.rpc_url, RpcCredentials(cookie_file=bitcoind.cookie_file))
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'exitd.sqlite3'}"
    upgrade(url)
    opened = Store(url)
    try:
        yield opened
    finally:
        await opened.close()


def spend(node: RegtestNode, btc: str = "0.01") -> str:
    return node.send(node.miner_address(), Decimal(btc))


@pytest.mark.parametrize("bitcoind", EVERY_NODE, indirect=True)
async def test_round_trips_idle_and_per_new_block(bitcoind: RegtestNode, rpc: BitcoinRpc) -> None:
    view = ChainView(rpc)
    parent = spend(bitcoind)
    spent_input = bitcoind.rpc("getrawtransaction", parent, 1)["vin"][0]
    outpoint = OutPoint.of(spent_input["txid"], spent_input["vout"])
    tip = bitcoind.height()

    def asked() -> dict[str, object]:
        return {"txids": [parent, "00" * 32], "spent_outpoints": [outpoint, OutPoint.of("11" * 32, 0)]}

    before = rpc.round_trips
    snap = await view.snapshot(heights=[tip, tip + 5], utxos=[outpoint], **asked())  # type: ignore[arg-type]
    assert rpc.round_trips == before + 2  # the batch, then the spender's package
    assert snap.tip.height == tip and snap.tip.hash == bitcoind.rpc("getbestblockhash")
    assert snap.location(parent).state is TxState.MEMPOOL
    assert snap.location("00" * 32).state is TxState.NOT_FOUND
    assert snap.spenders == {outpoint: parent}
    entry = bitcoind.rpc("getmempoolentry", parent)
    package = snap.packages[parent]
    assert package.vsize == entry["ancestorsize"] and package.fee == int(entry["fees"]["ancestor"] * 10**8)
    assert snap.block_hashes == {tip: snap.tip.hash}  # tip + 5 does not exist yet
    assert snap.unspent[outpoint] is True  # spent only in the mempool

    before = rpc.round_trips
    await view.snapshot(txids=[parent])
    assert rpc.round_trips == before + 1  # idle, nothing spent: one round trip

    (block,) = bitcoind.mine(1)
    before = rpc.round_trips
    snap = await view.snapshot(**asked())  # type: ignore[arg-type]
    assert rpc.round_trips == before + 2  # one new block: read in the round trip of the packages
    located = snap.location(parent)
    assert located.state is TxState.CONFIRMED and located.block is not None
    assert (located.block.height, located.block.hash) == (tip + 1, block)
    assert view.locator.blocks_read == 1

    later = spend(bitcoind)
    bitcoind.mine(3)
    before = rpc.round_trips
    snap = await view.snapshot(txids=[parent, later])
    assert rpc.round_trips == before + 3  # several blocks: their hashes, then the blocks
    assert view.locator.blocks_read == 4
    assert snap.location(later).state is TxState.CONFIRMED
    assert snap.location(later).block == snap.txs[later].block and snap.tip.height == tip + 4
    assert snap.location(parent).block == located.block  # not asked again


@pytest.mark.parametrize("bitcoind", EVERY_NODE, indirect=True)
async def test_a_tx_mined_before_it_was_watched_is_placed_by_its_unspent_output(
    bitcoind: RegtestNode, rpc: BitcoinRpc
) -> None:
    txid = spend(bitcoind)
    vout = next(
        o["n"] for o in bitcoind.rpc("getrawtransaction", txid, 1)["vout"] if o["value"] == Decimal("0.01")
    )
    (block,) = bitcoind.mine(1)
    bitcoind.mine(2)
    view = ChainView(rpc)
    assert (await view.snapshot([txid])).location(txid).state is TxState.NOT_FOUND  # no hint: unknown
    snap = await view.snapshot([txid], outputs={txid: vout})
    located = snap.location(txid)
    assert located.state is TxState.CONFIRMED and located.block is not None
    assert (located.block.height, located.block.hash) == (bitcoind.height() - 2, block)
    assert view.locator.blocks_read == 0


@pytest.mark.parametrize("bitcoind", EVERY_NODE, indirect=True)
async def test_a_restart_reads_only_the_blocks_it_missed(
    bitcoind: RegtestNode, rpc: BitcoinRpc, store: Store
) -> None:
    early, late = spend(bitcoind), "00" * 32
    first = ChainView(rpc, StoredLocations(store))
    await first.snapshot([early, late])
    (early_block,) = bitcoind.mine(1)
    assert (await first.snapshot([early])).location(early).state is TxState.CONFIRMED
    late = spend(bitcoind)
    await first.snapshot([early, late])  # watched while in the mempool
    missed = bitcoind.mine(3)  # exitd is down for three blocks; `late` is mined in the first
    second = ChainView(rpc, StoredLocations(store))
    snap = await second.snapshot([early, late])
    assert second.locator.blocks_read == 3
    assert snap.location(early).block is not None and snap.location(early).block.hash == early_block
    assert snap.location(late).block is not None and snap.location(late).block.hash == missed[0]


@pytest.mark.parametrize("private_bitcoind", EVERY_NODE, indirect=True)
async def test_a_tx_left_in_a_stale_block_is_not_found(private_bitcoind: RegtestNode) -> None:
    """A tx of a block a reorg left behind is found again in the mempool, or nowhere when it cannot return
    there (its locktime is in the future again)."""
    node = private_bitcoind
    node.fund_miner()
    coin = spend(node, "1")
    node.mine(3)
    tip = node.height()
    vout = next(o["n"] for o in node.find_tx(coin)["vout"] if o["value"] == 1)
    # Spends a coin mined below the blocks invalidated: it returns to the mempool.
    unsigned = node.rpc(
        "createrawtransaction", [{"txid": coin, "vout": vout}], [{node.miner_address(): "0.99"}]
    )
    plain = node.rpc(
        "sendrawtransaction", node.rpc("signrawtransactionwithwallet", unsigned, wallet="miner")["hex"]
    )
    locked = node.rpc("createrawtransaction", [], [{node.miner_address(): "0.001"}], tip)
    funded = node.rpc("fundrawtransaction", locked, {"locktime": tip}, wallet="miner")["hex"]
    signed = node.rpc("signrawtransactionwithwallet", funded, wallet="miner")["hex"]
    txid = node.rpc("sendrawtransaction", signed)
    rpc = BitcoinRpc(node.rpc_url, RpcCredentials(cookie_file=node.cookie_file))
    try:
        view = ChainView(rpc)
        await view.snapshot([txid, plain])
        node.mine(1)
        snap = await view.snapshot([txid, plain])
        assert snap.is_confirmed(txid) and snap.is_confirmed(plain)
        # Two blocks back, its locktime is in the future again: it cannot return to the mempool.
        node.rpc("invalidateblock", node.rpc("getblockhash", tip))
        assert txid not in node.rpc("getrawmempool") and plain in node.rpc("getrawmempool")
        snap = await view.snapshot([txid, plain])
        assert snap.location(txid).state is TxState.NOT_FOUND
        assert snap.location(plain).state is TxState.MEMPOOL
        assert snap.tip.height == tip - 1
        node.mine(2)
        snap = await view.snapshot([txid, plain])
        assert snap.is_confirmed(plain) and snap.location(plain).block is not None
        assert snap.location(plain).block.hash == node.rpc("getblockhash", tip)
    finally:
        await rpc.close()


def spend_whole(node: RegtestNode, txid: str, btc: str) -> str:
    """A tx spending `txid`'s (mined) output of `btc` to one output: nothing of it is left in the UTXO
    set once this one is mined."""
    vout = next(o["n"] for o in node.find_tx(txid)["vout"] if o["value"] == Decimal(btc))
    paid = str(Decimal(btc) - Decimal("0.0001"))
    unsigned = node.rpc(
        "createrawtransaction", [{"txid": txid, "vout": vout}], [{node.miner_address(): paid}]
    )
    signed = node.rpc("signrawtransactionwithwallet", unsigned, wallet="miner")["hex"]
    return str(node.rpc("sendrawtransaction", signed))


@pytest.mark.parametrize("private_bitcoind", [NodeFlavor.PLAIN], indirect=True, ids=["plain"])
async def test_a_tx_whose_outputs_are_all_spent_is_confirmed_through_its_spender(
    private_bitcoind: RegtestNode,
) -> None:
    """A chain mined before exitd watched it, whose middle tx has no output left: the middle is confirmed
    at (or below) its confirmed spender's block, and only while that spender is in the chain."""
    node = private_bitcoind
    node.fund_miner()
    top = spend(node, "1")
    node.mine(1)
    middle = spend_whole(node, top, "1")
    (middle_block,) = node.mine(1)
    leaf = spend_whole(node, middle, "0.9999")
    (leaf_block,) = node.mine(1)
    node.mine(1)
    rpc = BitcoinRpc(node.rpc_url, RpcCredentials(cookie_file=node.cookie_file))
    try:
        view = ChainView(rpc)
        txids, outputs = [top, middle, leaf], {leaf: 0}
        snap = await view.snapshot(txids, outputs=outputs)
        assert snap.location(middle).state is TxState.NOT_FOUND  # told nothing of what spends what
        inputs = {leaf: {middle}, middle: {top}}
        snap = await view.snapshot(txids, outputs=outputs, inputs=inputs)
        assert snap.location(leaf).block is not None and snap.location(leaf).block.hash == leaf_block
        assert not snap.location(leaf).inferred
        for txid in (middle, top):  # mined at or below the leaf's block, which is what is known
            assert snap.location(txid).state is TxState.CONFIRMED and snap.location(txid).inferred
            assert snap.location(txid).block == snap.location(leaf).block
        assert view.locator.blocks_read == 0
        # The leaf's block leaves the chain: the middle is placed through it no more; with the middle's
        # block gone too, both are back in the mempool.
        node.rpc("invalidateblock", leaf_block)
        snap = await view.snapshot(txids, outputs=outputs, inputs=inputs)
        assert snap.location(leaf).state is TxState.MEMPOOL
        assert snap.location(middle).state is TxState.NOT_FOUND
        node.rpc("invalidateblock", middle_block)
        snap = await view.snapshot(txids, outputs=outputs, inputs=inputs)
        assert snap.location(leaf).state is TxState.MEMPOOL and snap.location(middle).state is TxState.MEMPOOL
        (mined,) = node.mine(1)
        snap = await view.snapshot(txids, outputs=outputs, inputs=inputs)
        for txid in (leaf, middle):  # seen in the block this time
            assert snap.location(txid).block is not None and snap.location(txid).block.hash == mined
            assert not snap.location(txid).inferred
    finally:
        await rpc.close()


@pytest.mark.parametrize("private_bitcoind", [NodeFlavor.PRUNED], indirect=True, ids=["pruned"])
async def test_blocks_pruned_while_exitd_was_down_are_named(
    private_bitcoind: RegtestNode, tmp_path: Path
) -> None:
    node = private_bitcoind
    node.fund_miner()
    url = f"sqlite+aiosqlite:///{tmp_path / 'exitd.sqlite3'}"
    upgrade(url)
    store = Store(url)
    rpc = BitcoinRpc(node.rpc_url, RpcCredentials(cookie_file=node.cookie_file))
    try:
        await ChainView(rpc, StoredLocations(store)).snapshot(["00" * 32])
        seen = node.height()
        lowest = node.prune_history()  # exitd is down meanwhile
        with pytest.raises(BlocksPruned) as raised:
            await ChainView(rpc, StoredLocations(store)).snapshot(["00" * 32])
        assert (raised.value.first, raised.value.last) == (seen + 1, lowest - 1)
        assert f"blocks {seen + 1}..{lowest - 1}" in str(raised.value) and "getblockfrompeer" in str(
            raised.value
        )
    finally:
        await rpc.close()
        await store.close()
