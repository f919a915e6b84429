"""What exitd needs of bitcoind, said at start: the status of each kind of node, and a start-up error
naming each thing a node lacks (a wrong chain: test_daemon; no wallets: test_onchain_api)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from exitd.chain.node import NodeInfo, lacks
from exitd.regtest.forge import Forge
from exitd.regtest.node import NodeFlavor, RegtestNode
from tests.conftest import EVERY_NODE
from tests.support.daemon import DaemonProcess
from tests.support.exits import fund_wallet, import_and_start, owned

pytestmark = pytest.mark.bitcoind


@pytest.mark.parametrize("bitcoind", EVERY_NODE, indirect=True)
def test_node_status_names_what_exitd_needs_and_found(daemon: DaemonProcess, bitcoind: RegtestNode) -> None:
    status, body = daemon.request("GET", "/api/v1/bitcoin/node")
    assert status == 200, body
    assert int(body["version"].split(".")[0]) >= 29 and body["chain"] == "regtest"
    assert body["wallets"] == "enabled"
    assert body["txindex"] == ("synced" if bitcoind.flavor is NodeFlavor.TXINDEX else "none")
    assert body["pruned"] is (bitcoind.flavor is NodeFlavor.PRUNED)
    assert body["problems"] == []
    assert body["height"] == bitcoind.height()
    line = next(line for line in daemon.log_text().splitlines() if "node_connected" in line)
    assert "wallets=enabled" in line and f"txindex={body['txindex']}" in line and "pruned=" in line


def test_a_node_too_old_is_named_with_every_other_lack() -> None:
    """The version check cannot meet a real old node here (the harness runs Bitcoin Core 29): the rule."""
    old = NodeInfo(version=28_01_00, subversion="/Satoshi:28.1.0/", chain="main", blocks=1, wallets=False)
    problems = lacks(old, "regtest")
    assert len(problems) == 3
    assert "28.1.0 is too old" in problems[0] and ">= 29.0.0" in problems[0]
    assert "chain 'main'" in problems[1] and "-disablewallet" in problems[2]
    assert lacks(NodeInfo(29_00_00, "", "regtest", 1, prune_height=5, txindex="none"), "regtest") == []


@pytest.mark.parametrize("private_bitcoind", [NodeFlavor.PRUNED], indirect=True, ids=["pruned"])
def test_blocks_pruned_while_exitd_was_down_are_a_startup_error(
    tmp_path: Path, private_bitcoind: RegtestNode
) -> None:
    node = private_bitcoind
    node.fund_miner()
    proc = DaemonProcess(tmp_path / "exitd", node)
    proc.init()
    proc.start()
    try:
        fund_wallet(proc, node, coins=1)
        import_and_start(proc, [Forge(node).board(50_000, owned(proc, 0)).hex])
        status, body = proc.request("POST", "/api/v1/exits/progress", {})
        assert status == 200, body
        read_to = proc.request("GET", "/api/v1/bitcoin/node")[1]["blocks_read_to"]["height"]
    finally:
        assert proc.stop() == 0
    lowest = node.prune_history()
    result = subprocess.run(proc.command("run"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"pruned blocks {read_to + 1}..{lowest - 1}" in result.stderr
    assert "getblockfrompeer" in result.stderr
