"""Guard mode through the real daemon on regtest: exits start before expiry and when someone else began
them, are claimed to the wallet on their own, and every step reaches a webhook, in order. Nothing here
drives an exit over REST: the tests import VTXOs, fund the wallet, mine blocks and read statuses."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from bitcoin.core import b2lx

from exitd.ark.exit_tx import build_exit_chain
from exitd.chain.fees import btc_to_sat, fee_at_rate
from exitd.regtest.forge import DEFAULT_EXIT_DELTA, Forge, LeafSpec
from exitd.regtest.node import RegtestNode
from tests.conftest import EVERY_NODE
from tests.support.daemon import DaemonProcess, running_daemon
from tests.support.exits import broadcast_with_child, fund_wallet, minted, outside_claim, owned
from tests.support.guard import (
    CLAIM_MAX_RATE,
    SLACK_BLOCKS,
    cycles,
    exit_status,
    finish_unattended,
    guard_config,
    import_vtxos,
    poll,
    start_to_awaiting_delta,
    wait_for_cycle_at,
    wait_for_level,
    wait_for_state,
)
from tests.support.webhook import WebhookReceiver

pytestmark = pytest.mark.bitcoind


@pytest.fixture
def guarded_daemon(
    tmp_path: Path, bitcoind: RegtestNode, receiver: WebhookReceiver
) -> Iterator[DaemonProcess]:
    """exitd in guard mode, claiming to its own wallet, alerting the test's webhook."""
    with running_daemon(tmp_path / "exitd", bitcoind, guard_config(receiver.url)) as proc:
        yield proc


def run_expiring_board(daemon: DaemonProcess, node: RegtestNode) -> str:
    """A board whose expiry nears is exited and claimed by the guard alone; its VTXO id."""
    fund_wallet(daemon, node, coins=1)
    margin = 1 + DEFAULT_EXIT_DELTA + SLACK_BLOCKS  # depth + delta + slack
    forged_at = node.height() + 1  # the board's funding block
    board = Forge(node).board(50_000, owned(daemon, 0), expiry_height=forged_at + margin + 2)
    (vtxo_id,) = import_vtxos(daemon, [board])

    node.mine(1)  # margin + 1 blocks left: not yet
    wait_for_cycle_at(daemon, forged_at + 1)
    assert exit_status(daemon, vtxo_id) is None
    node.mine(1)  # margin blocks left: the guard starts the exit
    started = poll("the guard's exit", lambda: exit_status(daemon, vtxo_id))
    assert started["started_by"] == "expiry-guard"
    wait_for_state(daemon, vtxo_id, "processing")
    node.mine(1)
    claimed = finish_unattended(daemon, node, vtxo_id)
    assert claimed["error"] is None
    return vtxo_id


def test_expiring_vtxo_is_exited_and_claimed_unattended(
    guarded_daemon: DaemonProcess, bitcoind: RegtestNode, receiver: WebhookReceiver
) -> None:
    daemon = guarded_daemon
    vtxo_id = run_expiring_board(daemon, bitcoind)

    status = exit_status(daemon, vtxo_id)
    assert status is not None
    (package,) = status["transactions"]
    assert package["child"]["origin"]["type"] == "wallet"
    claim = bitcoind.find_tx(status["state"]["txid"])
    (output,) = claim["vout"]
    assert output["scriptPubKey"]["address"].startswith("bcrt1p")  # a new address of exitd's wallet
    assert 0 < 50_000 - btc_to_sat(output["value"]) <= fee_at_rate(CLAIM_MAX_RATE, claim["vsize"])
    _, vtxo = daemon.request("GET", f"/api/v1/wallet/vtxos/{vtxo_id}")
    assert vtxo["state"] == {"type": "spent"}

    expected = ["exit-started-by-guard", "exit-claimable", "exit-claimed"]
    poll("three alerts", lambda: receiver.events(vtxo_id) == expected)
    started, claimable, claimed = [b for b in receiver.bodies if b["vtxo"] == vtxo_id]
    assert started["started_by"] == "expiry-guard" and started["blocks_left"] == 1 + DEFAULT_EXIT_DELTA + 2
    assert claimable["amount"] == 50_000
    assert claimed["txid"] == status["state"]["txid"]
    assert started["ts"] <= claimable["ts"] <= claimed["ts"]


