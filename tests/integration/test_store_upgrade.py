"""A database as exitd stored exits up to schema revision 0005 (barkd's wire JSON), with exits in every
state, upgraded to exitd's own records by revision 0006, and every one of those exits finished on regtest.

The 0005 file is made from real exits: the daemon takes them to every state, stops, and revision 0006's
downgrade writes them back in 0005's format, which tests/unit/test_exit_records.py holds to exactly what
exitd 6e938c3 wrote (tests/vectors/exits-0005.json, captured from that code). A `start` state lasts only
until the cycle its start wakes, so one exit is set back to the start state 0005 stored at a start.

0005's exitd needed a tx index; the upgraded one places the txs confirmed before it watched them without
one (an output still unspent, or a confirmed tx spending one of theirs), so this runs on a plain node too.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from alembic import command

from exitd.regtest.forge import Forge
from exitd.regtest.node import NodeFlavor, RegtestNode
from exitd.store.db import alembic_config, current_revision, head_revision
from tests.support.daemon import DaemonProcess, running_daemon
from tests.support.exits import advance_until, fund_wallet, import_and_start, owned, progress, wallet_address

pytestmark = pytest.mark.bitcoind


def listing(proc: DaemonProcess) -> dict[str, Any]:
    status, body = proc.request("GET", "/api/v1/exits/status?history=true")
    assert status == 200, body
    return {e["vtxo_id"]: e for e in body}


def kinds(proc: DaemonProcess) -> dict[str, str]:
    return {vtxo_id: e["state"]["type"] for vtxo_id, e in listing(proc).items()}


def claim(proc: DaemonProcess, vtxo_ids: list[str]) -> None:
    body = {"destination": wallet_address(proc), "vtxos": vtxo_ids, "fee_rate": 2000}
    status, answer = proc.request("POST", "/api/v1/exits/claim/vtxos", body)
    assert status == 200, answer


def as_0005(states: Any) -> Any:
    """A state, or a history, as 0005 could keep it: without the claim fee (0010's candidates know it; a
    downgrade past them loses it)."""
    if isinstance(states, list):
        return [as_0005(s) for s in states]
    return {k: v for k, v in states.items() if k != "claim_fee_sat"}


def stored_exits(db: Path) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select vtxo_id, state, history, error from exits").fetchall()
    return {
        vtxo_id: {"state": json.loads(state), "history": json.loads(history), "error": error}
        for vtxo_id, state, history, error in rows
    }


@pytest.mark.parametrize(
    "bitcoind", [NodeFlavor.PLAIN, NodeFlavor.TXINDEX], indirect=True, ids=["plain", "txindex"]
)
def test_a_0005_database_with_exits_in_every_state_upgrades_and_its_exits_finish(
    tmp_path: Path, bitcoind: RegtestNode
) -> None:
    forge = Forge(bitcoind)
    with running_daemon(tmp_path / "exitd", bitcoind) as proc:
        fund_wallet(proc, bitcoind, coins=10)
        # Forged first: forging mines, and from the second claim on no block may come.
        claimed, in_progress, claimable, processing, started = (
            forge.board(40_000 + i, owned(proc, i)) for i in range(5)
        )
        awaiting = forge.arkoor_chain(30_000, owned(proc, 5), hops=1)  # three levels: still waiting
        canceled = forge.arkoor_chain(31_000, owned(proc, 6), hops=1)
        a, b, c, d = import_and_start(proc, [v.hex for v in (claimed, in_progress, claimable, awaiting)])
        advance_until(proc, bitcoind, lambda _: kinds(proc)[a] == "claimable")
        claim(proc, [a])
        bitcoind.mine(1)
        progress(proc)
        claim(proc, [b])  # not mined: in progress
        (e,) = import_and_start(proc, [processing.hex])
        progress(proc)  # its package goes to the mempool; no block from here on
        (f,) = import_and_start(proc, [canceled.hex])
        progress(proc)
        assert proc.request("POST", f"/api/v1/exits/cancel/{f}")[0] == 200
        (g,) = import_and_start(proc, [started.hex])
        progress(proc)
        assert kinds(proc) == {
            a: "claimed",
            b: "claim-in-progress",
            c: "claimable",
            d: "awaiting-delta",
            e: "processing",
            g: "processing",
        }
        before = listing(proc)
        tx_status = before[e]["state"]["transactions"][0]["status"]["type"]
        assert tx_status == "broadcast-with-cpfp"

    db = proc.datadir / "exitd.sqlite3"
    url = f"sqlite+aiosqlite:///{db}"
    command.downgrade(alembic_config(url), "0005")
    assert current_revision(url) == "0005"
    old = stored_exits(db)
    for vtxo_id, shown in before.items():  # 0005 stored exactly what barkd 0.1.4 is shown
        assert old[vtxo_id]["state"] == as_0005(shown["state"])
        assert old[vtxo_id]["history"] == as_0005(shown["history"])
    assert old[f]["state"]["type"] == "canceled"
    with sqlite3.connect(db) as conn:  # g as 0005's start stored it, before its first cycle
        start = {"type": "start", "tip_height": old[g]["history"][0]["tip_height"]}
        conn.execute(
            "update exits set state = ?, state_kind = 'start', history = '[]' where vtxo_id = ?",
            (json.dumps(start), g),
        )

    proc.start()
    try:
        assert current_revision(url) == head_revision()
        upgraded = stored_exits(db)
        assert upgraded[a]["state"]["kind"] == "claimed" and "type" not in upgraded[a]["state"]
        after = listing(proc)
        for vtxo_id in (a, b, c, d):
            assert as_0005(after[vtxo_id]["state"]) == as_0005(before[vtxo_id]["state"])
            assert as_0005(after[vtxo_id]["history"]) == as_0005(before[vtxo_id]["history"])
        assert f not in after  # canceled: not exiting, as barkd 0.1.4 shows it
        assert after[g]["state"]["type"] in ("start", "processing")

        advance_until(proc, bitcoind, lambda _: set(kinds(proc).values()) <= {"claimable", "claimed"})
        claim(proc, [vtxo_id for vtxo_id, kind in kinds(proc).items() if kind == "claimable"])
        bitcoind.mine(1)
        progress(proc)
        assert kinds(proc) == dict.fromkeys((a, b, c, d, e, g), "claimed")
        for vtxo_id in (a, b, c, d, e, g):
            status, vtxo = proc.request("GET", f"/api/v1/wallet/vtxos/{vtxo_id}")
            assert status == 200 and vtxo["state"] == {"type": "spent"}
        status, vtxo = proc.request("GET", f"/api/v1/wallet/vtxos/{f}")
        assert vtxo["state"] == {"type": "spendable"}
    finally:
        proc.stop()
