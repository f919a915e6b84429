"""Two real daemons on one PostgreSQL database: one leads, the other stands by; the leader killed mid-exit
at each named crash point, or cut off from the database mid-exit, the standby takes over within the
failover timeout and finishes every exit, spending no coin twice and giving no exit tx two children; the
old leader, restarted or reconnected, stands by."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from exitd.config import CRASH_POINTS
from exitd.daemon.lifecycle import CRASH_EXIT_CODE
from exitd.regtest.forge import Forge
from exitd.regtest.node import RegtestNode
from tests.support.daemon import DaemonProcess
from tests.support.exits import advance_until, all_in, fund_wallet, import_and_start, owned, progress, states
from tests.support.failover import FAILOVER, assert_no_double_spend, shared_config, takeover_seconds
from tests.support.postgres import PostgresServer
from tests.support.tcp_proxy import TcpProxy

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


def claim_when_claimable(leader: DaemonProcess, bitcoind: RegtestNode) -> None:
    advance_until(leader, bitcoind, all_in("claimable"))
    status, body = leader.request(
        "POST", "/api/v1/exits/claim/all", {"destination": bitcoind.miner_address()}
    )
    assert status == 200, body


def claimed_once(leader: DaemonProcess, bitcoind: RegtestNode, ids: list[str], url: str) -> None:
    """The claim confirms; whoever led, no coin was spent twice and no exit tx got two children."""
    bitcoind.mine(1)
    progress(leader)
    assert states(leader) == dict.fromkeys(ids, "claimed")
    assert_no_double_spend(url, bitcoind)


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
    assert standby.request("POST", "/api/v1/boards/board-all", {})[0] == 501  # barkd's: no leader serves it

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
    takeover_seconds(standby, died, FAILOVER)
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
        claim_when_claimable(standby, bitcoind)
    claimed_once(standby, bitcoind, ids, url)

    # The old leader, restarted, stands by behind the new one.
    leader.config_path.write_text(leader.config_path.read_text().split("\n[testing]")[0])
    leader.start()
    wait_for_log(leader, "standing_by")
    status, body = leader.request("POST", "/api/v1/exits/progress", {})
    assert status == 503 and leader_of(body, standby), body
    assert states(leader) == dict.fromkeys(ids, "claimed")


@pytest.fixture
def cut_off_pair(
    tmp_path: Path, bitcoind: RegtestNode, postgres: PostgresServer
) -> Iterator[tuple[list[DaemonProcess], TcpProxy, str]]:
    """Two daemons of one wallet on one new PostgreSQL database, the first through a TCP proxy the test
    cuts: its network to the database."""
    url = postgres.new_database()
    parsed = sa.engine.make_url(url)
    assert parsed.port is not None
    proxy = TcpProxy(parsed.port)
    proxied = parsed.set(port=proxy.port).render_as_string(hide_password=False)
    daemons = [
        DaemonProcess(tmp_path / "a", bitcoind, shared_config(proxied)),
        DaemonProcess(tmp_path / "b", bitcoind, shared_config(url)),
    ]
    daemons[0].init()
    daemons[1].init("--mnemonic-file", str(daemons[0].datadir / "mnemonic"))
    try:
        yield daemons, proxy, url
    finally:
        proxy.restore()  # a blackholed daemon stops at once
        for daemon in daemons:
            daemon.stop()
        proxy.stop()


@pytest.mark.parametrize("cut", ["blackhole", "close"])
def test_a_leader_cut_off_from_the_database_mid_exit_is_replaced_and_stands_by(
    cut_off_pair: tuple[list[DaemonProcess], TcpProxy, str], bitcoind: RegtestNode, cut: str
) -> None:
    """`blackhole`: no packet passes and no connection closes (the server's side looks alive; only the
    lock session's missed pings tell). `close`: every connection is reset."""
    (leader, standby), proxy, url = cut_off_pair
    leader.start()
    wait_for_log(leader, "leader_elected")
    standby.start()
    wait_for_log(standby, "standing_by")

    fund_wallet(leader, bitcoind, coins=4)
    forge = Forge(bitcoind)
    vtxos = [forge.arkoor_chain(30_000, owned(leader, 0), hops=1), forge.board(40_000, owned(leader, 1))]
    ids = sorted(import_and_start(leader, [v.hex for v in vtxos]))
    wait_for_log(leader, "package_broadcast")  # mid-exit: the first children are out

    getattr(proxy, cut)()
    cut_at = time.monotonic()
    took = takeover_seconds(standby, cut_at, FAILOVER)
    wait_for_log(standby, "leader_elected")
    print(f"{cut}: the standby took over {took:.2f} s after the cut (bound {FAILOVER} s)")

    # The cut-off leader gave up its term and says so in one line; it refuses writes without the database.
    wait_for_log(leader, "leadership_lost", timeout=FAILOVER)
    lost = [line for line in leader.log_text().splitlines() if "leadership_lost" in line]
    assert len(lost) == 1 and "stopped spending" in lost[0], lost
    assert "cycle_crashed" not in leader.log_text()  # a cycle cut short by it says so in one line
    status, body = leader.request("POST", "/api/v1/exits/progress", {})
    assert status == 503 and "lost its leadership" in body["message"], body

    # The new leader finishes every exit.
    claim_when_claimable(standby, bitcoind)
    claimed_once(standby, bitcoind, ids, url)

    # The network comes back: the old leader stands by behind the new one, without a restart.
    proxy.restore()
    deadline = time.monotonic() + 3 * FAILOVER
    while leader.log_text().count("standing_by") < 1 or not leader_of(
        leader.request("POST", "/api/v1/exits/progress", {})[1], standby
    ):
        assert time.monotonic() < deadline, leader.log_text()[-3000:]
        time.sleep(0.2)
    assert leader.process is not None and leader.process.poll() is None
    while states(leader) != dict.fromkeys(ids, "claimed"):  # its view, reloaded from the database
        assert time.monotonic() < deadline, states(leader)
        time.sleep(0.2)
    assert_no_double_spend(url, bitcoind)