@pytest.mark.parametrize("bitcoind", EVERY_NODE, indirect=True)
def test_tree_exit_begun_by_another_party_is_picked_up_at_level_three(
    guarded_daemon: DaemonProcess, bitcoind: RegtestNode, receiver: WebhookReceiver
) -> None:
    daemon = guarded_daemon
    fund_wallet(daemon, bitcoind, coins=1)
    forge = Forge(bitcoind)
    leaves = forge.tree([LeafSpec(30_000, owned(daemon, i)) for i in range(4)], arity=2)
    minted(bitcoind)
    root, node, leaf = [t.tx for t in build_exit_chain(leaves[0].vtxo).txs]

    # Someone else: the root confirmed, the node in the mempool; then exitd learns of the VTXO.
    root_child = broadcast_with_child(bitcoind, forge, root)
    bitcoind.mine(1)
    node_child = broadcast_with_child(bitcoind, forge, node)
    (vtxo_id,) = import_vtxos(daemon, [leaves[0]])
    status, body = daemon.request("POST", "/api/v1/exits/progress", {})  # a mempool pass, as every 30 s
    assert status == 200, body

    picked_up = wait_for_state(daemon, vtxo_id, "processing")
    assert picked_up["started_by"] == "foreign-broadcast"
    levels = [tx["status"] for tx in picked_up["state"]["transactions"]]
    assert [s["type"] for s in levels] == ["confirmed", "broadcast-with-cpfp", "awaiting-input-confirmation"]
    assert levels[1]["child_txid"] == node_child and levels[1]["origin"]["type"] == "mempool"

    bitcoind.mine(1)  # the node confirms: exitd pays for the leaf itself
    wait_for_level(daemon, vtxo_id, 3, "broadcast-with-cpfp")
    bitcoind.mine(1)
    claimed = finish_unattended(daemon, bitcoind, vtxo_id)
    children = [(p["child"]["info"]["txid"], p["child"]["origin"]["type"]) for p in claimed["transactions"]]
    assert [txid for txid, _ in children[:2]] == [root_child, node_child]
    assert [origin == "wallet" for _, origin in children] == [False, False, True]
    assert receiver.events(vtxo_id)[:2] == ["foreign-broadcast-seen", "exit-started-by-guard"]
    seen = next(b for b in receiver.bodies if b["event"] == "foreign-broadcast-seen")
    assert (seen["txid"], seen["chain_level"]) == (b2lx(root.GetTxid()), 1)
    assert leaf.GetTxid() == bytes.fromhex(claimed["transactions"][2]["exit"]["txid"])[::-1]


@pytest.mark.parametrize("bitcoind", EVERY_NODE, indirect=True)
def test_chain_fully_confirmed_by_another_party_is_claimed_after_its_delta(
    guarded_daemon: DaemonProcess, bitcoind: RegtestNode, receiver: WebhookReceiver
) -> None:
    daemon = guarded_daemon  # no coins: nothing is left to pay but the claim, from the VTXO itself
    forge = Forge(bitcoind)
    board = forge.board(40_000, owned(daemon, 0))
    minted(bitcoind)
    (exit_tx,) = [t.tx for t in build_exit_chain(board.vtxo).txs]
    broadcast_with_child(bitcoind, forge, exit_tx)
    bitcoind.mine(1)
    confirmed_at = bitcoind.height()
    (vtxo_id,) = import_vtxos(daemon, [board])
    bitcoind.mine(1)

    waiting = wait_for_state(daemon, vtxo_id, "awaiting-delta")
    assert waiting["started_by"] == "foreign-broadcast"
    assert [h["type"] for h in waiting["history"]] == ["start"]  # straight to awaiting-delta
    assert waiting["state"]["claimable_height"] == confirmed_at + DEFAULT_EXIT_DELTA
    finish_unattended(daemon, bitcoind, vtxo_id)
    expected = ["foreign-broadcast-seen", "exit-started-by-guard", "exit-claimable", "exit-claimed"]
    poll("four alerts in order", lambda: receiver.events(vtxo_id) == expected)


def test_dead_webhook_does_not_slow_exits(tmp_path: Path, bitcoind: RegtestNode) -> None:
    # A webhook that accepts connections and never answers: each POST waits its whole timeout, so a
    # delivery inside the cycle would hold a cycle for seconds (a refused port fails too fast to show it).
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/exitd-alerts"
        config = guard_config(url, max_attempts=2, timeout=3)
        with running_daemon(tmp_path / "exitd", bitcoind, config) as daemon:
            run_expiring_board(daemon, bitcoind)
            poll("an alert given up", lambda: "alert_undelivered" in daemon.log_text(), timeout=40)
    slowest = max(ms for _, ms in cycles(daemon))
    assert slowest < 1500, f"a cycle took {slowest} ms, as long as a webhook attempt (3 s) could hold it"


