"""Reorgs at every exit state where a confirmation matters, one block deep and three blocks deep: every
exit still ends claimed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exitd.regtest.forge import Forge
from exitd.regtest.node import NodeFlavor, RegtestNode
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

pytestmark = [pytest.mark.bitcoind, pytest.mark.slow]


def level_confirmed(answer: dict[str, Any]) -> bool:
    """Processing with its first exit tx confirmed and the next one in the mempool."""
    state = answer["exits"][0]["state"]
    return state["type"] == "processing" and state["transactions"][0]["status"]["type"] == "confirmed"


def claim(proc: DaemonProcess, node: RegtestNode) -> None:
    status, body = proc.request("POST", "/api/v1/exits/claim/all", {"destination": node.miner_address()})
    assert status == 200, body


def to_processing(proc: DaemonProcess, node: RegtestNode) -> None:
    advance_until(proc, node, level_confirmed)


def to_awaiting_delta(proc: DaemonProcess, node: RegtestNode) -> None:
    advance_until(proc, node, all_in("awaiting-delta"))


def to_claimable(proc: DaemonProcess, node: RegtestNode) -> None:
    advance_until(proc, node, all_in("claimable"))


def to_claimed(proc: DaemonProcess, node: RegtestNode) -> None:
    to_claimable(proc, node)
    claim(proc, node)
    node.mine(1)
    progress(proc)


STAGES: dict[str, Callable[[DaemonProcess, RegtestNode], None]] = {
    "processing": to_processing,
    "awaiting-delta": to_awaiting_delta,
    "claimable": to_claimable,
    "claimed": to_claimed,
}


# Each stage one block deep on a node with a tx index, three deep on one without and on a pruned one.
NODES_AND_DEPTHS = [
    pytest.param(NodeFlavor.TXINDEX, 1, id="txindex-1"),
    pytest.param(NodeFlavor.PLAIN, 3, id="plain-3"),
    pytest.param(NodeFlavor.PRUNED, 3, id="pruned-3"),
]


@pytest.mark.parametrize(("private_bitcoind", "depth"), NODES_AND_DEPTHS, indirect=["private_bitcoind"])
@pytest.mark.parametrize("stage", list(STAGES))
def test_reorg_then_complete(tmp_path: Path, private_bitcoind: RegtestNode, stage: str, depth: int) -> None:
    node = private_bitcoind
    node.fund_miner()
    with running_daemon(tmp_path / "exitd", node) as proc:
        fund_wallet(proc, node, coins=4)
        arkoor = Forge(node).arkoor_chain(30_000, owned(proc, 0), hops=1)  # three exit txs
        minted(node)
        node.mine(3)  # keep the reorgs to the exit's own blocks (the chain anchor is the server's business)
        (vtxo_id,) = import_and_start(proc, [arkoor.hex])
        STAGES[stage](proc, node)
        assert states(proc) == {vtxo_id: stage}

        node.rpc("invalidateblock", node.rpc("getblockhash", node.height() - depth + 1))
        progress(proc)  # the exit moves back as far as the chain says
        if stage in ("awaiting-delta", "claimed"):
            # Its last tx (the leaf, the claim) was in the tip: the reorg wakes the resting exit.
            assert states(proc)[vtxo_id] != stage
        node.mine(depth + 1)  # the other branch overtakes; the mempool's txs confirm again

        def done(answer: dict[str, Any]) -> bool:
            if states(proc)[vtxo_id] == "claimable":
                claim(proc, node)
            return states(proc)[vtxo_id] == "claimed"

        advance_until(proc, node, done)
