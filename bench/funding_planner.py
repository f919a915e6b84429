"""Funding planner: blocks from start until every exit is claimable, with the wallet holding one confirmed
coin, with and without the funding planner (exitd/wallet/planner.py).

Without it, a child's change is the only coin the next block has, so the wallet pays for one package per
block; with it, one split turns the coin into a coin per chain of levels, and every exit advances one
level per block. The limit is depth + exit_delta blocks; the split costs one more.

Scenarios: the issue's (8 leaves of a depth-3 round tree and a board, started together) and a larger one
(64 leaves of a depth-4 tree, two boards, a two-hop arkoor chain; left out by --quick). Each run has a
fresh daemon and wallet on one regtest node, one cycle per block.
Target: with the planner, blocks = depth + exit_delta + 1 for every scenario.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from harness import import_and_start, load_now, machine, parse_args, quiet_logs, regtest_node, running_daemon

from exitd.daemon.lifecycle import Daemon
from exitd.engine.states import ExitStateKind
from exitd.regtest.forge import Forge, ForgedVtxo, LeafSpec
from exitd.regtest.node import RegtestNode

# The one coin of the wallet: far more than any scenario's fees, so only its shape is measured.
COIN_BTC = Decimal("0.01")
MAX_BLOCKS = 300


@dataclass(frozen=True)
class Run:
    blocks: int
    splits: int
    cpfp_fees: int  # sat
    split_fees: int  # sat


def issue_case(forge: Forge) -> list[ForgedVtxo]:
    return [*forge.tree([LeafSpec(20_000 + i) for i in range(8)]), forge.board(30_000)]


def larger_case(forge: Forge) -> list[ForgedVtxo]:
    return [
        *forge.tree([LeafSpec(20_000 + i) for i in range(64)]),
        forge.board(30_000),
        forge.board(35_000),
        forge.arkoor_chain(40_000, hops=2),
    ]


async def fund_one_coin(daemon: Daemon, node: RegtestNode) -> None:
    node.send(await daemon.wallet.next_address(), COIN_BTC)
    node.mine(1)
    await daemon.wallet.sync()


async def exit_all(node: RegtestNode, vtxos: list[ForgedVtxo], planner: bool) -> Run:
    """Start every exit of `vtxos` on a fresh daemon whose wallet holds one coin; cycle and mine one block
    at a time until all are claimable."""
    async with running_daemon(node) as daemon:
        await fund_one_coin(daemon, node)
        if not planner:
            daemon.engine.cycle.funding = None
        ids = set(await import_and_start(daemon, vtxos))
        for mined in range(MAX_BLOCKS):
            await daemon.wallet.sync()  # bitcoind's wallet has seen the block, in both runs alike
            report = await daemon.engine.progress()
            claimable = {e.vtxo_id for e in report.exits if e.state.kind is ExitStateKind.CLAIMABLE}
            if claimable >= ids:
                with sqlite3.connect(daemon.config.database_path) as db:
                    splits, split_fees = db.execute(
                        "select count(*), coalesce(sum(fee), 0) from funding_splits"
                    ).fetchone()
                return Run(mined, splits, daemon.engine.cpfp_fees_paid, split_fees)
            node.mine(1)
    raise AssertionError(f"not every exit claimable after {MAX_BLOCKS} blocks")


async def main() -> None:
    args = parse_args(__doc__ or "")
    quiet_logs()
    print(machine(), flush=True)
    cases: list[tuple[str, Callable[[Forge], list[ForgedVtxo]]]] = [("8-leaf tree + board", issue_case)]
    if not args.quick:
        cases.append(("64-leaf tree + 2 boards + arkoor", larger_case))
    with regtest_node() as node:
        forge = Forge(node)
        for name, mint in cases:
            runs = {}
            for planner in (True, False):
                vtxos = mint(forge)
                runs[planner] = await exit_all(node, vtxos, planner)
            depth = max(v.vtxo.exit_depth for v in vtxos)
            delta = max(v.vtxo.exit_delta for v in vtxos)
            with_, without = runs[True], runs[False]
            print(
                f"{name}: {len(vtxos)} exits, depth {depth}, exit_delta {delta}, limit + split = "
                f"{depth + delta + 1} blocks; with the planner {with_.blocks} blocks ({with_.splits} split, "
                f"{with_.split_fees} sat; children {with_.cpfp_fees} sat), without {without.blocks} blocks "
                f"(children {without.cpfp_fees} sat); ratio {without.blocks / with_.blocks:.2f}",
                flush=True,
            )
    print(f"load {load_now()}")


if __name__ == "__main__":
    asyncio.run(main())
