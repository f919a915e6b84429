"""Block-to-broadcast latency: from the block that confirms level k of an exit to the package of level k+1
being accepted by the node, with the daemon's own background loop finding the block (no forced cycle).

Deep arkoor chains exit side by side; blocks are mined one at a time, and after each the mempool is
polled until the next level of every chain is in it. A sample is that wait, for one block.
Target: p95 under 2 s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from bitcoin.core import b2lx
from harness import (
    fund_wallet,
    import_and_start,
    load_now,
    machine,
    parse_args,
    percentile,
    quiet_logs,
    regtest_node,
    running_daemon,
)

from exitd.ark.exit_tx import build_exit_chain
from exitd.regtest.forge import Forge, ForgedVtxo
from exitd.regtest.node import RegtestNode

BLOCKS = 50
QUICK_BLOCKS = 10
CHAINS = 3
CHAIN_AMOUNT = 1_000_000
EXPIRY_BLOCKS = 20_000
# Seconds between two looks at the mempool: the resolution of every sample.
POLL = 0.02
# A level not in the mempool this long after its block is a failure, not a slow sample.
TIMEOUT = 30.0


def arkoor_chains(node: RegtestNode, forge: Forge, chains: int, levels: int) -> list[ForgedVtxo]:
    """`chains` arkoor chains at least `levels` deep (1 + 2 * hops). Their expiry is far enough that the
    fee policy keeps to the base rate, and their amount gives a fee budget that pays every level at it:
    a small VTXO this deep, or near expiry, would stall once its budget ran out (fee_accuracy.py and the
    engine tests cover those)."""
    expiry = node.height() + EXPIRY_BLOCKS
    return [
        forge.arkoor_chain(CHAIN_AMOUNT + i, hops=levels // 2, expiry_height=expiry) for i in range(chains)
    ]


def txids_by_level(vtxos: Sequence[ForgedVtxo]) -> list[list[str]]:
    """For each level, the exit txids of that level across `vtxos`."""
    chains = [[b2lx(t.tx.GetTxid()) for t in build_exit_chain(v.vtxo).txs] for v in vtxos]
    return [list(level) for level in zip(*chains, strict=False)]


async def accepted_after(node: RegtestNode, txids: Sequence[str], since: float) -> float:
    """Seconds from `since` until every one of `txids` is in the node's mempool."""
    wanted = set(txids)
    deadline = since + TIMEOUT
    while time.monotonic() < deadline:
        mempool = set(await asyncio.to_thread(node.rpc, "getrawmempool"))
        if wanted <= mempool:
            return time.monotonic() - since
        await asyncio.sleep(POLL)
    raise TimeoutError(f"{sorted(wanted)} not in the mempool {TIMEOUT} s after their parents confirmed")


async def latencies(node: RegtestNode, levels: list[list[str]], blocks: int) -> list[float]:
    """Once the first level is in the mempool, per block: mine it, wait for the next level."""
    await accepted_after(node, levels[0], time.monotonic())
    samples = []
    for level in levels[1 : blocks + 1]:
        await asyncio.to_thread(node.mine, 1)
        samples.append(await accepted_after(node, level, time.monotonic()))
    return samples


async def main() -> None:
    args = parse_args(__doc__ or "", nodes=True)
    quiet_logs()
    blocks = QUICK_BLOCKS if args.quick else BLOCKS
    print(machine(), f"node: {args.node}", flush=True)
    with regtest_node(args.node) as node:
        vtxos = arkoor_chains(node, Forge(node), CHAINS, blocks + 1)
        levels = txids_by_level(vtxos)
        async with running_daemon(node) as daemon:
            await fund_wallet(daemon, node, 4 * CHAINS)
            background = asyncio.create_task(daemon.run_engine())
            try:
                await import_and_start(daemon, vtxos)
                samples = await latencies(node, levels, blocks)
            finally:
                daemon.stopping.set()
                await background
            cycles = daemon.engine.cycles
            mean_cycle = daemon.engine.cycle_seconds / max(1, cycles)
    print(
        f"{CHAINS} arkoor chains {len(levels)} deep, {len(samples)} blocks, "
        f"{CHAINS} packages per block; load {load_now()}"
    )
    p50, p95 = percentile(samples, 50), percentile(samples, 95)
    print(
        f"  block to accepted package: p50 {p50:.3f} s  p95 {p95:.3f} s"
        f"  min {min(samples):.3f} s  max {max(samples):.3f} s"
    )
    print(f"  background cycles run: {cycles}, mean {mean_cycle * 1000:.0f} ms")


if __name__ == "__main__":
    asyncio.run(main())
