"""What every benchmark shares: a private regtest node, exitd's own Daemon wired in-process on it, forged
VTXOs imported and started, the wallet funded, and the figures (median, percentiles, the machine).

The daemon runs in the benchmark's process so that its cycles, RPC counters and memory can be read
exactly; it is the same object `exitd run` builds (exitd.daemon.lifecycle.Daemon), with the same store,
wallet, engine and guard, against a real bitcoind.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from decimal import Decimal
from pathlib import Path

# The checkout's own packages first: the editable install's finder maps `migrations` as a namespace
# package whose resources alembic cannot list when the script's directory, not the checkout, is first.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exitd.config import BitcoindConfig, Config, DatabaseConfig, GuardConfig, RestConfig
from exitd.daemon.datadir import init_datadir
from exitd.daemon.lifecycle import Daemon
from exitd.regtest.forge import Forge, ForgedVtxo, LeafSpec
from exitd.regtest.node import MINER_WALLET, NodeFlavor, RegtestNode
from exitd.store.leader import take_term
from exitd.wallet.vtxos import MAX_IMPORT_BATCH
from tests.support.daemon import DaemonProcess
from tests.support.postgres import PostgresServer

# A leaf's amount: far above dust, small enough that a tree of thousands costs the miner little.
LEAF_AMOUNT = 20_000
# Each coin given to exitd's wallet: pays one CPFP child, change included, many times over.
COIN_BTC = Decimal("0.001")
# sendmany outputs per funding tx: well inside standard tx size.
OUTPUTS_PER_FUNDING_TX = 500
# Hex characters per import request: half of rest.max_body_bytes' default (1 MiB).
IMPORT_BYTES = 512 * 1024


def parse_args(
    description: str,
    scales: bool = False,
    backends: bool = False,
    nodes: bool = False,
    cpu_time: bool = False,
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smaller scales and fewer repetitions")
    if nodes:
        parser.add_argument(
            "--node",
            choices=[f.value for f in NodeFlavor],
            default=NodeFlavor.PLAIN.value,
            help="the node: Bitcoin Core's defaults (plain, no tx index), with -txindex, or pruned",
        )
    if scales:
        parser.add_argument("--scales", type=int, nargs="+", metavar="N", help="these numbers of exits only")
    if backends:
        parser.add_argument(
            "--postgresql",
            action="store_true",
            help="the store in a throwaway PostgreSQL cluster",
        )
    if cpu_time:
        parser.add_argument(
            "--cpu-time",
            action="store_true",
            help="time cycles in CPU seconds of this process (the daemon's own cost, whatever else the "
            "machine runs) instead of wall seconds",
        )
    return parser.parse_args()


@contextmanager
def database(postgresql: bool) -> Iterator[Callable[[], str]]:
    """What makes each daemon's database: "" (the SQLite file in its datadir), or a new database on a
    throwaway PostgreSQL cluster (tests/support/postgres.py), stopped afterwards."""
    if not postgresql:
        yield lambda: ""
        return
    server = PostgresServer()
    server.start()
    try:
        yield server.new_database
    finally:
        server.stop()


def quiet_logs() -> None:
    """The engine logs one line per exit and per package: at thousands of exits the logging, not the
    engine, would be measured."""
    logging.getLogger("exitd").setLevel(logging.ERROR)


@contextmanager
def regtest_node(
    flavor: str = NodeFlavor.TXINDEX.value, extra_args: Sequence[str] = ("-maxmempool=1000",)
) -> Iterator[RegtestNode]:
    """A private node (with a tx index unless told another NodeFlavor) with a mature miner wallet,
    removed afterwards."""
    node = RegtestNode(extra_args=tuple(extra_args), flavor=NodeFlavor(flavor))
    node.start()
    try:
        node.fund_miner(200)
        yield node
    finally:
        node.cleanup()


@asynccontextmanager
async def running_daemon(
    node: RegtestNode, database_url: str = "", guard: GuardConfig | None = None
) -> AsyncIterator[Daemon]:
    """exitd's Daemon on `node` with a fresh datadir and wallet, started as `exitd run` starts it, its
    background cycle not running (a benchmark runs cycles itself or starts `run_engine`). On PostgreSQL
    (`database_url`) it is the database's only daemon, and leads. `guard`: guard mode's settings."""
    with tempfile.TemporaryDirectory(prefix="exitd-bench-") as tmp:
        config = bench_config(node, Path(tmp), database_url, guard)
        init_datadir(config)
        async with started_daemon(config) as daemon:
            yield daemon


def bench_config(
    node: RegtestNode, datadir: Path, database_url: str = "", guard: GuardConfig | None = None
) -> Config:
    """A daemon's configuration on `node`, its REST port any free one."""
    return Config(
        network="regtest",
        datadir=datadir,
        bitcoind=BitcoindConfig(rpc_url=node.rpc_url, rpc_cookie=str(node.cookie_file)),
        rest=RestConfig(port=0),
        database=DatabaseConfig(url=database_url),
        guard=guard or GuardConfig(),
    )


