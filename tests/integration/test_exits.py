"""Whole exits on regtest through the real daemon: forge VTXOs in, coins out, every level for real."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from exitd.ark.exit_tx import build_exit_chain
from exitd.ark.policy import PolicyType
from exitd.regtest.forge import Forge, LeafSpec
from exitd.regtest.node import RegtestNode
from tests.conftest import EVERY_NODE
from tests.support.barkd_schema import assert_answer, assert_valid
from tests.support.daemon import DaemonProcess, running_daemon
from tests.support.exits import (
    advance_until,
    all_in,
    fund_wallet,
    import_and_start,
    minted,
    owned,
    package_rate,
    progress,
    states,
    wallet_address,
)

pytestmark = pytest.mark.bitcoind


def onchain_total(daemon: DaemonProcess) -> int:
    daemon.request("POST", "/api/v1/onchain/sync")
    status, body = daemon.request("GET", "/api/v1/onchain/balance")
    assert status == 200, body
    return int(body["total_sat"])


@pytest.mark.parametrize("bitcoind", EVERY_NODE, indirect=True)
def test_board_exit_from_start_to_claimed(daemon: DaemonProcess, bitcoind: RegtestNode) -> None:
    fund_wallet(daemon, bitcoind, coins=2)
    forge = Forge(bitcoind)
    board = forge.board(50_000, owned(daemon, 0))
    minted(bitcoind)
    (vtxo_id,) = import_and_start(daemon, [board.hex])
    assert states(daemon) == {vtxo_id: "start"}

    mined = advance_until(daemon, bitcoind, all_in("claimable"))
    assert mined == board.vtxo.exit_depth + board.vtxo.exit_delta  # one level per block, then the delta

    status, body = daemon.request("GET", f"/api/v1/exits/status/{vtxo_id}?history=true&transactions=true")
    assert status == 200
    assert_valid(body, "ExitTransactionStatus")
    kinds = [s["type"] for s in body["history"]]
    assert kinds[0] == "start" and "processing" in kinds and "awaiting-delta" in kinds
    assert len(kinds) == len(set(map(str, body["history"])))  # one entry per real change
    (package,) = body["transactions"]
    child = package["child"]
    assert child is not None and child["origin"]["type"] == "wallet"
    spender = bitcoind.find_tx(child["info"]["txid"])
    assert {(i["txid"], i["vout"]) for i in spender["vin"]} >= {(package["exit"]["txid"], 1)}

    before = onchain_total(daemon)
    destination = wallet_address(daemon)
    status, body = daemon.request(
        "POST", "/api/v1/exits/claim/all", {"destination": destination, "fee_rate": 2000}
    )
    assert status == 200 and body["message"] == "Exit claimed successfully", body
    # Extra fields: what the claim tx spent and paid, as bitcoind sees it.
    entry = bitcoind.rpc("getmempoolentry", body["txid"])
    assert (body["vtxos"], body["fee_sat"]) == ([vtxo_id], round(entry["fees"]["base"] * 100_000_000))
    # What the claim spends is the exit output, the VTXO's amount: the claim tx's one output plus its fee.
    claim_tx = bitcoind.rpc("getrawtransaction", body["txid"], 1)  # in the mempool: no tx index needed
    (output,) = claim_tx["vout"]
    assert body["amount_sat"] == round(output["value"] * 100_000_000) + body["fee_sat"]
    assert states(daemon) == {vtxo_id: "claim-in-progress"}
    bitcoind.mine(1)
    answer = progress(daemon)
    assert answer["done"] and answer["exits"] == []  # claimed exits leave the progress list
    assert states(daemon) == {vtxo_id: "claimed"}
    gained = onchain_total(daemon) - before
    assert 50_000 - 1000 < gained < 50_000  # the amount less a claim fee at 2 sat/vB
    status, vtxo = daemon.request("GET", f"/api/v1/wallet/vtxos/{vtxo_id}")
    assert vtxo["state"] == {"type": "spent"}


@pytest.mark.parametrize("bitcoind", EVERY_NODE, indirect=True)
def test_tree_exits_broadcast_each_shared_tx_once(daemon: DaemonProcess, bitcoind: RegtestNode) -> None:
    fund_wallet(daemon, bitcoind, coins=10)
    forge = Forge(bitcoind)
    leaves = forge.tree([LeafSpec(20_000 + i, owned(daemon, i)) for i in range(8)], arity=4)
    minted(bitcoind)
    ids = import_and_start(daemon, [leaf.hex for leaf in leaves])
    depth = leaves[0].vtxo.exit_depth
    assert depth >= 3

    advance_until(daemon, bitcoind, all_in("claimable"))

    status, body = daemon.request("GET", "/api/v1/exits/status?transactions=true")
    assert status == 200 and {e["vtxo_id"] for e in body} == set(ids)
    children: dict[str, set[str]] = defaultdict(set)
    for exit_status in body:
        assert_valid(exit_status, "ExitTransactionStatus")
        for package in exit_status["transactions"]:
            children[package["exit"]["txid"]].add(package["child"]["info"]["txid"])
    assert all(len(c) == 1 for c in children.values()), children  # one child per shared tx
    shared = {t.tx.GetTxid()[::-1].hex() for leaf in leaves for t in build_exit_chain(leaf.vtxo).txs}
    assert set(children) == shared and len(shared) < 8 * depth  # each tx of the tree once

    status, body = daemon.request("POST", "/api/v1/exits/claim/all", {"destination": wallet_address(daemon)})
    assert status == 200, body
    bitcoind.mine(1)
    progress(daemon)
    assert set(states(daemon).values()) == {"claimed"}


@pytest.mark.parametrize("bitcoind", EVERY_NODE, indirect=True)
def test_arkoor_and_htlc_exits_are_claimed_through_their_leaves(
    daemon: DaemonProcess, bitcoind: RegtestNode
) -> None:
    fund_wallet(daemon, bitcoind, coins=6)
    forge = Forge(bitcoind)
    arkoor = forge.arkoor_chain(30_000, owned(daemon, 0), hops=2)
    send = forge.arkoor_chain(25_000, owned(daemon, 1), hops=1, policy_type=PolicyType.SERVER_HTLC_SEND)
    recv = forge.arkoor_chain(26_000, owned(daemon, 2), hops=1, policy_type=PolicyType.SERVER_HTLC_RECV)
    minted(bitcoind)
    assert arkoor.vtxo.exit_depth == 5
    ids = import_and_start(daemon, [arkoor.hex, send.hex, recv.hex])

    advance_until(daemon, bitcoind, all_in("claimable"))
    destination = wallet_address(daemon)

    # Without its preimage the HTLC-receive claim cannot be signed: a clear 400, nothing broadcast.
    status, body = daemon.request(
        "POST", "/api/v1/exits/claim/vtxos", {"destination": destination, "vtxos": [ids[2]]}
    )
    assert status == 400 and "preimage" in body["message"]
    assert recv.payment_preimage is not None
    claim = {
        "destination": destination,
        "vtxos": ids,
        "preimages": {ids[2]: recv.payment_preimage.hex()},
    }
    status, body = daemon.request("POST", "/api/v1/exits/claim/vtxos", claim)
    assert status == 200, body
    bitcoind.mine(1)
    progress(daemon)
    assert states(daemon) == dict.fromkeys(ids, "claimed")


def test_wallet_short_of_funds_then_funded(daemon: DaemonProcess, bitcoind: RegtestNode) -> None:
    forge = Forge(bitcoind)
    board = forge.board(40_000, owned(daemon, 0))
    (vtxo_id,) = import_and_start(daemon, [board.hex])
    answer = progress(daemon)
    (entry,) = answer["exits"]
    assert entry["vtxo_id"] == vtxo_id
    assert entry["error"]["type"] == "insufficient-confirmed-funds", entry
    assert entry["state"]["transactions"][0]["status"]["type"] == "needs-signed-package"
    assert_valid(answer, "ExitProgressResponse")

    fund_wallet(daemon, bitcoind, coins=1)
    advance_until(daemon, bitcoind, all_in("claimable"))
    assert progress(daemon)["exits"][0]["error"] is None


def test_status_listing_follows_every_change(daemon: DaemonProcess, bitcoind: RegtestNode) -> None:
    """The listing is rendered once per engine version and served from then on: after a start, a cycle
    or a cancel it must still say what each exit's own status says (that one is never cached)."""
    forge = Forge(bitcoind)
    first, second = forge.board(40_000, owned(daemon, 0)), forge.board(41_000, owned(daemon, 1))

    def listing() -> dict[str, Any]:
        status, body = daemon.request("GET", "/api/v1/exits/status")
        assert status == 200, body
        return {e["vtxo_id"]: e for e in body}

    def each(ids: list[str]) -> dict[str, Any]:
        return {i: daemon.request("GET", f"/api/v1/exits/status/{i}")[1] for i in ids}

    (a,) = import_and_start(daemon, [first.hex])
    assert listing() == each([a]) and listing() == listing()
    (b,) = import_and_start(daemon, [second.hex])
    assert set(listing()) == {a, b}
    progress(daemon)  # the wallet is empty: both exits get an error, neither tx is broadcast
    assert listing() == each([a, b])
    assert listing()[a]["error"]["type"] == "insufficient-confirmed-funds"
    assert daemon.request("POST", f"/api/v1/exits/cancel/{b}")[0] == 200
    # barkd 0.1.4 has no canceled exit: b is not exiting any more, as barkd 0.1.4 would show it.
    assert set(listing()) == {a} and listing() == each([a])
    assert daemon.request("GET", f"/api/v1/exits/status/{b}")[0] == 404
    full = "?history=true&transactions=true"  # streamed, not cached
    status, streamed = daemon.request("GET", f"/api/v1/exits/status{full}")
    assert status == 200
    assert streamed == [daemon.request("GET", f"/api/v1/exits/status/{a}{full}")[1]]
    # Every listing parses for barkd 0.1.4's own client (strict enums: one unknown state fails it whole).
    for which in ("", "/all", "/live", "/finished"):
        for query in ("", full):
            status, body = daemon.request("GET", f"/api/v1/exits/status{which}{query}")
            assert status == 200 and b not in {e["vtxo_id"] for e in body}
            assert_answer("GET", "/api/v1/exits/status", status, body)
    assert_answer(
        "GET", "/api/v1/exits/status/{vtxo_id}", 404, daemon.request("GET", f"/api/v1/exits/status/{b}")[1]
    )
    assert daemon.request("GET", f"/api/v1/exits/status/vtxo/{b}")[0] == 404


