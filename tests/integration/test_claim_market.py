"""A claim is priced from a real reading of the market, or waits: on a node with small blocks, no fee
estimate and a backlog larger than a block, the guard's claim waits with the reason on the exit and one
alert; once the backlog is mined and the next block has room, the floor is the market and it is claimed.
An HTLC receive's claim, which races the server's refund, bids along the exit curve instead."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from exitd.ark.policy import PolicyType
from exitd.chain.fees import btc_to_sat, fee_at_rate, has_backlog, template_vsize
from exitd.regtest.forge import Forge
from exitd.regtest.node import MINER_WALLET, RegtestNode
from tests.support.daemon import running_daemon
from tests.support.exits import (
    advance_until,
    all_in,
    fund_wallet,
    import_and_start,
    owned,
    progress,
    states,
    wallet_address,
)
from tests.support.guard import (
    exit_status,
    guard_config,
    import_vtxos,
    poll,
    start_to_awaiting_delta,
    wait_for_cycle_at,
    wait_for_state,
)
from tests.support.webhook import WebhookReceiver

pytestmark = pytest.mark.bitcoind

# About 4,000 vB of transactions a block (the rest of the weight is kept for the coinbase).
BLOCK_MAX_WEIGHT = 24_000
# A load of this many txs of as many P2TR outputs each (~1,300 vB a tx): six blocks' worth, a backlog
# (chain.fees.has_backlog) for three.
LOAD_TXS, LOAD_OUTPUTS = 18, 28


@pytest.fixture
def small_blocks(tmp_path: Path) -> Iterator[RegtestNode]:
    with RegtestNode(tmp_path / "bitcoind", extra_args=(f"-blockmaxweight={BLOCK_MAX_WEIGHT}",)) as node:
        node.fund_miner()
        yield node


def send_backlog(node: RegtestNode) -> None:
    """Ordinary payments from the miner, more than a block holds, all above a claim at the floor. Each pays
    less than the one before: a payment spending the change of the one before would otherwise raise its
    rate, joining them into one chunk too large for a block that the miner skips whole."""
    for n in range(LOAD_TXS):
        outputs = {node.rpc("getnewaddress", "", "bech32m", wallet=MINER_WALLET): "0.0001"}
        while len(outputs) < LOAD_OUTPUTS:
            outputs[node.rpc("getnewaddress", "", "bech32m", wallet=MINER_WALLET)] = "0.0001"
        rate = 2 + LOAD_TXS - n  # sat/vB
        node.rpc("sendmany", "", outputs, 1, "", [], False, None, "unset", rate, wallet=MINER_WALLET)


def backlog(node: RegtestNode) -> bool:
    """Whether the mempool holds more than the next block takes, as exitd reads it."""
    template = node.rpc("getblocktemplate", {"rules": ["segwit"]})
    return has_backlog(int(node.rpc("getmempoolinfo")["bytes"]), template_vsize(template["transactions"]))


def test_with_no_estimate_and_a_backlog_the_claim_waits_then_goes_once_the_next_block_has_room(
    tmp_path: Path, small_blocks: RegtestNode, receiver: WebhookReceiver
) -> None:
    node = small_blocks
    with running_daemon(tmp_path / "exitd", node, guard_config(receiver.url)) as daemon:
        fund_wallet(daemon, node, coins=1)
        node.mine(1)
        (vtxo_id,) = import_vtxos(daemon, [Forge(node).board(50_000, owned(daemon, 0))])
        awaiting = start_to_awaiting_delta(daemon, node, vtxo_id)
        node.mine(awaiting["state"]["claimable_height"] - node.height() - 1)

        send_backlog(node)
        assert backlog(node)
        assert "feerate" not in node.rpc("estimatesmartfee", 144, "economical")
        node.mine(1)  # claimable, with more than a block still waiting and no estimate
        assert backlog(node)
        waiting = poll("the claim's wait", lambda: (exit_status(daemon, vtxo_id) or {}).get("error"))
        assert waiting["type"] == "internal-error" and "no fee market" in waiting["error"]
        poll("the alert", lambda: "claim-waits-for-market" in receiver.events(vtxo_id))
        status_now = exit_status(daemon, vtxo_id)
        assert status_now is not None and status_now["state"]["type"] == "claimable"

        height = node.height()
        node.mine(1)  # still a backlog: still waiting, not alerted again
        wait_for_cycle_at(daemon, height + 1)
        assert "claim_broadcast" not in daemon.log_text()
        assert receiver.events(vtxo_id).count("claim-waits-for-market") == 1

        for _ in range(10):
            if not backlog(node):
                break
            node.mine(1)
        assert not backlog(node)
        floor = int(Decimal(node.rpc("getmempoolinfo")["mempoolminfee"]) * 100_000_000)
        in_progress = wait_for_state(daemon, vtxo_id, "claim-in-progress")
        assert in_progress["error"] is None
        claim = node.rpc("getmempoolentry", in_progress["state"]["claim_txid"])
        assert int(Decimal(claim["fees"]["base"]) * 100_000_000) * 1000 // claim["vsize"] < floor * 1.1
        for _ in range(5):  # the cheapest tx waits behind what is left of the backlog
            if exit_status(daemon, vtxo_id)["state"]["type"] == "claimed":  # type: ignore[index]
                break
            node.mine(1)
        wait_for_state(daemon, vtxo_id, "claimed")


def paid_at(node: RegtestNode, txid: str, rate: int) -> bool:
    """Whether the claim in the mempool pays `rate` sat/kvB for its size (rounded up, as exitd pays)."""
    entry = node.rpc("getmempoolentry", txid)
    return btc_to_sat(entry["fees"]["base"]) == fee_at_rate(rate, int(entry["vsize"]))


def test_an_htlc_receive_claim_past_its_deadline_bids_above_a_plain_claim(
    tmp_path: Path, private_bitcoind: RegtestNode
) -> None:
    """An HTLC receive is claimable only after the server's refund leaf is close (forge: the HTLC expires
    20 blocks after minting, the user's claim waits its CSV of 12 after 3 levels): its claim follows the
    exit curve with no slack left, half as much again as the next block's rate, while a plain VTXO's
    claim in the same empty market pays the floor."""
    node = private_bitcoind
    node.fund_miner()
    with running_daemon(tmp_path / "exitd", node) as daemon:
        fund_wallet(daemon, node, coins=3)
        node.mine(1)
        forge = Forge(node)
        board = forge.board(30_000, owned(daemon, 0))
        recv = forge.arkoor_chain(26_000, owned(daemon, 1), hops=1, policy_type=PolicyType.SERVER_HTLC_RECV)
        ids = import_and_start(daemon, [board.hex, recv.hex])
        advance_until(daemon, node, all_in("claimable"))
        floor = int(Decimal(node.rpc("getmempoolinfo")["mempoolminfee"]) * 100_000_000)
        assert "feerate" not in node.rpc("estimatesmartfee", 1, "economical")

        destination = wallet_address(daemon)
        plain = {"destination": destination, "vtxos": [ids[0]]}
        status, body = daemon.request("POST", "/api/v1/exits/claim/vtxos", plain)
        assert status == 200, body
        assert paid_at(node, body["txid"], floor)

        assert recv.payment_preimage is not None
        htlc = {
            "destination": destination,
            "vtxos": [ids[1]],
            "preimages": {ids[1]: recv.payment_preimage.hex()},
        }
        status, body = daemon.request("POST", "/api/v1/exits/claim/vtxos", htlc)
        assert status == 200, body
        assert paid_at(node, body["txid"], floor * 3 // 2)
        node.mine(1)
        progress(daemon)
        assert states(daemon) == dict.fromkeys(ids, "claimed")


def test_an_htlc_receive_claim_left_below_its_deadline_rate_is_replaced_at_the_next_block(
    tmp_path: Path, private_bitcoind: RegtestNode
) -> None:
    """A claim sent at the floor by request (its own fee_rate) for an HTLC receive past its deadline is not
    left there for claims.replace_after_blocks: the first block that does not confirm it (mined empty here)
    brings a replacement priced along the exit curve toward the deadline."""
    node = private_bitcoind
    node.fund_miner()
    with running_daemon(tmp_path / "exitd", node) as daemon:
        fund_wallet(daemon, node, coins=2)
        node.mine(1)
        recv = Forge(node).arkoor_chain(
            26_000, owned(daemon, 0), hops=1, policy_type=PolicyType.SERVER_HTLC_RECV
        )
        (vtxo_id,) = import_and_start(daemon, [recv.hex])
        advance_until(daemon, node, all_in("claimable"))
        floor = int(Decimal(node.rpc("getmempoolinfo")["mempoolminfee"]) * 100_000_000)
        assert recv.payment_preimage is not None
        request = {
            "destination": wallet_address(daemon),
            "vtxos": [vtxo_id],
            "preimages": {vtxo_id: recv.payment_preimage.hex()},
            "fee_rate": floor,
        }
        status, body = daemon.request("POST", "/api/v1/exits/claim/vtxos", request)
        assert status == 200, body
        first = body["txid"]
        assert paid_at(node, first, floor)

        node.rpc("generateblock", node.rpc("getnewaddress", wallet=MINER_WALLET), [])
        progress(daemon)
        mempool = node.rpc("getrawmempool")
        assert first not in mempool
        spends = {txid: node.rpc("getrawtransaction", txid, True)["vin"] for txid in mempool}
        (replacement,) = [t for t, vin in spends.items() if f"{vin[0]['txid']}:{vin[0]['vout']}" == vtxo_id]
        entry = node.rpc("getmempoolentry", replacement)
        assert btc_to_sat(entry["fees"]["base"]) >= fee_at_rate(floor * 3 // 2, int(entry["vsize"]))
        node.mine(1)
        progress(daemon)
        assert states(daemon) == {vtxo_id: "claimed"}
