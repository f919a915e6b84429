"""Cycle cost vs. scale: wall time and bitcoind round trips of one progress cycle, and memory, at 10, 100,
1,000 and 5,000 tracked exits of round-tree VTXOs (shared ancestors, depth 3 to 5).

Each scale gets a fresh daemon (its store a SQLite file, or with --postgresql a PostgreSQL database) on
one regtest node, its exits started and its wallet funded for the first two levels, then these cycles
(each a real ExitEngine.progress(), as the background loop runs it):
  first       the first cycle: one package per tree root;
  idle        no new block since the last cycle (median of several);
  empty-block a new block that confirms nothing (every package stays in the mempool): the cost of a
              block by itself (median of several);
  level-2     the block that confirms the roots: four packages per tree.
Each cycle is timed as the daemon runs it, from right after the block, and its CPU time (this process,
all threads) is printed beside: the rest is waiting on bitcoind, which answers a wallet or fee call after a
block only once its wallet has taken the block in (the level-2 block confirms the funding split, hundreds
of outputs to exitd's wallet, about a millisecond each inside bitcoind).
Targets: the idle cycle makes a constant number of round trips, whatever N; a new-block cycle at 1,000
exits takes under 1 s; memory under 200 MB at 5,000.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from harness import (
    database,
    forge_trees,
    fund_wallet,
    import_and_start,
    load_now,
    machine,
    parse_args,
    quiet_logs,
    regtest_node,
    running_daemon,
)

from exitd.daemon.lifecycle import Daemon
from exitd.regtest.forge import Forge
from exitd.regtest.node import RegtestNode

SCALES = (10, 100, 1_000, 5_000)
QUICK_SCALES = (10, 100)
REPEATS = 5
QUICK_REPEATS = 3
# Trees of 64 and 16 leaves in turn (depth 4 and 3); from 1,000 exits one tree of 256 (depth 5) first.
TREE_SIZES = (64, 16)
DEEP_TREE = 256


@dataclass(frozen=True)
class Cycle:
    seconds: float
    round_trips: int
    packages: int
    cpu_seconds: float


# What a cycle is timed with: wall seconds, or with --cpu-time this process's CPU seconds (all threads).
clock = time.perf_counter


async def one_cycle(daemon: Daemon, report: bool = True) -> Cycle:
    """One progress cycle, timed, with the round trips it made and the packages it broadcast; with its
    report of every exit (as a progress request gets it), or without (as the background loop runs it)."""
    engine = daemon.engine
    trips, packages = daemon.rpc.round_trips, engine.packages_broadcast
    started, cpu_started = clock(), time.process_time()
    await (engine.progress() if report else engine.advance())
    return Cycle(
        clock() - started,
        daemon.rpc.round_trips - trips,
        engine.packages_broadcast - packages,
        time.process_time() - cpu_started,
    )


def median_cycle(cycles: list[Cycle]) -> Cycle:
    return Cycle(
        statistics.median([c.seconds for c in cycles]),
        int(statistics.median([c.round_trips for c in cycles])),
        int(statistics.median([c.packages for c in cycles])),
        statistics.median([c.cpu_seconds for c in cycles]),
    )


def mine_empty_block(node: RegtestNode) -> None:
    """A block with no tx of the mempool in it: the tip moves, every package stays where it was."""
    node.rpc("generateblock", node.miner_address(), [])


def rss_mb() -> tuple[float, float]:
    """(resident now, peak) of this process in MB, from /proc (VmRSS, VmHWM)."""
    fields = dict(
        line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def report(name: str, cycle: Cycle, exits: int) -> None:
    print(
        f"  {name:<12} {cycle.seconds * 1000:9.1f} ms  {cycle.round_trips:5d} round trips  "
        f"{cycle.packages:4d} packages  ({cycle.seconds / exits * 1e6:7.1f} us/exit)  "
        f"cpu {cycle.cpu_seconds * 1000:6.1f} ms",
        flush=True,
    )


async def measure(node: RegtestNode, forge: Forge, exits: int, repeats: int, database_url: str) -> None:
    gc.collect()
    base_rss, _ = rss_mb()
    started = time.perf_counter()
    deep = [DEEP_TREE] if exits >= 1_000 else []
    vtxos = forge_trees(forge, exits, itertools.chain(deep, itertools.cycle(TREE_SIZES)))
    trees = len({v.vtxo.anchor_point for v in vtxos})
    depths = sorted({v.vtxo.exit_depth for v in vtxos})
    minted = time.perf_counter() - started
    async with running_daemon(node, database_url) as daemon:
        await import_and_start(daemon, vtxos, force=True)  # the wallet is funded next: admission aside
        del vtxos
        await fund_wallet(daemon, node, 4 * trees + 4)
        print(
            f"{exits} exits in {trees} trees, depths {depths} (minted in {minted:.0f} s); load {load_now()}",
            flush=True,
        )
        report("first", await one_cycle(daemon), exits)
        report("idle", median_cycle([await one_cycle(daemon) for _ in range(repeats)]), exits)
        empty = []
        for _ in range(repeats):
            mine_empty_block(node)
            empty.append(await one_cycle(daemon))
        report("empty-block", median_cycle(empty), exits)
        node.mine(1)
        report("level-2", await one_cycle(daemon), exits)
        report("idle", median_cycle([await one_cycle(daemon) for _ in range(repeats)]), exits)
        gc.collect()
        now_rss, peak_rss = rss_mb()
        print(
            f"  memory       {now_rss - base_rss:6.1f} MB more resident than before this scale; "
            f"process now {now_rss:.0f} MB, peak {peak_rss:.0f} MB",
            flush=True,
        )


async def main() -> None:
    global clock
    args = parse_args(__doc__ or "", scales=True, backends=True, nodes=True, cpu_time=True)
    if args.cpu_time:
        clock = time.process_time
    quiet_logs()
    print(machine(), "PostgreSQL" if args.postgresql else "SQLite", f"node: {args.node}", flush=True)
    with regtest_node(args.node) as node, database(args.postgresql) as new_database:
        forge = Forge(node)
        scales = args.scales or (QUICK_SCALES if args.quick else SCALES)
        for exits in scales:
            await measure(node, forge, exits, QUICK_REPEATS if args.quick else REPEATS, new_database())


if __name__ == "__main__":
    asyncio.run(main())