def test_low_fee_package_is_replaced_when_the_target_rises(
    daemon: DaemonProcess, bitcoind: RegtestNode
) -> None:
    fund_wallet(daemon, bitcoind, coins=3)
    forge = Forge(bitcoind)
    board = forge.board(60_000, owned(daemon, 0))
    import_and_start(daemon, [board.hex])
    # Well above any regtest estimate, so the background cycle (at the estimate) never outbids the test.
    first = progress(daemon, fee_rate=50_000)["exits"][0]["state"]["transactions"][0]["status"]
    assert first["type"] == "broadcast-with-cpfp"
    target = 3 * package_rate(bitcoind, first["child_txid"])
    second = progress(daemon, fee_rate=target)["exits"][0]["state"]["transactions"][0]["status"]
    assert second["type"] == "broadcast-with-cpfp" and second["child_txid"] != first["child_txid"]
    mempool = set(bitcoind.rpc("getrawmempool"))
    assert second["child_txid"] in mempool and first["child_txid"] not in mempool
    assert target <= package_rate(bitcoind, second["child_txid"]) <= target * 1.05
    bitcoind.mine(1)
    advance_until(daemon, bitcoind, all_in("awaiting-delta", "claimable"))


@pytest.mark.parametrize("bitcoind", EVERY_NODE, indirect=True)
def test_third_party_child_is_adopted(daemon: DaemonProcess, bitcoind: RegtestNode) -> None:
    fund_wallet(daemon, bitcoind, coins=1)
    forge = Forge(bitcoind)
    board = forge.board(45_000, owned(daemon, 0))
    minted(bitcoind)
    (exit_tx,) = [t.tx for t in build_exit_chain(board.vtxo).txs]
    child = forge.cpfp_child(exit_tx, fee_rate=50)  # someone else pays 50 sat/vB before exitd starts
    result = bitcoind.rpc("submitpackage", [exit_tx.serialize().hex(), child.serialize().hex()])
    assert result["package_msg"] == "success"
    import_and_start(daemon, [board.hex])
    status = progress(daemon, fee_rate=2000)["exits"][0]["state"]["transactions"][0]["status"]
    assert status["type"] == "broadcast-with-cpfp" and status["origin"]["type"] == "mempool"
    assert status["child_txid"] == child.GetTxid()[::-1].hex()
    assert status["origin"]["fee_rate_sat_per_kvb"] >= 49_000
    bitcoind.mine(1)
    advance_until(daemon, bitcoind, all_in("awaiting-delta", "claimable"))
    status, body = daemon.request("GET", "/api/v1/exits/status?transactions=true")
    adopted = body[0]["transactions"][0]["child"]
    assert adopted["info"]["txid"] == child.GetTxid()[::-1].hex() and adopted["origin"]["type"] == "block"
    assert body[0]["fees_paid_sat"] == 0  # exitd paid nothing for this exit's tx


