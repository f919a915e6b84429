"""Exits that must end or go on by themselves, on a real regtest bitcoind: a package that left the mempool
after the exit's fee budget was spent is sent again (re-sending is not spending); starts that cannot pay
off or finish in time are refused with their figures unless forced."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bitcoin.core import b2lx

from exitd.ark.policy import PolicyType
from exitd.regtest.forge import Forge, ForgedVtxo, UserKey
from exitd.regtest.node import NodeFlavor, RegtestNode
from tests.conftest import EVERY_NODE
from tests.support.daemon import DaemonProcess, running_daemon
from tests.support.exits import (
    advance_until,
    all_in,
    fund_wallet,
    import_and_start,
    minted,
    outside_claim,
    owned,
    progress,
    states,
)
from tests.support.guard import guard_config, poll
from tests.support.webhook import WebhookReceiver

pytestmark = pytest.mark.bitcoind

# A budget no package fits in: only an explicit fee_rate pays for a level.
SPENT_BUDGET = """
[fees]
budget_ratio = 0.001
"""


@pytest.fixture
def tight_budget(
    tmp_path: Path, private_bitcoind: RegtestNode
) -> Iterator[tuple[DaemonProcess, RegtestNode]]:
    """The daemon on a node of this test's own (restarted without its mempool), its fee budget spent."""
    private_bitcoind.fund_miner()
    with running_daemon(tmp_path / "exitd", private_bitcoind, SPENT_BUDGET) as proc:
        yield proc, private_bitcoind


def test_a_package_dropped_after_its_budget_is_spent_is_sent_again_within_a_cycle(
    tight_budget: tuple[DaemonProcess, RegtestNode],
) -> None:
    proc, node = tight_budget
    fund_wallet(proc, node, coins=2)
    board = Forge(node).board(50_000, owned(proc, 0))
    import_and_start(proc, [board.hex])
    sent = progress(proc, fee_rate=2000)["exits"][0]["state"]["transactions"][0]["status"]  # past the budget
    assert sent["type"] == "broadcast-with-cpfp"
    child = sent["child_txid"]

    node.stop()
    node.extra_args = ("-persistmempool=0",)
    node.start()
    assert node.rpc("getrawmempool") == []
    status = progress(proc)["exits"][0]["state"]["transactions"][0]["status"]  # no fee_rate: the budget's
    assert (status["type"], status["child_txid"]) == ("broadcast-with-cpfp", child)
    assert child in node.rpc("getrawmempool")
    advance_until(proc, node, all_in("claimable"))


def test_our_package_put_back_in_the_mempool_by_a_reorg_is_still_ours(
    tmp_path: Path, private_bitcoind: RegtestNode
) -> None:
    node = private_bitcoind
    node.fund_miner()
    with running_daemon(tmp_path / "exitd", node) as proc:
        fund_wallet(proc, node, coins=2)
        import_and_start(proc, [Forge(node).board(50_000, owned(proc, 0)).hex])
        child = progress(proc)["exits"][0]["state"]["transactions"][0]["status"]["child_txid"]
        node.mine(1)
        assert progress(proc)["exits"][0]["state"]["type"] == "awaiting-delta"

        node.rpc("invalidateblock", node.rpc("getbestblockhash"))
        back = progress(proc)["exits"][0]["state"]
        status = back["transactions"][0]["status"]
        assert (back["type"], status["type"], status["child_txid"]) == (
            "processing",
            "broadcast-with-cpfp",
            child,
        )
        assert status["origin"]["type"] == "wallet"


def start(proc: DaemonProcess, vtxo_id: str, force: bool = False) -> tuple[int, Any]:
    return proc.request("POST", "/api/v1/exits/start/vtxos", {"vtxos": [vtxo_id], "force": force})


def imported(proc: DaemonProcess, forged: ForgedVtxo) -> str:
    status, body = proc.request("POST", "/api/v1/wallet/import-vtxo", {"vtxos": [forged.hex]})
    assert status == 200, body
    return str(body[0]["id"])


