"""Load, bounded for CI (bench/load.py is the full figure): concurrent REST clients on status, progress and
import while exits progress on new blocks. No request fails, and no two cycles ever run at once."""

from __future__ import annotations

import asyncio

import pytest

from exitd.regtest.forge import Forge, LeafSpec
from exitd.regtest.node import RegtestNode
from tests.support.daemon import DaemonProcess
from tests.support.exits import fund_wallet, states
from tests.support.load import run_load
from tests.support.prometheus import parse_exposition

pytestmark = [pytest.mark.bitcoind, pytest.mark.slow]

EXITS = 48
CLIENTS = 20
SECONDS = 10.0
BLOCK_INTERVAL = 1.0


def test_clients_on_status_progress_and_import_while_exits_progress(
    daemon: DaemonProcess, bitcoind: RegtestNode
) -> None:
    leaves = Forge(bitcoind).tree([LeafSpec(20_000 + i) for i in range(EXITS)], arity=4)
    hexes = [leaf.hex for leaf in leaves]
    status, imported = daemon.request("POST", "/api/v1/wallet/import-vtxo", {"vtxos": hexes})
    assert status == 200 and len(imported) == EXITS
    fund_wallet(daemon, bitcoind, coins=EXITS + 20)
    # Forced: on the shared node, rates other tests taught it may make these small leaves not worth exiting
    # (admission has tests of its own); this test is about load.
    status, body = daemon.request("POST", "/api/v1/exits/start/all", {"force": True})
    assert status == 200 and len(body["started"]) == EXITS, body

    result = asyncio.run(
        run_load(daemon.port, daemon.token, bitcoind, CLIENTS, SECONDS, BLOCK_INTERVAL, hexes[:5])
    )

    assert result.errors == []
    assert result.blocks >= SECONDS / BLOCK_INTERVAL - 2
    assert len(result.all_latencies()) > 100
    assert set(result.latencies) == {
        "GET /api/v1/exits/status",
        "POST /api/v1/exits/progress",
        "POST /api/v1/wallet/import-vtxo",
    }
    assert set(states(daemon).values()) - {"start"}, "no exit moved while under load"
    _, samples = parse_exposition(daemon.request("GET", "/metrics")[1])
    assert samples[("exitd_cycles_max_concurrent", ())] == 1
    assert samples[("exitd_cycle_errors_total", ())] == 0
