"""Exits under faults: the daemon killed mid-broadcast, blocks reorged away, cancels, waits, races."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from exitd.daemon.lifecycle import CRASH_EXIT_CODE
from exitd.regtest.forge import Forge, LeafSpec
from exitd.regtest.node import NodeFlavor, RegtestNode
from tests.conftest import EVERY_NODE
from tests.support.daemon import DaemonProcess, running_daemon
from tests.support.exits import (
    advance_until,
    all_in,
    fund_wallet,
    import_and_start,
    minted,
    owned,
    progress,
    states,
)

pytestmark = pytest.mark.bitcoind


@pytest.fixture
def on_private_node(
    tmp_path: Path, private_bitcoind: RegtestNode
) -> Iterator[tuple[DaemonProcess, RegtestNode]]:
    """The real daemon on a node of this test's own, which the test may stop, restart or reorg."""
    private_bitcoind.fund_miner()
    with running_daemon(tmp_path / "exitd", private_bitcoind) as proc:
        yield proc, private_bitcoind


def wait_for_exit(daemon: DaemonProcess, timeout: float = 30.0) -> int:
    assert daemon.process is not None
    code = daemon.process.wait(timeout=timeout)
    daemon.process = None
    return code


def children(daemon: DaemonProcess) -> list[tuple[str, str, str]]:
    """(child txid, parent txid, status) of every CPFP child the daemon stored."""
    with sqlite3.connect(daemon.datadir / "exitd.sqlite3") as db:
        return list(db.execute("select txid, parent_txid, status from exit_children where source = 'wallet'"))


def funding_inputs_are_never_shared(daemon: DaemonProcess, node: RegtestNode) -> None:
    """No wallet coin feeds two children that could both be valid (abandoned/replaced ones excepted)."""
    seen: dict[tuple[str, int], str] = {}
    for txid, parent, status in children(daemon):
        if status in ("abandoned", "replaced"):
            continue
        tx = node.find_tx(txid)
        for vin in tx["vin"]:
            outpoint = (vin["txid"], vin["vout"])
            if vin["txid"] == parent:
                continue  # the P2A anchor
            assert outpoint not in seen, f"{outpoint} funds {seen[outpoint]} and {txid}"
            seen[outpoint] = txid


@pytest.mark.parametrize(
    ("point", "bitcoind"),
    [
        pytest.param("after_child_stored", NodeFlavor.TXINDEX, id="after_child_stored-txindex"),
        *(pytest.param("after_submit", f, id=f"after_submit-{f.value}") for f in NodeFlavor),
    ],
    indirect=["bitcoind"],
)
def test_killed_mid_broadcast_resumes_without_double_spend(
    tmp_path: Path, bitcoind: RegtestNode, point: str
) -> None:
    proc = DaemonProcess(tmp_path / "exitd", bitcoind, extra_config=f'\n[testing]\ncrash_point = "{point}"\n')
    proc.init()
    proc.start()
    fund_wallet(proc, bitcoind, coins=2)
    board = Forge(bitcoind).board(50_000, owned(proc, 0))
    minted(bitcoind)
    status, _ = proc.request("POST", "/api/v1/wallet/import-vtxo", {"vtxos": [board.hex]})
    assert status == 200
    proc.request("POST", "/api/v1/exits/start/all")  # the background cycle builds the child and dies
    assert wait_for_exit(proc) == CRASH_EXIT_CODE
    stored = children(proc)
    assert len(stored) == 1 and stored[0][2] == "stored"
    in_mempool = stored[0][0] in bitcoind.rpc("getrawmempool")
    assert in_mempool == (point == "after_submit")

    proc.config_path.write_text(
        proc.config_path.read_text().replace(f'crash_point = "{point}"', 'crash_point = ""')
    )
    proc.start()
    try:
        advance_until(proc, bitcoind, all_in("claimable"))
        final = children(proc)
        assert [c[0] for c in final] == [stored[0][0]]  # the stored child itself went out, no second one
        assert final[0][2] == "confirmed"
        funding_inputs_are_never_shared(proc, bitcoind)
    finally:
        proc.stop()