def test_fee_estimate_counts_what_is_left_to_broadcast(daemon: DaemonProcess, bitcoind: RegtestNode) -> None:
    forge = Forge(bitcoind)
    arkoor = forge.arkoor_chain(30_000, owned(daemon, 0), hops=1)
    status, imported = daemon.request("POST", "/api/v1/wallet/import-vtxo", {"vtxos": [arkoor.hex]})
    vtxo_id = imported[0]["id"]
    status, body = daemon.request("GET", f"/api/v1/exits/fee?vtxo_ids={vtxo_id}&fee_rate_sat_per_vb=3")
    assert status == 200, body
    assert_valid(body, "EmergencyExitFeeEstimateResponse", "0.6.0")
    assert body["txs_to_broadcast"] == 3 and body["fee_rate_sat_per_vb"] == 3
    assert body["fundable"] is False  # nothing in the wallet yet
    assert body["total_fee_sat"] == body["exit_broadcast_fee_sat"] + body["claim_fee_sat"] > 0
    fund_wallet(daemon, bitcoind, coins=1)
    assert daemon.request("GET", "/api/v1/exits/fee")[1]["fundable"] is True  # every spendable VTXO
    for bad in ("vtxo_ids=nope", "fee_rate_sat_per_vb=x", f"vtxo_ids={vtxo_id}&destination=bc1qnotours"):
        assert daemon.request("GET", f"/api/v1/exits/fee?{bad}")[0] == 400


