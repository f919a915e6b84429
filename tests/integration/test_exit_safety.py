"""Exits that must end or go on by themselves, on a real regtest bitcoind: a package that left the mempool
after the exit's fee budget was spent is sent again (re-sending is not spending); starts that cannot pay
off or finish in time are refused with their figures unless forced."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from exitd.regtest.forge import Forge
from exitd.regtest.node import RegtestNode
from tests.support.daemon import DaemonProcess, running_daemon
from tests.support.exits import advance_until, all_in, fund_wallet, import_and_start, owned, progress

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
    held = progress(proc)["exits"][0]
    assert held["error"]["type"] == "exit-package-finalize-failure"  # the budget holds the first level
    sent = progress(proc, fee_rate=2000)["exits"][0]["state"]["transactions"][0]["status"]
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