@pytest.mark.parametrize("bitcoind", EVERY_NODE, indirect=True)
def test_stopped_while_its_txs_confirm_then_resumed_from_the_blocks_it_missed(
    tmp_path: Path, bitcoind: RegtestNode
) -> None:
    """exitd is down while blocks confirm its first level and more: on restart it reads the blocks it
    missed (no tx index needed) and goes on from the next level."""
    proc = DaemonProcess(tmp_path / "exitd", bitcoind)
    proc.init()
    proc.start()
    try:
        fund_wallet(proc, bitcoind, coins=4)
        arkoor = Forge(bitcoind).arkoor_chain(30_000, owned(proc, 0), hops=1)  # depth 3
        minted(bitcoind)
        (vtxo_id,) = import_and_start(proc, [arkoor.hex])
        first = progress(proc)["exits"][0]["state"]["transactions"][0]
        assert first["status"]["type"] == "broadcast-with-cpfp", first
        read_to = proc.request("GET", "/api/v1/bitcoin/node")[1]["blocks_read_to"]["height"]
        assert proc.stop() == 0
        (confirmed_in, *_) = bitcoind.mine(3)
        proc.start()
        status, body = proc.request("GET", "/api/v1/bitcoin/node")
        assert status == 200 and body["problems"] == [], body
        txs = progress(proc)["exits"][0]["state"]["transactions"]
        assert txs[0]["status"]["type"] == "confirmed"
        assert txs[0]["status"]["block"]["hash"] == confirmed_in
        assert txs[1]["status"]["type"] == "broadcast-with-cpfp"
        read_now = proc.request("GET", "/api/v1/bitcoin/node")[1]["blocks_read_to"]["height"]
        assert read_now == read_to + 3 == bitcoind.height()
        advance_until(proc, bitcoind, all_in("claimable"))
        status, body = proc.request(
            "POST", "/api/v1/exits/claim/all", {"destination": bitcoind.miner_address()}
        )
        assert status == 200, body
        bitcoind.mine(1)
        progress(proc)
        assert states(proc) == {vtxo_id: "claimed"}
    finally:
        proc.stop()


def test_reorg_during_processing_and_awaiting_delta(
    on_private_node: tuple[DaemonProcess, RegtestNode],
) -> None:
    proc, node = on_private_node
    fund_wallet(proc, node, coins=4)
    arkoor = Forge(node).arkoor_chain(30_000, owned(proc, 0), hops=1)  # depth 3
    (vtxo_id,) = import_and_start(proc, [arkoor.hex])
    progress(proc)
    first_block = node.mine(1)[0]
    txs = progress(proc)["exits"][0]["state"]["transactions"]
    assert [t["status"]["type"] for t in txs][:2] == ["confirmed", "broadcast-with-cpfp"]

    node.rpc("invalidateblock", first_block)  # level 1 goes back to the mempool
    txs = progress(proc)["exits"][0]["state"]["transactions"]
    assert txs[0]["status"]["type"] == "broadcast-with-cpfp"
    assert txs[1]["status"]["type"] == "awaiting-input-confirmation"
    advance_until(proc, node, all_in("awaiting-delta"))

    status, body = proc.request("GET", f"/api/v1/exits/status/{vtxo_id}")
    leaf_block = node.rpc("getblockhash", body["state"]["confirmed_block"]["height"])
    node.rpc("invalidateblock", leaf_block)  # the leaf is unconfirmed again
    assert progress(proc)["exits"][0]["state"]["type"] == "processing"
    advance_until(proc, node, all_in("claimable"))
    status, body = proc.request("POST", "/api/v1/exits/claim/all", {"destination": node.miner_address()})
    assert status == 200, body
    node.mine(1)
    progress(proc)
    assert states(proc) == {vtxo_id: "claimed"}