def test_a_claim_costing_more_than_its_output_is_held_with_one_alert_across_a_restart(
    guarded_daemon: DaemonProcess, bitcoind: RegtestNode, receiver: WebhookReceiver
) -> None:
    daemon = guarded_daemon
    fund_wallet(daemon, bitcoind, coins=1)
    # Above dust, below any claim: a claim's ~130 vB pay at least 13 sat at the test node's 0.1 sat/vB
    # floor, and its output must keep 330.
    (vtxo_id,) = import_vtxos(daemon, [Forge(bitcoind).board(335, owned(daemon, 0))])
    awaiting = start_to_awaiting_delta(daemon, bitcoind, vtxo_id)
    bitcoind.mine(awaiting["state"]["claimable_height"] - bitcoind.height())
    expected = ["exit-claimable", "claim-costs-more-than-output"]
    poll("the claim alert", lambda: receiver.events(vtxo_id) == expected)
    (alert,) = [b for b in receiver.bodies if b["event"] == "claim-costs-more-than-output"]
    assert alert["output"] == 335 and alert["needed"] > 335

    height = bitcoind.height()
    bitcoind.mine(3)
    wait_for_cycle_at(daemon, height + 3)
    assert receiver.events(vtxo_id) == expected  # once
    log_text = daemon.log_text()
    assert log_text.count("alert alert=claim-costs-more-than-output") == 1
    assert "claim_broadcast" not in log_text and "auto_claim_failed" not in log_text  # not retried
    held = exit_status(daemon, vtxo_id)
    assert held is not None and held["state"]["type"] == "claimable"
    error = held["error"]  # the status says why, with the figures
    assert error["type"] == "claim-fee-exceeds-output" and error["output"] == 335
    assert error["needed"] > 335 and error["fitting_rate"] < error["floor"]

    # A restart keeps it held: the same error, no retry, no second alert.
    daemon.stop()
    daemon.start()
    height = bitcoind.height()
    bitcoind.mine(2)
    wait_for_cycle_at(daemon, height + 2)
    after = exit_status(daemon, vtxo_id)
    assert after is not None and after["error"] == error
    assert daemon.log_text().count("alert alert=claim-costs-more-than-output") == 1
    assert receiver.events(vtxo_id) == expected
    assert "claim_broadcast" not in daemon.log_text()

    # The user may still claim, and is told why no rate can: a 400 naming the floor.
    address = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
    claim = {"vtxos": [vtxo_id], "destination": address, "fee_rate": error["floor"]}
    status, body = daemon.request("POST", "/api/v1/exits/claim/vtxos", claim)
    assert status == 400 and set(body) == {"message"}, body
    assert f"its floor is {error['floor']} sat/kvB" in body["message"]


def test_a_claim_beaten_by_one_exitd_did_not_make_ends_the_exit_and_is_never_tried_again(
    tmp_path: Path, private_bitcoind: RegtestNode, receiver: WebhookReceiver
) -> None:
    node = private_bitcoind
    node.fund_miner()
    vocabulary = {"EXITD_REST_SUBSTATE_VOCABULARY": "0.6.0"}  # barkd 0.6 names the state
    config = guard_config(receiver.url, protect_imports=False)
    with running_daemon(tmp_path / "exitd", node, config, env=vocabulary) as daemon:
        fund_wallet(daemon, node, coins=1)
        board = Forge(node).board(50_000, owned(daemon, 0))
        (vtxo_id,) = import_vtxos(daemon, [board])
        awaiting = start_to_awaiting_delta(daemon, node, vtxo_id)
        node.mine(awaiting["state"]["claimable_height"] - node.height())
        ours = wait_for_state(daemon, vtxo_id, "claim-in-progress")["state"]["claim_txid"]

        # Another tool holding the same key claims the output first (mined past the guard's claim).
        outside = outside_claim(daemon, node, board, 2_000)
        theirs = b2lx(outside.GetTxid())
        assert theirs != ours
        node.rpc("generateblock", node.miner_address(), [outside.serialize().hex()])
        spent_at = node.height()

        ended = wait_for_state(daemon, vtxo_id, "vtxo-already-spent")
        assert (ended["error"]["spent_by"], ended["error"]["spent_input"]) == (theirs, vtxo_id)
        poll("the conflict alert", lambda: "exit-conflicted" in receiver.events(vtxo_id))
        (alert,) = [b for b in receiver.bodies if b["event"] == "exit-conflicted"]
        assert (alert["txid"], alert["spent_input"], alert["block_height"]) == (theirs, vtxo_id, spent_at)
        claims_sent = daemon.log_text().count(" claim_broadcast ")
        assert claims_sent == 1  # the guard's, before the conflict

        node.mine(2)
        wait_for_cycle_at(daemon, spent_at + 2)
        after = daemon.log_text()
        assert after.count(" claim_broadcast ") == claims_sent
        assert " claim_step_failed " not in after and " auto_claim_failed " not in after
        assert after.count(" exit_conflicted ") == 1
        final = exit_status(daemon, vtxo_id)
        assert final is not None and final["state"]["type"] == "vtxo-already-spent"