def test_unrelayable_exit_is_refused_at_start(daemon: DaemonProcess, bitcoind: RegtestNode) -> None:
    leaves = Forge(bitcoind).tree(
        [LeafSpec(20_000, owned(daemon, 0)), LeafSpec(200, owned(daemon, 1))], arity=2
    )
    status, imported = daemon.request("POST", "/api/v1/wallet/import-vtxo", {"vtxos": [leaves[0].hex]})
    assert status == 200
    status, body = daemon.request("POST", "/api/v1/exits/start/vtxos", {"vtxos": [imported[0]["id"]]})
    assert status == 400 and "below the dust limit" in body["message"], body
    assert states(daemon) == {}
    assert daemon.request("POST", "/api/v1/exits/start/all")[0] == 200  # skipped, with a log line
    assert states(daemon) == {}
    # Given with an exitable VTXO: neither starts (an explicit list is started whole or not at all).
    board = Forge(bitcoind).board(40_000, owned(daemon, 2))
    status, (good,) = daemon.request("POST", "/api/v1/wallet/import-vtxo", {"vtxos": [board.hex]})
    assert status == 200
    both = [good["id"], imported[0]["id"]]
    status, body = daemon.request("POST", "/api/v1/exits/start/vtxos", {"vtxos": both})
    assert status == 400 and "below the dust limit" in body["message"], body
    assert states(daemon) == {}


VOCABULARY_060 = (
    "verify-inputs",
    "awaiting-input-confirmation",
    "awaiting-cpfp-broadcast",
    "awaiting-confirmation",
    "confirmed",
)


def test_060_vocabulary_switch(tmp_path: Path, bitcoind: RegtestNode) -> None:
    vocabulary = {"EXITD_REST_SUBSTATE_VOCABULARY": "0.6.0"}
    with running_daemon(tmp_path / "exitd", bitcoind, env=vocabulary) as proc:
        fund_wallet(proc, bitcoind, coins=2)
        arkoor = Forge(bitcoind).arkoor_chain(30_000, owned(proc, 0), hops=1)
        import_and_start(proc, [arkoor.hex])
        seen: set[str] = set()

        def record(answer: dict[str, Any]) -> bool:
            for exit_status in answer["exits"]:
                assert_valid(exit_status["state"], "ExitState", "0.6.0")
                seen.update(t["status"]["type"] for t in exit_status["state"].get("transactions", []))
            return all_in("claimable")(answer)

        advance_until(proc, bitcoind, record)
        assert {"awaiting-confirmation", "awaiting-input-confirmation", "confirmed"} <= seen
        assert seen <= set(VOCABULARY_060)