def test_cancel_before_the_leaf_is_broadcast(daemon: DaemonProcess, bitcoind: RegtestNode) -> None:
    fund_wallet(daemon, bitcoind, coins=2)
    forge = Forge(bitcoind)
    arkoor = forge.arkoor_chain(30_000, owned(daemon, 0), hops=1)
    (vtxo_id,) = import_and_start(daemon, [arkoor.hex])
    progress(daemon)  # level 1 out, the leaf (level 3) not
    for _ in range(2):  # idempotent
        status, body = daemon.request("POST", f"/api/v1/exits/cancel/{vtxo_id}")
        assert status == 200 and body == {"message": "Exit canceled successfully"}
    # barkd 0.1.4 has no canceled exit: the VTXO is shown as not exiting (0.6.0 shows it canceled).
    assert states(daemon) == {}
    assert daemon.request("GET", f"/api/v1/exits/status/{vtxo_id}")[0] == 404
    assert daemon.request("GET", f"/api/v1/wallet/vtxos/{vtxo_id}")[1]["state"] == {"type": "spendable"}
    assert daemon.request("GET", "/api/v1/exits/status/finished")[1] == []
    assert daemon.request("GET", "/api/v1/exits/status/live")[1] == []

    # Started again: a fresh exit over the same txs, its canceled past gone from its history.
    assert daemon.request("POST", "/api/v1/exits/start/vtxos", {"vtxos": [vtxo_id]})[0] == 200
    status, again = daemon.request("GET", f"/api/v1/exits/status/{vtxo_id}?history=true&transactions=true")
    assert status == 200 and again["state"]["type"] in ("start", "processing"), again
    assert "canceled" not in [h["type"] for h in again["history"]]
    assert len(again["transactions"]) == arkoor.vtxo.exit_depth
    assert daemon.request("POST", f"/api/v1/exits/cancel/{vtxo_id}")[0] == 200

    board = forge.board(40_000, owned(daemon, 1))
    (board_id,) = import_and_start(daemon, [board.hex])
    progress(daemon)  # a board's only tx is its leaf: now broadcast
    status, body = daemon.request("POST", f"/api/v1/exits/cancel/{board_id}")
    assert status == 400 and "already broadcast" in body["message"]
    status, body = daemon.request("POST", f"/api/v1/exits/cancel/{'ab' * 32}:0")
    assert status == 404


def test_wait_returns_when_done(daemon: DaemonProcess, bitcoind: RegtestNode) -> None:
    fund_wallet(daemon, bitcoind, coins=1)
    board = Forge(bitcoind).board(40_000, owned(daemon, 0))
    import_and_start(daemon, [board.hex])
    answer: dict[str, Any] = {}

    def waiting_client() -> None:
        answer.update(daemon.request("POST", "/api/v1/exits/progress", {"wait": True})[1])

    client = threading.Thread(target=waiting_client)
    client.start()
    deadline = time.monotonic() + 60
    while client.is_alive() and time.monotonic() < deadline:
        bitcoind.mine(1)
        time.sleep(0.3)
    client.join(timeout=5)
    assert not client.is_alive() and answer["done"] is True
    assert answer["exits"][0]["state"]["type"] == "claimable"


def test_concurrent_progress_builds_no_duplicate_children(
    daemon: DaemonProcess, bitcoind: RegtestNode
) -> None:
    fund_wallet(daemon, bitcoind, coins=10)
    leaves = Forge(bitcoind).tree([LeafSpec(20_000, owned(daemon, i)) for i in range(4)], arity=2)
    import_and_start(daemon, [leaf.hex for leaf in leaves])
    for _ in range(3):
        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(pool.map(lambda _: progress(daemon), range(6)))
        assert all(a["exits"] for a in answers)
        bitcoind.mine(1)
    live = [c for c in children(daemon) if c[2] not in ("abandoned", "replaced")]
    parents = [c[1] for c in live]
    assert len(parents) == len(set(parents)), "a tx got two live children"
    funding_inputs_are_never_shared(daemon, bitcoind)


def set_crash_point(proc: DaemonProcess, point: str) -> None:
    text = proc.config_path.read_text().split("\n[testing]")[0]
    proc.config_path.write_text(text + (f'\n[testing]\ncrash_point = "{point}"\n' if point else ""))


