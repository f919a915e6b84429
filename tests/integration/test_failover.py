"""Two real daemons on one PostgreSQL database: one leads, the other stands by; the leader killed mid-exit
at each named crash point, the standby takes over within the failover timeout and finishes every exit,
spending no coin twice and giving no exit tx two children; the old leader, restarted, stands by."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exitd.config import CRASH_POINTS
from exitd.daemon.lifecycle import CRASH_EXIT_CODE
from exitd.regtest.forge import Forge
from exitd.regtest.node import RegtestNode
from tests.support.daemon import DaemonProcess
from tests.support.exits import advance_until, all_in, fund_wallet, owned, progress, states
from tests.support.failover import FAILOVER, assert_no_double_spend, shared_config
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.bitcoind

CLAIM_POINTS = ("before_claim_broadcast", "after_claim_broadcast")


def wait_for_log(daemon: DaemonProcess, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in daemon.log_text():
        assert time.monotonic() < deadline, f"no '{text}' in the log:\n{daemon.log_text()[-3000:]}"
        time.sleep(0.1)


def wait_for_crash(daemon: DaemonProcess) -> float:
    """The moment the daemon died at its crash point (as the test saw it)."""
    assert daemon.process is not None
    assert daemon.process.wait(timeout=60) == CRASH_EXIT_CODE
    daemon.process = None
    return time.monotonic()


def leader_of(answer: dict[str, str], daemon: DaemonProcess) -> bool:
    assert daemon.process is not None
    return f":{daemon.process.pid} (term" in answer["message"]


@pytest.fixture
def pair(
    tmp_path: Path, bitcoind: RegtestNode, postgres: PostgresServer
) -> Iterator[tuple[list[DaemonProcess], str]]:
    """Two initialised daemons of one wallet (datadirs of their own) on one new PostgreSQL database."""
    url = postgres.new_database()
    daemons = [DaemonProcess(tmp_path / name, bitcoind, shared_config(url)) for name in ("a", "b")]
    daemons[0].init()
    daemons[1].init("--mnemonic-file", str(daemons[0].datadir / "mnemonic"))
    try:
        yield daemons, url
    finally:
        for daemon in daemons:
            daemon.stop()


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_the_standby_takes_over_a_leader_killed_mid_exit(
    pair: tuple[list[DaemonProcess], str], bitcoind: RegtestNode, point: str
) -> None:
    (leader, standby), url = pair
    leader.config_path.write_text(leader.config_path.read_text() + f'\n[testing]\ncrash_point = "{point}"\n')
    leader.start()
    wait_for_log(leader, "leader_elected")
    standby.start()
    wait_for_log(standby, "standing_by")

    # The standby serves reads from the shared database and sends writes to the leader.
    status, body = standby.request("POST", "/api/v1/exits/progress", {})
    assert status == 503 and "standby" in body["message"] and leader_of(body, leader), body
    assert standby.request("GET", "/api/v1/exits/status")[0] == 200

    fund_wallet(leader, bitcoind, coins=4)
    forge = Forge(bitcoind)
    vtxos = [forge.arkoor_chain(30_000, owned(leader, 0), hops=1), forge.board(40_000, owned(leader, 1))]
    status, imported = leader.request("POST", "/api/v1/wallet/import-vtxo", {"vtxos": [v.hex for v in vtxos]})
    assert status == 200, imported
    ids = sorted(v["id"] for v in imported)
    if point in CLAIM_POINTS:
        assert leader.request("POST", "/api/v1/exits/start/vtxos", {"vtxos": ids})[0] == 200
        advance_until(leader, bitcoind, all_in("claimable"))
        # The standby's view follows the leader's writes.
        deadline = time.monotonic() + FAILOVER
        while set(states(standby).values()) != {"claimable"}:
            assert time.monotonic() < deadline, states(standby)
            time.sleep(0.2)
        with pytest.raises(OSError):  # the leader dies while answering
            leader.request("POST", "/api/v1/exits/claim/all", {"destination": bitcoind.miner_address()})
    else:
        with contextlib.suppress(OSError):  # the cycle the start wakes builds the first child and dies
            leader.request("POST", "/api/v1/exits/start/vtxos", {"vtxos": ids})
    died = wait_for_crash(leader)

    # The standby takes over within the bound, from what the dead leader stored.
    while True:
        status, body = standby.request("POST", "/api/v1/exits/progress", {})
        if status == 200:
            break
        assert status == 503, body
        assert time.monotonic() - died < FAILOVER, "the standby did not take over in time"
        time.sleep(0.1)
    wait_for_log(standby, "leader_elected")

    if point == "before_claim_broadcast":
        assert states(standby) == dict.fromkeys(ids, "claimable")
    if point in CLAIM_POINTS:
        status, body = standby.request(
            "POST", "/api/v1/exits/claim/all", {"destination": bitcoind.miner_address()}
        )
        if point == "before_claim_broadcast":
            assert status == 200, body
        else:  # the claim went out; the new leader's cycle found it
            assert status == 400 and set(states(standby).values()) == {"claim-in-progress"}, body
    else:
        advance_until(standby, bitcoind, all_in("claimable"))
        status, body = standby.request(
            "POST", "/api/v1/exits/claim/all", {"destination": bitcoind.miner_address()}
        )
        assert status == 200, body
    bitcoind.mine(1)
    progress(standby)
    assert states(standby) == dict.fromkeys(ids, "claimed")
    assert_no_double_spend(url, bitcoind)

    # The old leader, restarted, stands by behind the new one.
    leader.config_path.write_text(leader.config_path.read_text().split("\n[testing]")[0])
    leader.start()
    wait_for_log(leader, "standing_by")
    status, body = leader.request("POST", "/api/v1/exits/progress", {})
    assert status == 503 and leader_of(body, standby), body
    assert states(leader) == dict.fromkeys(ids, "claimed")
