"""Memory of the daemon itself: `exitd run` in its own process, as a user runs it, tracking 1,000 then
5,000 exits of round trees (shared ancestors, depth 3 to 5) imported and started over REST.

For each scale, a fresh daemon and datadir: its resident size idle (no exit), then after the import, after
the start, after three cycles that broadcast the first two levels' packages, and after a status listing
without, then with, history and transactions (the largest answer it renders). Resident size (VmRSS) and
peak (VmHWM) are read from /proc/<pid>/status of the daemon's process: nothing of the benchmark (the
forge, its keys) is in it.
Target: under 200 MB at 5,000 exits.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

from harness import (
    forge_trees,
    from_checkout,
    import_batches,
    load_now,
    machine,
    parse_args,
    quiet,
    regtest_node,
)

from exitd.regtest.forge import Forge
from exitd.regtest.node import RegtestNode
from tests.support.daemon import DaemonProcess
from tests.support.exits import fund_wallet, progress

SCALES = (1_000, 5_000)
QUICK_SCALES = (200,)
# From 1,000 exits on, one tree of 256 leaves (depth 5) first, then trees of 64 and 16 in turn.
TREE_SIZES = (256, 64, 16)
# Each coin pays one CPFP child per block; four per tree cover the first two levels.
COIN_BTC = "0.001"


def resident_mb(pid: int) -> tuple[float, float]:
    """(resident now, peak) of process `pid` in MB (VmRSS, VmHWM)."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def measure(node: RegtestNode, forge: Forge, exits: int) -> None:
    leaves = forge_trees(forge, exits, itertools.cycle(TREE_SIZES))
    trees = len({leaf.vtxo.anchor_point for leaf in leaves})
    with tempfile.TemporaryDirectory(prefix="exitd-memory-") as tmp:
        daemon = DaemonProcess(Path(tmp) / "exitd", node)
        quiet(daemon)
        daemon.init()
        daemon.start()
        try:
            assert daemon.process is not None
            pid = daemon.process.pid

            def show(stage: str) -> None:
                now, peak = resident_mb(pid)
                print(f"  {stage:<34} {now:6.1f} MB resident, peak {peak:6.1f} MB", flush=True)

            print(f"{exits} exits in {trees} trees; load {load_now()}", flush=True)
            show("idle, no exit")
            for batch in import_batches([leaf.hex for leaf in leaves]):
                status, body = daemon.request("POST", "/api/v1/wallet/import-vtxo", {"vtxos": batch})
                assert status == 200, body
            show("imported")
            fund_wallet(daemon, node, coins=4 * trees + 4, btc=COIN_BTC)
            assert daemon.request("POST", "/api/v1/exits/start/all")[0] == 200
            show("started")
            for _ in range(3):
                progress(daemon)
                node.mine(1)
            answer = progress(daemon)
            paid = {
                tx["txid"]
                for e in answer["exits"]
                for tx in e["state"].get("transactions", [])
                if tx["status"]["type"] in ("broadcast-with-cpfp", "confirmed")
            }
            show(f"after 3 blocks ({len(paid)} exit txs paid for)")
            for query in ("", "?history=true&transactions=true"):
                status, body = daemon.request("GET", f"/api/v1/exits/status{query}")
                assert status == 200 and len(body) == exits
                show(f"status listing{' with history, txs' if query else ''}")
        finally:
            daemon.stop()


def main() -> None:
    args = parse_args(__doc__ or "", scales=True)
    print(machine(), flush=True)
    from_checkout()
    with regtest_node() as node:
        forge = Forge(node)
        for exits in args.scales or (QUICK_SCALES if args.quick else SCALES):
            measure(node, forge, exits)


if __name__ == "__main__":
    main()