@pytest.mark.parametrize(
    ("point", "bitcoind"),
    [
        pytest.param("before_claim_broadcast", NodeFlavor.TXINDEX, id="before_claim_broadcast-txindex"),
        *(
            pytest.param("after_claim_broadcast", f, id=f"after_claim_broadcast-{f.value}")
            for f in NodeFlavor
        ),
    ],
    indirect=["bitcoind"],
)
def test_killed_mid_claim_still_ends_claimed(tmp_path: Path, bitcoind: RegtestNode, point: str) -> None:
    proc = DaemonProcess(tmp_path / "exitd", bitcoind)
    proc.init()
    proc.start()
    fund_wallet(proc, bitcoind, coins=1)
    board = Forge(bitcoind).board(50_000, owned(proc, 0))
    minted(bitcoind)
    (vtxo_id,) = import_and_start(proc, [board.hex])
    advance_until(proc, bitcoind, all_in("claimable"))
    proc.stop()
    set_crash_point(proc, point)
    proc.start()
    destination = bitcoind.miner_address()
    with pytest.raises(OSError):  # the daemon dies while answering
        proc.request("POST", "/api/v1/exits/claim/all", {"destination": destination})
    assert wait_for_exit(proc) == CRASH_EXIT_CODE
    set_crash_point(proc, "")
    proc.start()
    try:
        if point == "before_claim_broadcast":
            assert states(proc) == {vtxo_id: "claimable"}
            status, body = proc.request("POST", "/api/v1/exits/claim/all", {"destination": destination})
            assert status == 200, body
        else:  # the claim went out: the next cycle finds it spending the VTXO output
            assert progress(proc)["exits"][0]["state"]["type"] == "claim-in-progress"
        bitcoind.mine(1)
        progress(proc)
        assert states(proc) == {vtxo_id: "claimed"}
    finally:
        proc.stop()


def test_bitcoind_outage_mid_exit(on_private_node: tuple[DaemonProcess, RegtestNode]) -> None:
    proc, node = on_private_node
    fund_wallet(proc, node, coins=3)
    arkoor = Forge(node).arkoor_chain(30_000, owned(proc, 0), hops=1)
    (vtxo_id,) = import_and_start(proc, [arkoor.hex])
    progress(proc)
    node.mine(1)
    node.stop()
    time.sleep(3)  # a few background cycles fail meanwhile
    assert states(proc) == {vtxo_id: "processing"}  # the REST API still answers from the store
    status, body = proc.request("POST", "/api/v1/exits/progress", {})
    assert status == 500 and "bitcoind is unavailable" in body["message"]
    node.start()
    advance_until(proc, node, all_in("claimable"))


def test_mempool_lost_with_a_bitcoind_restart(on_private_node: tuple[DaemonProcess, RegtestNode]) -> None:
    proc, node = on_private_node
    fund_wallet(proc, node, coins=2)
    board = Forge(node).board(50_000, owned(proc, 0))
    import_and_start(proc, [board.hex])
    child = progress(proc)["exits"][0]["state"]["transactions"][0]["status"]["child_txid"]
    node.stop()
    node.extra_args = ("-persistmempool=0",)
    node.start()
    assert node.rpc("getrawmempool") == []
    status = progress(proc)["exits"][0]["state"]["transactions"][0]["status"]
    assert (
        status["type"] == "broadcast-with-cpfp" and status["child_txid"] == child
    )  # the stored package, resent
    assert child in node.rpc("getrawmempool")
    advance_until(proc, node, all_in("claimable"))


def test_reorg_of_claimable_and_claimed(on_private_node: tuple[DaemonProcess, RegtestNode]) -> None:
    proc, node = on_private_node
    fund_wallet(proc, node, coins=2)
    board = Forge(node).board(50_000, owned(proc, 0))
    (vtxo_id,) = import_and_start(proc, [board.hex])
    advance_until(proc, node, all_in("claimable"))
    tip = node.rpc("getbestblockhash")
    node.rpc("invalidateblock", tip)  # claimable_since may now be above the tip
    state = progress(proc)["exits"][0]["state"]["type"]
    assert state in ("awaiting-delta", "processing")
    advance_until(proc, node, all_in("claimable"))
    status, body = proc.request("POST", "/api/v1/exits/claim/all", {"destination": node.miner_address()})
    assert status == 200, body
    claim_block = node.mine(1)[0]
    progress(proc)
    assert states(proc) == {vtxo_id: "claimed"}
    node.rpc("invalidateblock", claim_block)  # the claim is back in the mempool
    progress(proc)
    assert states(proc) == {vtxo_id: "claim-in-progress"}
    node.mine(1)
    progress(proc)
    assert states(proc) == {vtxo_id: "claimed"}
