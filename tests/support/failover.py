"""Daemons sharing one PostgreSQL database (tests/integration/test_failover.py, bench/failover.py): their
config, and what must hold whoever led: no exit tx with two live children, no coin funding two."""

from __future__ import annotations

import time

import sqlalchemy as sa

from exitd.regtest.node import RegtestNode
from exitd.store.db import run_sync
from tests.support.daemon import DaemonProcess

FAILOVER = 6.0  # database.failover_timeout of the tests' daemons (s)


def shared_config(url: str, crash_point: str = "", timeout: float = FAILOVER) -> str:
    """Config lines for a daemon on the database `url`."""
    testing = f'\n[testing]\ncrash_point = "{crash_point}"\n' if crash_point else ""
    return f'\n[database]\nurl = "{url}"\nfailover_timeout = {timeout}\n{testing}'


def live_children(url: str) -> list[tuple[str, str]]:
    """(child txid, parent txid) of the wallet's children that may still confirm (or did)."""
    query = sa.text(
        "select txid, parent_txid from exit_children "
        "where source = 'wallet' and status not in ('abandoned', 'replaced')"
    )
    return [(t, p) for t, p in run_sync(url, lambda conn: list(conn.execute(query)))]


def assert_no_double_spend(url: str, node: RegtestNode) -> None:
    children = live_children(url)
    parents = [parent for _, parent in children]
    assert len(parents) == len(set(parents)), f"an exit tx got two children: {children}"
    funded_by: dict[tuple[str, int], str] = {}
    for txid, parent in children:
        for vin in node.rpc("getrawtransaction", txid, 1)["vin"]:
            outpoint = (vin["txid"], vin["vout"])
            if vin["txid"] != parent:  # not the P2A anchor
                assert outpoint not in funded_by, f"{outpoint} funds {funded_by[outpoint]} and {txid}"
                funded_by[outpoint] = txid


def takeover_seconds(standby: DaemonProcess, since: float, bound: float) -> float:
    """Seconds from `since` (the leader's death or cut) until the standby answers a write (POST
    /exits/progress, a whole cycle on what the last leader stored) instead of 503; fails past `bound`."""
    while True:
        status, body = standby.request("POST", "/api/v1/exits/progress", {})
        if status == 200:
            return time.monotonic() - since
        assert status == 503, body
        assert time.monotonic() - since < bound, f"the standby did not take over within {bound} s"
        time.sleep(0.05)
