"""The funding planner on regtest through the real daemon: one coin in, every exit at one level per block."""

from __future__ import annotations

import sqlite3
import subprocess
from typing import Any

import pytest
from bitcoin.core import CTransaction, b2lx

from exitd.regtest.forge import Forge, ForgedVtxo, LeafSpec
from exitd.regtest.node import RegtestNode
from tests.support.daemon import DaemonProcess
from tests.support.exits import advance_until, all_in, fund_wallet, import_and_start, owned, progress

pytestmark = pytest.mark.bitcoind


def tree_and_board(daemon: DaemonProcess, node: RegtestNode) -> list[ForgedVtxo]:
    """8 leaves of a radix-4 tree (exit depth 3: 1 root, 4 nodes, 8 leaf txs) and a board."""
    forge = Forge(node)
    leaves = forge.tree([LeafSpec(20_000 + i, owned(daemon, i)) for i in range(8)], arity=4)
    return [*leaves, forge.board(30_000, owned(daemon, 8))]


def funding(daemon: DaemonProcess) -> dict[str, Any]:
    status, body = daemon.request("GET", "/api/v1/exits/fee")
    assert status == 200, body
    return dict(body["funding"])


def rows(daemon: DaemonProcess, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(daemon.datadir / "exitd.sqlite3") as db:
        return db.execute(query).fetchall()


def coins_of_children(daemon: DaemonProcess) -> list[str]:
    """The wallet coins of every CPFP child of ours that bitcoind accepted (its first input is the parent's
    anchor). Children it refused are left out: their coins were freed when they were."""
    query = "select raw from exit_children where source = 'wallet' and status != 'abandoned'"
    children = [CTransaction.deserialize(raw) for (raw,) in rows(daemon, query)]
    return [f"{b2lx(i.prevout.hash)}:{i.prevout.n}" for child in children for i in child.vin[1:]]


def test_one_coin_funds_every_level_of_a_tree_and_a_board_per_block(
    daemon: DaemonProcess, bitcoind: RegtestNode
) -> None:
    fund_wallet(daemon, bitcoind, coins=1)
    vtxos = tree_and_board(daemon, bitcoind)
    depth = max(v.vtxo.exit_depth for v in vtxos)
    assert depth == 3 and {v.vtxo.exit_delta for v in vtxos} == {vtxos[0].vtxo.exit_delta}
    import_and_start(daemon, [v.hex for v in vtxos])
    waiting = progress(daemon)["exits"]
    assert all(e["error"] is None for e in waiting)  # waiting for the split is not being short of funds
    plan = funding(daemon)
    assert (plan["blocks_needed"], plan["extra_blocks"], plan["coins_needed"]) == (depth, 1, 9)
    assert plan["split_txid"] in bitcoind.rpc("getrawmempool") and plan["coins_arriving"] >= 9
    status = subprocess.run(daemon.command("status"), capture_output=True, text=True, check=True)
    assert f"1 block beyond the {depth}-block limit; split {plan['split_txid']} confirming" in status.stdout

    mined = advance_until(daemon, bitcoind, all_in("claimable"))
    assert mined == depth + vtxos[0].vtxo.exit_delta + 1  # one level per block, after the split's block

    ((coins, status),) = rows(daemon, "select coins, status from funding_splits")
    assert status == "confirmed" and coins >= 9  # a coin per chain: 8 leaves of the tree, and the board
    spent = coins_of_children(daemon)
    assert len(spent) == 1 + 4 + 8 + 1  # one coin per child, each shared tx paid once
    assert len(set(spent)) == len(spent)  # no coin chosen by two children
    plan = funding(daemon)
    assert plan["blocks_needed"] == 0 and plan["extra_blocks"] == 0 and plan["missing_sat"] == 0


def test_a_restart_before_the_split_confirms_does_not_split_again(
    daemon: DaemonProcess, bitcoind: RegtestNode
) -> None:
    fund_wallet(daemon, bitcoind, coins=4)
    first = tree_and_board(daemon, bitcoind)
    second = Forge(bitcoind).tree([LeafSpec(21_000 + i, owned(daemon, 20 + i)) for i in range(8)], arity=4)
    import_and_start(daemon, [v.hex for v in first])
    progress(daemon)
    ((split, status),) = rows(daemon, "select txid, status from funding_splits")
    assert status == "broadcast" and split in bitcoind.rpc("getrawmempool")

    daemon.stop()
    daemon.start()
    # More exits than the one coin left can fund: the plan wants another split, but one is unconfirmed.
    import_and_start(daemon, [v.hex for v in second])
    progress(daemon)
    assert rows(daemon, "select txid, status from funding_splits") == [(split, "broadcast")]
    plan = funding(daemon)
    assert plan["split_txid"] == split and plan["extra_blocks"] > 0

    advance_until(daemon, bitcoind, all_in("claimable"))
    assert rows(daemon, f"select status from funding_splits where txid = '{split}'") == [("confirmed",)]
    spent = coins_of_children(daemon)
    assert len(set(spent)) == len(spent)