@asynccontextmanager
async def started_daemon(config: Config) -> AsyncIterator[Daemon]:
    """exitd's Daemon on an initialised datadir, started as `exitd run` starts it (loading what it holds),
    leading, its node and wallet connected; stopped afterwards."""
    daemon = Daemon(config)
    await daemon.start()
    if daemon.store.shared:
        daemon.store.term = await take_term(daemon.store, "bench:1", "")
    try:
        assert await daemon.connect_node() is not None
        await daemon.setup_wallet()
        yield daemon
    finally:
        await daemon.stop()


def forge_trees(forge: Forge, count: int, tree_sizes: Iterable[int]) -> list[ForgedVtxo]:
    """`count` leaves in round trees of `tree_sizes` leaves, in that order (arity 4: depth 3 up to 16
    leaves, 4 up to 64, 5 up to 256); the leaves of a tree share its ancestors and its one anchor."""
    minted: list[ForgedVtxo] = []
    for size in tree_sizes:
        if len(minted) >= count:
            return minted
        size = min(size, count - len(minted))
        minted += forge.tree([LeafSpec(LEAF_AMOUNT + len(minted) + i) for i in range(size)])
    raise ValueError(f"tree sizes ran out before {count} leaves")


async def import_and_start(daemon: Daemon, vtxos: Sequence[ForgedVtxo], force: bool = False) -> list[str]:
    """Import (in batches the REST endpoint would take) and start exits of every VTXO (`force`: admission
    aside, as `exitd start --force`)."""
    ids: list[str] = []
    for first in range(0, len(vtxos), MAX_IMPORT_BATCH):
        rows = await daemon.vtxos.import_vtxos([v.hex for v in vtxos[first : first + MAX_IMPORT_BATCH]])
        ids += [r.vtxo_id for r in rows]
    await daemon.engine.start(ids, force=force)
    return ids


async def fund_wallet(daemon: Daemon, node: RegtestNode, coins: int) -> None:
    """`coins` confirmed coins of COIN_BTC in exitd's wallet: one CPFP child each per block."""
    addresses = [await daemon.wallet.next_address() for _ in range(coins)]
    for first in range(0, coins, OUTPUTS_PER_FUNDING_TX):
        batch = addresses[first : first + OUTPUTS_PER_FUNDING_TX]
        node.fund_miner(int(COIN_BTC * len(batch)) + 1)
        node.rpc("sendmany", "", {a: str(COIN_BTC) for a in batch}, wallet=MINER_WALLET)
    node.mine(1)
    await daemon.wallet.sync()


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile: a value that was really measured."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def machine() -> str:
    """nproc, CPU model, RAM, Python and the load now: the context any figure here needs."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (
        f"{os.cpu_count()} cpus, {model}, {mem_kb / 1024 / 1024:.1f} GiB RAM, "
        f"Python {platform.python_version()}, load {load_now()}, {date}"
    )


def load_now() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# A daemon in its own process (bench/load.py, bench/memory.py), as `exitd run` runs it.


def from_checkout() -> None:
    """Run `exitd` from the checkout: from bench/ the editable install cannot list the migrations (see
    harness.py), and the daemon is a subprocess with the script's working directory."""
    os.chdir(Path(__file__).resolve().parents[1])


def quiet(daemon: DaemonProcess) -> None:
    """Warnings only: at 1,000 exits a debug line per package would measure the log, not the daemon."""
    text = daemon.config_path.read_text()
    daemon.config_path.write_text(text.replace('level = "debug"', 'level = "warning"'))


def import_batches(hexes: list[str]) -> list[list[str]]:
    """The VTXOs in requests of at most IMPORT_BYTES of hex each (a deep tree's VTXO is kilobytes)."""
    batches: list[list[str]] = [[]]
    for h in hexes:
        if batches[-1] and sum(map(len, batches[-1])) + len(h) > IMPORT_BYTES:
            batches.append([])
        batches[-1].append(h)
    return batches
