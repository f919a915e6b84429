"""Fee accuracy: for every package the engine broadcasts, the rate the node sees (the child's ancestor fees
over its ancestor size, from getmempoolentry right after the cycle) divided by the rate the engine asked
its wallet for. And for every exit, the blocks from its start to claimable.

Boards (a 330 sat anchor), round-tree leaves (shared ancestors) and arkoor chains exit together, once at
the engine's own rate and once at each of several rates given to progress, one block per cycle.
Targets: every ratio within [1.00, 1.05]; blocks to claimable = depth + exit_delta for every exit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from harness import (
    fund_wallet,
    import_and_start,
    load_now,
    machine,
    parse_args,
    quiet_logs,
    regtest_node,
    running_daemon,
)
from sqlalchemy.ext.asyncio import AsyncSession

from exitd.chain.fees import btc_to_sat
from exitd.daemon.lifecycle import Daemon
from exitd.engine.packages import CpfpFunder
from exitd.engine.states import ExitStateKind
from exitd.regtest.forge import Forge, ForgedVtxo, LeafSpec
from exitd.regtest.node import RegtestNode
from exitd.wallet.errors import InsufficientFunds
from exitd.wallet.onchain import CpfpChild, CpfpRequest

# sat/kvB given to progress; None: the engine's own rate (the node's estimate, or the fallback).
RATES: tuple[int | None, ...] = (None, 1_000, 3_333, 12_345, 50_000)
QUICK_RATES: tuple[int | None, ...] = (None, 12_345)
TREE_LEAVES = 16
MAX_BLOCKS = 40


@dataclass
class RecordingFunder:
    """The engine's wallet, remembering the rate each child was asked to pay (by child txid)."""

    wallet: CpfpFunder
    targets: dict[str, int] = field(default_factory=dict)

    async def build_cpfp_children(
        self, session: AsyncSession, requests: Sequence[CpfpRequest]
    ) -> list[CpfpChild | InsufficientFunds]:
        children = await self.wallet.build_cpfp_children(session, requests)
        for request, child in zip(requests, children, strict=True):
            if isinstance(child, CpfpChild):
                self.targets[child.txid] = request.target_rate
        return children

    async def release_reservations(self, session: AsyncSession, spending_txid: str) -> None:
        await self.wallet.release_reservations(session, spending_txid)


def mint(forge: Forge) -> list[ForgedVtxo]:
    """Two boards, a tree of TREE_LEAVES leaves and two arkoor chains (one and two hops)."""
    return [
        forge.board(40_000),
        forge.board(25_000),
        *forge.tree([LeafSpec(20_000 + i) for i in range(TREE_LEAVES)]),
        forge.arkoor_chain(30_000, hops=1),
        forge.arkoor_chain(35_000, hops=2),
    ]


def package_ratio(node: RegtestNode, child: str, target: int) -> float:
    """The child's package rate in the node's mempool over `target` (both sat/kvB)."""
    entry = node.rpc("getmempoolentry", child)
    return btc_to_sat(entry["fees"]["ancestor"]) * 1000 / int(entry["ancestorsize"]) / target


async def exit_at(
    daemon: Daemon, node: RegtestNode, funder: RecordingFunder, vtxos: Sequence[ForgedVtxo], rate: int | None
) -> tuple[list[float], dict[str, int]]:
    """Exit `vtxos` cycling at `rate`, one block per cycle: each package's ratio, and each exit's
    blocks from start to claimable."""
    ids = await import_and_start(daemon, vtxos)
    ratios: list[float] = []
    blocks_to_claimable: dict[str, int] = {}
    for mined in range(MAX_BLOCKS):
        seen = set(funder.targets)
        report = await daemon.engine.progress(rate)
        for child in funder.targets.keys() - seen:
            ratios.append(package_ratio(node, child, funder.targets[child]))
        for e in report.exits:
            if e.vtxo_id in ids and e.state.kind is ExitStateKind.CLAIMABLE:
                blocks_to_claimable.setdefault(e.vtxo_id, mined)
        if len(blocks_to_claimable) == len(ids):
            return ratios, blocks_to_claimable
        node.mine(1)
    raise AssertionError(f"not every exit claimable after {MAX_BLOCKS} blocks")


async def main() -> None:
    args = parse_args(__doc__ or "")
    quiet_logs()
    print(machine(), flush=True)
    with regtest_node() as node:
        forge = Forge(node)
        async with running_daemon(node) as daemon:
            await fund_wallet(daemon, node, 2 * TREE_LEAVES)
            assert daemon.engine.wallet is not None
            funder = RecordingFunder(daemon.engine.wallet)
            daemon.engine.wallet = funder
            all_ratios: list[float] = []
            for rate in QUICK_RATES if args.quick else RATES:
                vtxos = mint(forge)
                expected = {str(v.id): v.vtxo.exit_depth + v.vtxo.exit_delta for v in vtxos}
                ratios, blocks = await exit_at(daemon, node, funder, vtxos, rate)
                all_ratios += ratios
                late = {v: (blocks[v], expected[v]) for v in expected if blocks[v] != expected[v]}
                name = "engine's own" if rate is None else f"{rate} sat/kvB"
                print(
                    f"rate {name}: {len(ratios)} packages, ratio {min(ratios):.4f} to {max(ratios):.4f}; "
                    f"{len(vtxos)} exits, depth + delta blocks to claimable: "
                    f"{len(vtxos) - len(late)}/{len(vtxos)}" + (f" (late: {late})" if late else ""),
                    flush=True,
                )
    inside = sum(1.0 <= r <= 1.05 for r in all_ratios)
    print(
        f"all: {len(all_ratios)} packages, {inside} within [1.00, 1.05], "
        f"min {min(all_ratios):.4f} max {max(all_ratios):.4f}; load {load_now()}"
    )


if __name__ == "__main__":
    asyncio.run(main())
