"""The node's relay policy, read from bitcoind and followed: floors, increments, rates below the floor."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from exitd.chain.fees import FeeEstimator, RelayPolicy, btc_to_sat
from exitd.chain.rpc import BitcoinRpc, RpcCredentials
from exitd.regtest.forge import Forge, UserKey
from exitd.regtest.node import RegtestNode
from tests.support.barkd_schema import assert_valid
from tests.support.daemon import DaemonProcess, running_daemon
from tests.support.exits import advance_until, all_in, daemon_keychain, fund_wallet, progress, states

pytestmark = pytest.mark.bitcoind


async def test_floor_and_increment_come_from_the_node(tmp_path: Path) -> None:
    """A node started with its own -minrelaytxfee and -incrementalrelayfee: exitd reads them, and raises
    every estimate (here the fallback, a fresh node has none) to the node's floor."""
    args = ("-minrelaytxfee=0.00000500", "-incrementalrelayfee=0.00000300")
    with RegtestNode(tmp_path / "bitcoind", extra_args=args) as node:
        rpc = BitcoinRpc(node.rpc_url, RpcCredentials(cookie_file=node.cookie_file))
        try:
            fees = FeeEstimator(rpc, fallback_rate=100)
            assert await fees.relay() == RelayPolicy(min_relay=500, incremental=300, mempool_min=500)
            market = await fees.market([1, 6, 5000])
            assert market.estimates == {1: 500, 6: 500, 1008: 500} and not market.estimated
            assert market.rate(2000) == 500
            rates = await fees.rates()
            assert (rates.fast, rates.regular, rates.slow) == (500, 500, 500)
        finally:
            await rpc.close()


@pytest.fixture
def fresh_daemon(tmp_path: Path, private_bitcoind: RegtestNode) -> Iterator[DaemonProcess]:
    """exitd against a node of its own that has no estimates, with a fallback below the node's floor, so
    that whatever cycle acts first pays the floor."""
    private_bitcoind.fund_miner()
    with running_daemon(tmp_path / "exitd", private_bitcoind, "[fees]\nfallback_rate = 100\n") as proc:
        yield proc


def test_a_rate_below_the_floor_is_accepted_raised_and_reported(
    fresh_daemon: DaemonProcess, private_bitcoind: RegtestNode
) -> None:
    daemon, node = fresh_daemon, private_bitcoind
    floor = btc_to_sat(node.rpc("getmempoolinfo")["mempoolminfee"])
    assert floor < 1000  # Core 29.1+ relays below 1 sat/vB: exitd must not refuse what the node takes
    fund_wallet(daemon, node, coins=1)
    user = UserKey.from_secret(daemon_keychain(daemon).seckey(0))
    board = Forge(node).board(50_000, user)
    status, imported = daemon.request("POST", "/api/v1/wallet/import-vtxo", {"vtxos": [board.hex]})
    assert status == 200, imported
    vtxo_id = imported[0]["id"]
    status, body = daemon.request("POST", "/api/v1/exits/start/vtxos", {"vtxos": [vtxo_id]})
    assert status == 200, body

    answer = progress(daemon, fee_rate=0)  # barkd's contract allows 0; the node's floor is paid
    (entry,) = answer["exits"]
    assert entry["fee_rate_raised"] == {"requested": 0, "paid": floor}
    status, body = daemon.request("GET", f"/api/v1/exits/status/{vtxo_id}?transactions=true")
    assert status == 200 and body["fee_rate_raised"] == {"requested": 0, "paid": floor}
    assert_valid(body, "ExitTransactionStatus")
    (package,) = body["transactions"]
    child = node.rpc("getmempoolentry", package["child"]["info"]["txid"])
    package_rate = Decimal(child["fees"]["ancestor"]) * 100_000_000 * 1000 / child["ancestorsize"]
    assert floor <= package_rate < floor * 1.1, package_rate

    advance_until(daemon, node, all_in("claimable"), fee_rate=0)
    before = node.rpc("getmempoolinfo")["size"]
    status, body = daemon.request(
        "POST", "/api/v1/exits/claim/all", {"destination": node.miner_address(), "fee_rate": 0}
    )
    assert status == 200, body
    claim_txid = daemon.request("GET", f"/api/v1/exits/status/{vtxo_id}")[1]["state"]["claim_txid"]
    claim = node.rpc("getmempoolentry", claim_txid)
    assert node.rpc("getmempoolinfo")["size"] == before + 1
    claim_rate = Decimal(claim["fees"]["base"]) * 100_000_000 * 1000 / claim["vsize"]
    assert floor <= claim_rate < floor * 1.1  # a tenth of what 1 sat/vB cost
    node.mine(1)
    progress(daemon)
    assert states(daemon) == {vtxo_id: "claimed"}