def test_starts_that_cannot_pay_off_or_finish_are_refused_with_their_figures_unless_forced(
    daemon: DaemonProcess, bitcoind: RegtestNode
) -> None:
    forge = Forge(bitcoind)
    # Above dust, below it once the package and the claim are paid even at the floor of a quiet node.
    poor = imported(daemon, forge.board(340, owned(daemon, 0)))
    status, body = start(daemon, poor)  # an empty wallet too, but the loss is said first
    assert status == 400 and "not worth exiting" in body["message"], body
    assert "340 sat minus" in body["message"] and "below the floor of 330 sat" in body["message"]

    late = imported(daemon, forge.board(50_000, owned(daemon, 1), expiry_height=bitcoind.height() + 4))
    status, body = start(daemon, late)
    assert status == 400 and "too late" in body["message"], body
    assert "need 7" in body["message"]  # one level + an exit delta of 6

    unfunded = imported(daemon, forge.board(50_000, owned(daemon, 2)))
    status, body = start(daemon, unfunded)
    assert status == 400, body
    assert "send at least" in body["message"] and "bcrt1" in body["message"], body

    fee = daemon.request("GET", f"/api/v1/exits/fee?vtxo_ids={poor},{late},{unfunded}")[1]
    verdicts = {v["vtxo_id"]: v for v in fee["vtxos"]}
    assert [verdicts[i]["can_start"] for i in (poor, late, unfunded)] == [False, False, False]
    assert verdicts[poor]["net_recovered_sat"] < 330 and verdicts[late]["reason"] == "too-late"
    assert verdicts[unfunded]["funding_needed_sat"] > 0 and verdicts[unfunded]["fund_address"]

    for vtxo_id in (poor, late, unfunded):
        status, body = start(daemon, vtxo_id, force=True)
        assert status == 200, body
    assert set(states(daemon)) == {poor, late, unfunded}


@pytest.mark.parametrize("private_bitcoind", EVERY_NODE, indirect=True)
def test_a_conflicting_spend_ends_the_exit_and_a_reorg_taking_it_out_resumes_it(
    tmp_path: Path, private_bitcoind: RegtestNode
) -> None:
    node = private_bitcoind
    node.fund_miner()
    vocabulary = {"EXITD_REST_SUBSTATE_VOCABULARY": "0.6.0"}  # barkd 0.6 names the state
    with running_daemon(tmp_path / "exitd", node, env=vocabulary) as proc:
        fund_wallet(proc, node, coins=2)
        forge = Forge(node)
        board = forge.board(50_000, owned(proc, 0))
        (vtxo_id,) = import_and_start(proc, [board.hex])
        child = progress(proc)["exits"][0]["state"]["transactions"][0]["status"]["child_txid"]
        assert child in node.rpc("getrawmempool")

        competitor = forge.competing_spend(board, node.miner_address())  # the forge holds both keys
        conflict = b2lx(competitor.GetTxid())
        node.rpc("generateblock", node.miner_address(), [competitor.serialize().hex()])
        progress(proc)
        ended = exit_of(proc, vtxo_id)
        assert ended["state"]["type"] == "vtxo-already-spent"
        assert ended["error"]["spent_by"] == conflict
        assert ended["error"]["spent_input"] == str(board.vtxo.anchor_point)
        assert ended["error"]["spent_at_height"] == node.height()
        # Every child is abandoned and its coin free again: ours, and one a background cycle may have built
        # while the block was being connected (a snapshot taken then can see the package gone from the
        # mempool at the old tip, as a CI run's log showed; that child is refused for its spent input and
        # released at once).
        children = child_statuses(proc)
        assert children[child] == "abandoned" and set(children.values()) == {"abandoned"}, children
        assert all(reservations(proc, txid) == 0 for txid in children)
        assert vtxo_state(proc, vtxo_id) == "spent"
        for _ in range(2):  # nothing is sent for it again
            node.mine(1)
            progress(proc)
            assert exit_of(proc, vtxo_id)["state"]["type"] == "vtxo-already-spent"
        assert child_statuses(proc) == children
        assert proc.log_text().count(" exit_conflicted ") == 1

        node.rpc("invalidateblock", node.rpc("getblockhash", node.height() - 2))  # the conflict's block
        progress(proc)
        resumed = exit_of(proc, vtxo_id)
        assert resumed["state"]["type"] not in ("vtxo-already-spent", "canceled"), resumed
        assert resumed["error"] is None or resumed["error"]["type"] != "vtxo-already-spent"
        assert vtxo_state(proc, vtxo_id) == "locked"


def test_a_claimable_exit_whose_output_another_tx_spent_ends_naming_it(
    tmp_path: Path, private_bitcoind: RegtestNode
) -> None:
    node = private_bitcoind
    node.fund_miner()
    vocabulary = {"EXITD_REST_SUBSTATE_VOCABULARY": "0.6.0"}
    with running_daemon(tmp_path / "exitd", node, env=vocabulary) as proc:
        fund_wallet(proc, node, coins=2)
        board = Forge(node).board(50_000, owned(proc, 0))
        (vtxo_id,) = import_and_start(proc, [board.hex])
        advance_until(proc, node, all_in("claimable"))

        # A claim exitd did not make (another tool holding the same key), signed as exitd's own would be.
        outside = outside_claim(proc, node, board, 1_000)
        node.rpc("generateblock", node.miner_address(), [outside.serialize().hex()])
        spent_at = node.height()
        claim = b2lx(outside.GetTxid())

        progress(proc)
        assert_output_taken(proc, vtxo_id, claim, spent_at)
        assert_never_claimed_again(proc, node, vtxo_id)

        node.rpc("invalidateblock", node.rpc("getblockhash", spent_at))  # the outside claim's block
        progress(proc)
        back = exit_of(proc, vtxo_id)
        assert back["state"]["type"] not in ("vtxo-already-spent", "canceled"), back
        assert vtxo_state(proc, vtxo_id) == "locked"


