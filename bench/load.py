"""REST load: 50 concurrent clients on exit status, progress and VTXO import for 60 s while 1,000 exits
(round trees, depth 5) progress on a new block every few seconds; the daemon runs as `exitd run` does,
in its own process, and is reached over loopback.

Prints p50/p99 latency per operation and overall, the error count, and the most cycles the daemon ever
ran at once (its exitd_cycles_max_concurrent gauge). Targets: no errors, p99 under 100 ms, cycles never
overlap (1).
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from collections import Counter
from pathlib import Path

from harness import (
    forge_trees,
    from_checkout,
    import_batches,
    machine,
    parse_args,
    percentile,
    quiet,
    regtest_node,
)

from exitd.regtest.forge import Forge
from tests.support.daemon import DaemonProcess
from tests.support.exits import fund_wallet, states
from tests.support.load import LoadResult, run_load
from tests.support.prometheus import parse_exposition

EXITS, CLIENTS, SECONDS = 1000, 50, 60.0
QUICK_EXITS, QUICK_CLIENTS, QUICK_SECONDS = 200, 50, 20.0
BLOCK_INTERVAL = 3.0
# Leaves per round tree: 256 makes the trees depth 5 (arity 4).
TREE_SIZE = 256
# Each funding coin pays one CPFP child; a level of the trees has at most one tx per exit.
COIN_BTC = "0.001"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def report(result: LoadResult) -> None:
    print(f"{'operation':34} {'requests':>8} {'p50':>10} {'p99':>10} {'max':>10}")
    for name, times in sorted(result.latencies.items()):
        p50, p99 = percentile(times, 50), percentile(times, 99)
        print(f"{name:34} {len(times):8} {ms(p50)} {ms(p99)} {ms(max(times))}")
    every = result.all_latencies()
    print(
        f"{'all':34} {len(every):8} {ms(percentile(every, 50))} {ms(percentile(every, 99))} {ms(max(every))}"
    )
    print(f"errors: {len(result.errors)}  blocks mined: {result.blocks}")
    for error, count in Counter(result.errors).most_common(5):
        print(f"  {count} x {error}")


def main() -> None:
    args = parse_args(__doc__ or "")
    exits, clients, seconds = (
        (QUICK_EXITS, QUICK_CLIENTS, QUICK_SECONDS) if args.quick else (EXITS, CLIENTS, SECONDS)
    )
    print(machine(), flush=True)
    from_checkout()
    with regtest_node() as node, tempfile.TemporaryDirectory(prefix="exitd-load-") as tmp:
        daemon = DaemonProcess(Path(tmp) / "exitd", node)
        quiet(daemon)
        daemon.init()
        daemon.start()
        try:
            leaves = forge_trees(Forge(node), exits, itertools.repeat(TREE_SIZE))
            hexes = [leaf.hex for leaf in leaves]
            for batch in import_batches(hexes):
                status, body = daemon.request("POST", "/api/v1/wallet/import-vtxo", {"vtxos": batch})
                assert status == 200, body
            fund_wallet(daemon, node, coins=exits + 100, btc=COIN_BTC)
            assert daemon.request("POST", "/api/v1/exits/start/all")[0] == 200
            print(
                f"{exits} exits started; {clients} clients for {seconds:.0f} s, "
                f"a block every {BLOCK_INTERVAL:.0f} s",
                flush=True,
            )
            result = asyncio.run(
                run_load(daemon.port, daemon.token, node, clients, seconds, BLOCK_INTERVAL, hexes[:20])
            )
            report(result)
            _, samples = parse_exposition(daemon.request("GET", "/metrics")[1])
            print(
                f"cycles: {samples[('exitd_cycles_total', ())]:.0f} done, "
                f"{samples[('exitd_cycle_errors_total', ())]:.0f} failed, "
                f"at most {samples[('exitd_cycles_max_concurrent', ())]:.0f} at once"
            )
            print("exit states after:", dict(Counter(states(daemon).values())))
        finally:
            daemon.stop()


if __name__ == "__main__":
    main()
