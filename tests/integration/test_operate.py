"""Operating the real daemon: systemd hears READY/STATUS/WATCHDOG/STOPPING on a real notify socket;
/metrics is strict Prometheus text whose counters move, also during a real exit; log.file is written."""

import socket
import time
from pathlib import Path

import pytest

from exitd.cli.main import main
from exitd.engine.states import ExitStateKind
from exitd.regtest.forge import Forge
from exitd.regtest.node import RegtestNode
from tests.support.daemon import DaemonProcess, running_daemon
from tests.support.exits import advance_until, all_in, fund_wallet, owned, progress
from tests.support.prometheus import Series, parse_exposition

pytestmark = pytest.mark.bitcoind


def receive_until(sock: socket.socket, wanted: set[str], timeout: float = 20.0) -> list[str]:
    """Every assignment received until each of `wanted` (prefixes) has been seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while not all(any(line.startswith(w) for line in seen) for w in wanted):
        assert time.monotonic() < deadline, f"missing {wanted} in {seen}"
        try:
            seen += sock.recv(4096).decode().split("\n")
        except TimeoutError:
            continue
    return seen


def test_systemd_hears_ready_status_watchdog_and_stopping(
    tmp_path: Path, bitcoind: RegtestNode, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, address = notify_socket
    proc = DaemonProcess(tmp_path / "exitd", bitcoind)
    proc.init()
    proc.start(env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"})
    try:
        seen = receive_until(sock, {"READY=1", "MAINPID=", "WATCHDOG=1", "STATUS=no exits"})
        assert f"MAINPID={proc.process.pid if proc.process else 0}" in seen
        assert seen.count("WATCHDOG=1") >= 1
    finally:
        assert proc.stop() == 0
    assert "STOPPING=1" in receive_until(sock, {"STOPPING=1"})


def scrape(daemon: DaemonProcess) -> dict[Series, float]:
    status, text = daemon.request("GET", "/metrics")
    assert status == 200, text
    families, samples = parse_exposition(text)
    kinds = {
        "exitd_exits": "gauge",
        "exitd_cycle_duration_seconds": "histogram",
        "exitd_rpc_requests_total": "counter",
    }
    for name, kind in kinds.items():
        assert families[name].type == kind and families[name].help
    return samples


def test_metrics_are_prometheus_text_and_counters_move(daemon: DaemonProcess, bitcoind: RegtestNode) -> None:
    first = scrape(daemon)
    assert {labels for name, labels in first if name == "exitd_exits"} == {
        (("state", kind.value),) for kind in ExitStateKind
    }
    bitcoind.mine(1)
    deadline = time.monotonic() + 20
    while True:
        second = scrape(daemon)
        if second[("exitd_cycles_total", ())] > first[("exitd_cycles_total", ())]:
            break
        assert time.monotonic() < deadline, "no progress cycle after a new block"
        time.sleep(0.2)
    assert second[("exitd_rpc_requests_total", ())] > first[("exitd_rpc_requests_total", ())]
    # Latency leaves out the long polls for the next block, which the requests count.
    assert 0 < second[("exitd_rpc_latency_seconds_count", ())] < second[("exitd_rpc_requests_total", ())]
    assert second[("exitd_cycle_duration_seconds_count", ())] >= second[("exitd_cycles_total", ())]
    assert ("exitd_build_info", (("network", "regtest"), ("version", "0.1.0"))) in second
    assert {labels for name, labels in second if name == "exitd_wallet_balance_sat"} == {
        (("state", state),) for state in ("confirmed", "trusted_pending", "untrusted_pending", "immature")
    }


def test_metrics_need_the_token_unless_open(tmp_path: Path, bitcoind: RegtestNode) -> None:
    with running_daemon(tmp_path / "exitd", bitcoind) as proc:
        assert proc.request("GET", "/metrics", auth=False)[0] == 401
    proc.start(env={"EXITD_REST_METRICS_OPEN": "true"})
    try:
        status, text = proc.request("GET", "/metrics", auth=False)
        assert status == 200 and "exitd_exits" in text
    finally:
        proc.stop()


def test_log_file_is_written_and_reopened_after_rotation(tmp_path: Path, bitcoind: RegtestNode) -> None:
    log_file = tmp_path / "exitd.log"
    proc = DaemonProcess(tmp_path / "exitd", bitcoind)
    proc.init()
    proc.start(env={"EXITD_LOG_FILE": str(log_file)})
    try:
        rotated = log_file.rename(tmp_path / "exitd.log.1")  # what logrotate does
    finally:
        assert proc.stop() == 0
    assert "rest_listening" in rotated.read_text() and "stopped" not in rotated.read_text()
    assert "stopped" in log_file.read_text()
    assert "rest_listening" not in proc.log_text()  # the file replaced stderr


def test_metrics_and_status_follow_a_real_exit(
    daemon: DaemonProcess, bitcoind: RegtestNode, capsys: pytest.CaptureFixture[str]
) -> None:
    """A forged board VTXO of the daemon's own key, exited for real: the package counter and the CPFP fee
    counter move when its package is broadcast, and `exitd status` shows the level it reached."""
    fund_wallet(daemon, bitcoind, coins=1)
    owner = owned(daemon, 0)
    board = Forge(bitcoind).board(50_000, owner)
    status, imported = daemon.request("POST", "/api/v1/wallet/import-vtxo", {"vtxos": [board.hex]})
    assert status == 200, imported
    vtxo_id = imported[0]["id"]
    before = scrape(daemon)  # before the start, which wakes the background cycle
    assert daemon.request("POST", "/api/v1/exits/start/vtxos", {"vtxos": [vtxo_id]})[0] == 200
    assert progress(daemon)["exits"][0]["state"]["type"] == "processing"
    after = scrape(daemon)
    assert after[("exitd_packages_broadcast_total", ())] == before[("exitd_packages_broadcast_total", ())] + 1
    cpfp = (("kind", "cpfp"),)
    assert after[("exitd_fees_paid_sat_total", cpfp)] > before[("exitd_fees_paid_sat_total", cpfp)]
    assert after[("exitd_exits", (("state", "processing"),))] == 1

    bitcoind.mine(1)
    advance_until(daemon, bitcoind, all_in("awaiting-delta"), max_blocks=1)
    assert main(["status", "--config", str(daemon.config_path)]) == 0
    row = capsys.readouterr().out.split("\n")[1].split()
    assert row[:5] == [vtxo_id, "50,000", "sat", "awaiting-delta", "1/1"]
    assert scrape(daemon)[("exitd_exits", (("state", "awaiting-delta"),))] == 1