# Why bitcoind refuses a tx whose CLTV (nLockTime) or CSV (nSequence) has not matured yet.
NOT_YET_FINAL = ("non-final", "non-BIP68-final")


# Claims on request only, on every node; and the guard claiming on its own, which cannot sign this claim.
HTLC_REFUND_RUNS = [
    *(pytest.param(flavor, False, id=flavor.value) for flavor in NodeFlavor),
    pytest.param(NodeFlavor.PLAIN, True, id="plain-auto-claim"),
]


@pytest.mark.parametrize(("private_bitcoind", "auto_claim"), HTLC_REFUND_RUNS, indirect=["private_bitcoind"])
def test_an_htlc_receive_the_server_refunds_after_its_expiry_ends_the_claimable_exit(
    tmp_path: Path, private_bitcoind: RegtestNode, auto_claim: bool, receiver: WebhookReceiver
) -> None:
    """The case the claim conflict exists for: exitd could not claim an HTLC receive (no preimage given)
    before the server's refund leaf opened, and the server took the output back."""
    node = private_bitcoind
    node.fund_miner()
    vocabulary = {"EXITD_REST_SUBSTATE_VOCABULARY": "0.6.0"}
    if auto_claim:
        config = guard_config(receiver.url, protect_imports=False)
    else:
        config = f'[alerts]\nwebhook_url = "{receiver.url}"\n'
    with running_daemon(tmp_path / "exitd", node, config, env=vocabulary) as proc:
        fund_wallet(proc, node, coins=3)
        forge = Forge(node)
        recv = forge.arkoor_chain(30_000, owned(proc, 0), hops=1, policy_type=PolicyType.SERVER_HTLC_RECV)
        minted(node)
        (vtxo_id,) = import_and_start(proc, [recv.hex])
        advance_until(proc, node, all_in("claimable"))
        if auto_claim:  # the guard tried, and left it to a claim request that would bring the preimage
            poll("the skipped auto-claim", lambda: f"auto_claim_skipped vtxo={vtxo_id}" in proc.log_text())

        # The server's refund is refused until its leaf opens; the exit stays claimable meanwhile.
        refund = forge.server_refund(recv, node.miner_address())
        refund_txid = b2lx(refund.GetTxid())
        rival = recv.vtxo.claim_clause.rival
        assert rival is not None
        output = node.rpc("gettxout", recv.id.txid_hex, recv.id.vout)
        opens_at = rival.opens_at(node.height() - output["confirmations"] + 1)
        first_try = node.height() + 1  # on the pruned node, pruning mined past htlc_expiry already
        while not (verdict := node.rpc("testmempoolaccept", [refund.serialize().hex()])[0])["allowed"]:
            assert verdict["reject-reason"] in NOT_YET_FINAL, verdict
            assert node.height() + 1 < opens_at
            node.mine(1)
            progress(proc)
            assert exit_of(proc, vtxo_id)["state"]["type"] == "claimable"
        assert node.height() + 1 == max(opens_at, first_try)  # exactly where exitd's claim deadline is

        # The server broadcasts its refund: in the mempool it is no claim of the user's, and may still be
        # outbid or dropped, so the exit stays claimable; mined, it ends the exit.
        skipped = proc.log_text().count(" auto_claim_skipped ")
        node.rpc("sendrawtransaction", refund.serialize().hex())
        progress(proc)
        assert exit_of(proc, vtxo_id)["state"]["type"] == "claimable"
        assert f"vtxo_output_spent_in_mempool vtxo={vtxo_id} by={refund_txid}" in proc.log_text()
        node.mine(1)
        refunded_at = node.height()
        progress(proc)
        assert_output_taken(proc, vtxo_id, refund_txid, refunded_at)
        poll("the conflict alert", lambda: "exit-conflicted" in receiver.events(vtxo_id))
        (alert,) = [b for b in receiver.bodies if b["event"] == "exit-conflicted"]
        assert (alert["txid"], alert["spent_input"], alert["block_height"]) == (
            refund_txid,
            vtxo_id,
            refunded_at,
        )

        assert_never_claimed_again(proc, node, vtxo_id)
        assert proc.log_text().count(" auto_claim_skipped ") == skipped  # not tried again
        assert receiver.events(vtxo_id).count("exit-conflicted") == 1

        # A reorg that takes the refund's block out gives the output back: the exit is claimable again (the
        # refund, back in the mempool, is still no claim), and ends again once the refund is mined again.
        node.rpc("invalidateblock", node.rpc("getblockhash", refunded_at))
        assert refund_txid in node.rpc("getrawmempool")
        for _ in range(3):  # a cycle each: it starts over, finds its chain confirmed, then its delta passed
            progress(proc)
            back = exit_of(proc, vtxo_id)
            if back["state"]["type"] != "start":
                break
        assert back["state"]["type"] in ("awaiting-delta", "claimable"), back
        assert back["error"] is None
        assert vtxo_state(proc, vtxo_id) == "locked"
        node.mine(1)
        for _ in range(2):  # awaiting its delta when the block came, it is claimable a cycle before it ends
            progress(proc)
        assert_output_taken(proc, vtxo_id, refund_txid, refunded_at)
        assert proc.log_text().count(" exit_conflicted ") == 2


