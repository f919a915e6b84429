"""Failover time: two `exitd run` on one PostgreSQL database, the leader SIGKILLed again and again.

Both daemons run in their own processes, as a user runs them, with the default database.failover_timeout
(15 s), on a private regtest node and a throwaway PostgreSQL cluster (tests/support/postgres.py). Exits
are in flight throughout (a tree of round-tree VTXOs, one block mined per kill, so each new leader has
packages to carry on). Each round: SIGKILL the leader; the failover time is from the kill until the
standby answers a write (POST /exits/progress, which runs a whole cycle on what the dead leader stored)
instead of 503; then the killed daemon is restarted and must stand by. At the end: no exit tx has two live
children and no wallet coin funds two of them.
Target: every takeover within the failover timeout (15 s).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from harness import from_checkout, load_now, machine, parse_args, percentile, regtest_node

from exitd.regtest.forge import Forge, LeafSpec
from tests.support.daemon import DaemonProcess
from tests.support.exits import fund_wallet, import_and_start, owned
from tests.support.failover import assert_no_double_spend, shared_config, takeover_seconds
from tests.support.postgres import PostgresServer

KILLS = 20
QUICK_KILLS = 3
EXITS = 64  # one round tree of 64 leaves: depth 4
TIMEOUT = 15.0  # database.failover_timeout's default


def wait_standing_by(daemon: DaemonProcess, before: int) -> None:
    """Until the daemon's log holds more 'standing_by' lines than `before`."""
    deadline = time.monotonic() + 60
    while daemon.log_text().count("standing_by") <= before:
        assert time.monotonic() < deadline, daemon.log_text()[-2000:]
        time.sleep(0.05)


def main() -> None:
    args = parse_args(__doc__ or "")
    kills = QUICK_KILLS if args.quick else KILLS
    from_checkout()
    print(machine(), flush=True)
    postgres = PostgresServer()
    postgres.start()
    try:
        with regtest_node() as node, tempfile.TemporaryDirectory(prefix="exitd-failover-") as tmp:
            url = postgres.new_database()
            daemons = [
                DaemonProcess(Path(tmp) / name, node, shared_config(url, timeout=TIMEOUT))
                for name in ("a", "b")
            ]
            for d in daemons:  # info, not debug: the events waited for, not a line per package
                d.config_path.write_text(
                    d.config_path.read_text().replace('level = "debug"', 'level = "info"')
                )
            daemons[0].init()
            daemons[1].init("--mnemonic-file", str(daemons[0].datadir / "mnemonic"))
            daemons[0].start()
            daemons[1].start()
            try:
                wait_standing_by(daemons[1], 0)
                leader, standby = daemons
                fund_wallet(leader, node, coins=40, btc="0.001")
                leaves = Forge(node).tree([LeafSpec(20_000 + i, owned(leader, i)) for i in range(EXITS)])
                import_and_start(leader, [leaf.hex for leaf in leaves])
                times = []
                for round_ in range(1, kills + 1):
                    node.mine(1)
                    assert leader.request("POST", "/api/v1/exits/progress", {})[0] == 200
                    assert leader.process is not None
                    leader.process.kill()
                    killed_at = time.monotonic()
                    leader.process.wait()
                    leader.process = None
                    times.append(takeover_seconds(standby, killed_at, 4 * TIMEOUT))
                    print(
                        f"  kill {round_:2d}: took over in {times[-1]:.2f} s; load {load_now()}", flush=True
                    )
                    before = leader.log_text().count("standing_by")
                    leader.start()
                    wait_standing_by(leader, before)
                    leader, standby = standby, leader
                assert_no_double_spend(url, node)
            finally:
                for d in daemons:
                    d.stop()
    finally:
        postgres.stop()
    print(
        f"failover over {len(times)} kills: median {statistics.median(times):.2f} s, "
        f"p90 {percentile(times, 90):.2f} s, worst {max(times):.2f} s (bound {TIMEOUT:g} s)",
        flush=True,
    )


if __name__ == "__main__":
    main()