def assert_output_taken(proc: DaemonProcess, vtxo_id: str, spender: str, height: int) -> None:
    """The claimable exit ended because `spender` took the VTXO's output in block `height`."""
    ended = exit_of(proc, vtxo_id)
    assert ended["state"]["type"] == "vtxo-already-spent", ended
    # barkd's error shape names the tx that spent the output, and the output (the VTXO itself).
    assert (ended["error"]["type"], ended["error"]["spent_by"]) == ("vtxo-already-spent", spender)
    assert (ended["error"]["spent_input"], ended["error"]["spent_at_height"]) == (vtxo_id, height)
    assert f"spent={vtxo_id} by={spender} block={height}" in proc.log_text()
    assert vtxo_state(proc, vtxo_id) == "spent"


def assert_never_claimed_again(proc: DaemonProcess, node: RegtestNode, vtxo_id: str) -> None:
    """Two more blocks: the exit stays ended, no cycle claims it or logs its conflict again."""
    for _ in range(2):
        node.mine(1)
        progress(proc)
        assert exit_of(proc, vtxo_id)["state"]["type"] == "vtxo-already-spent"
    log = proc.log_text()
    assert log.count(" exit_conflicted ") == 1
    assert " claim_broadcast " not in log and " claim_step_failed " not in log


def child_statuses(proc: DaemonProcess) -> dict[str, str]:
    with sqlite3.connect(proc.datadir / "exitd.sqlite3") as db:
        return dict(db.execute("select txid, status from exit_children"))


def reservations(proc: DaemonProcess, spending_txid: str) -> int:
    with sqlite3.connect(proc.datadir / "exitd.sqlite3") as db:
        query = "select count(*) from coin_reservations where reserved_by = ?"
        return int(db.execute(query, (spending_txid,)).fetchone()[0])


def vtxo_state(proc: DaemonProcess, vtxo_id: str) -> str:
    status, body = proc.request("GET", f"/api/v1/wallet/vtxos/{vtxo_id}")
    assert status == 200, body
    return str(body["state"]["type"])


def exit_of(proc: DaemonProcess, vtxo_id: str) -> dict[str, Any]:
    status, body = proc.request("GET", f"/api/v1/exits/status/vtxo/{vtxo_id}")
    assert status == 200, body
    return dict(body)


def test_claim_all_claims_what_it_can_sign_and_names_the_exit_it_left_out(
    daemon: DaemonProcess, bitcoind: RegtestNode
) -> None:
    fund_wallet(daemon, bitcoind, coins=2)
    forge = Forge(bitcoind)
    ours, foreign = forge.board(50_000, owned(daemon, 0)), forge.board(50_000, UserKey.generate())
    status, imported = daemon.request(
        "POST", "/api/v1/wallet/import-vtxo", {"vtxos": [ours.hex, foreign.hex]}
    )
    assert status == 200, imported
    ours_id, foreign_id = (v["id"] for v in imported)
    status, body = daemon.request("POST", "/api/v1/exits/start/vtxos", {"vtxos": [ours_id, foreign_id]})
    assert status == 200, body
    advance_until(daemon, bitcoind, all_in("claimable"))
    status, body = daemon.request(
        "POST", "/api/v1/exits/claim/all", {"destination": bitcoind.miner_address()}
    )
    assert status == 200, body
    (skipped,) = body["skipped"]
    assert skipped["vtxo_id"] == foreign_id and "does not hold the VTXO's user key" in skipped["reason"]
    assert body["vtxos"] == [ours_id]
    assert states(daemon) == {ours_id: "claim-in-progress", foreign_id: "claimable"}
