"""`exitd run` refusing to start: the reason logged, and an exit status systemd does not restart."""

import re
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from exitd.regtest.node import RegtestNode
from tests.support.daemon import DaemonProcess

pytestmark = pytest.mark.bitcoind


def cycles_done(daemon: DaemonProcess) -> int:
    status, text = daemon.request("GET", "/metrics")
    assert status == 200
    found = re.search(r"^exitd_cycles_total ([0-9.e+]+)$", text, re.MULTILINE)
    assert found is not None
    return int(float(found.group(1)))


def test_a_second_daemon_on_a_datadir_exits_at_once_naming_the_holder(
    daemon: DaemonProcess, bitcoind: RegtestNode
) -> None:
    assert daemon.process is not None
    lock_file = daemon.datadir / "exitd.lock"
    began = time.monotonic()
    second = subprocess.run(daemon.command("run"), capture_output=True, text=True, timeout=5)
    assert time.monotonic() - began < 5
    assert second.returncode == 2
    assert f"PID {daemon.process.pid}" in second.stderr and str(lock_file) in second.stderr
    assert lock_file.read_text().strip() == str(daemon.process.pid)

    # The first daemon is untouched: it serves, and a new block still runs its cycle.
    assert daemon.process.poll() is None
    assert daemon.request("GET", "/ping", auth=False) == (200, "pong")
    cycles = cycles_done(daemon)
    bitcoind.mine(1)
    deadline = time.monotonic() + 30
    while cycles_done(daemon) <= cycles:
        assert time.monotonic() < deadline, "the first daemon's cycle did not see the new block"
        time.sleep(0.2)


def run_to_the_end(proc: DaemonProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run(proc.command("run"), capture_output=True, text=True, timeout=60)


def logged_events(log_file: Path) -> list[str]:
    """The event names of a text log, in order (the fourth field of each line)."""
    return [line.split(" ")[3] for line in log_file.read_text().splitlines() if line.count(" ") >= 3]


def fatal_line(log_file: Path) -> str:
    return next(line for line in log_file.read_text().splitlines() if " fatal " in line)


def test_wrong_chain_exits_2_and_the_log_file_says_why_before_stopped(
    tmp_path: Path, bitcoind: RegtestNode
) -> None:
    log_file = tmp_path / "exitd.log"
    proc = DaemonProcess(tmp_path / "exitd", bitcoind, extra_config=f'file = "{log_file}"\n')
    proc.config_path.write_text(proc.config_path.read_text().replace('"regtest"', '"signet"', 1))
    proc.init()
    result = run_to_the_end(proc)
    assert result.returncode == 2
    assert "chain 'regtest'" in result.stderr  # the person who ran it reads it too
    events = logged_events(log_file)
    assert events.index("fatal") < events.index("stopped")
    assert "CRITICAL" in fatal_line(log_file) and "chain 'regtest'" in fatal_line(log_file)


def test_a_node_without_wallet_support_exits_2(tmp_path: Path) -> None:
    node = RegtestNode(tmp_path / "bitcoind", extra_args=("-disablewallet",))
    node.start()
    try:
        proc = DaemonProcess(tmp_path / "exitd", node)
        proc.init()
        result = run_to_the_end(proc)
    finally:
        node.stop()
    assert result.returncode == 2
    fatal = next(line for line in result.stderr.splitlines() if " fatal " in line)
    assert "-disablewallet" in fatal and "wallet" in fatal


def test_a_failure_that_may_pass_exits_1_so_systemd_restarts(tmp_path: Path, bitcoind: RegtestNode) -> None:
    log_file = tmp_path / "exitd.log"
    proc = DaemonProcess(tmp_path / "exitd", bitcoind, extra_config=f'file = "{log_file}"\n')
    proc.init()
    with socket.socket() as taken:  # another program holds the REST port
        taken.bind(("127.0.0.1", proc.port))
        taken.listen()
        result = run_to_the_end(proc)
    assert result.returncode == 1
    assert "address already in use" in result.stderr.lower()
    events = logged_events(log_file)
    assert events.index("fatal") < events.index("stopped")


def test_a_missing_cookie_is_named_in_the_log_and_the_api(tmp_path: Path, bitcoind: RegtestNode) -> None:
    proc = DaemonProcess(tmp_path / "exitd", bitcoind)
    missing = tmp_path / "no-such-dir" / ".cookie"
    proc.config_path.write_text(proc.config_path.read_text().replace(str(bitcoind.cookie_file), str(missing)))
    proc.init()
    proc.start()
    try:
        status, body = proc.request("GET", "/api/v1/bitcoin/tip")
        assert status == 500
        assert f"bitcoind's RPC cookie {missing} does not exist" in body["message"]
        assert "rejected" not in body["message"]
        assert f"RPC cookie {missing} does not exist" in proc.log_text()
    finally:
        assert proc.stop() == 0


def test_a_datadir_others_may_write_is_refused_naming_the_chmod(
    tmp_path: Path, bitcoind: RegtestNode
) -> None:
    proc = DaemonProcess(tmp_path / "exitd", bitcoind)
    proc.datadir.chmod(0o777)
    result = subprocess.run(proc.command("init"), capture_output=True, text=True)
    assert result.returncode == 2
    assert "writable by group and others (mode 0777)" in result.stderr
    assert f"chmod go-w {proc.datadir}" in result.stderr
    assert not (proc.datadir / "mnemonic").exists()
    proc.datadir.chmod(0o700)
    proc.init()
    proc.datadir.chmod(0o775)
    result = run_to_the_end(proc)
    assert result.returncode == 2 and f"chmod go-w {proc.datadir}" in result.stderr
    assert "writable by group (mode 0775)" in result.stderr
    assert not (proc.datadir / "exitd.sqlite3-wal").exists()  # refused before the database was opened


@pytest.mark.parametrize(("name", "mode"), [("mnemonic", 0o644), ("auth_token", 0o640)])
def test_a_secret_others_may_read_is_refused_naming_the_chmod(
    tmp_path: Path, bitcoind: RegtestNode, name: str, mode: int
) -> None:
    proc = DaemonProcess(tmp_path / "exitd", bitcoind)
    proc.init()
    secret = proc.datadir / name
    secret.chmod(mode)
    result = run_to_the_end(proc)
    assert result.returncode == 2
    assert f"{secret} holds the" in result.stderr and f"(mode {mode:04o})" in result.stderr
    assert f"fix it with: chmod 600 {secret}" in result.stderr
    assert secret.read_text().strip() not in result.stderr
    secret.chmod(0o600)
    proc.start()
    assert proc.stop() == 0


def test_the_database_and_its_wal_and_shm_are_0600(tmp_path: Path, bitcoind: RegtestNode) -> None:
    proc = DaemonProcess(tmp_path / "exitd", bitcoind)
    proc.init()
    database = proc.datadir / "exitd.sqlite3"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    database.chmod(0o644)  # as exitd before this check left it
    proc.start()
    try:
        names = ("exitd.sqlite3", "exitd.sqlite3-wal", "exitd.sqlite3-shm", "exitd.lock")
        modes = {name: stat.S_IMODE((proc.datadir / name).stat().st_mode) for name in names}
        assert modes == dict.fromkeys(names, 0o600)
    finally:
        assert proc.stop() == 0


def test_a_missing_mnemonic_file_is_one_line_and_a_rejected_one_leaves_no_datadir(
    tmp_path: Path, bitcoind: RegtestNode
) -> None:
    proc = DaemonProcess(tmp_path / "exitd", bitcoind)
    missing = tmp_path / "words.txt"
    result = subprocess.run(
        proc.command("init", "--mnemonic-file", str(missing)), capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr == f"exitd: cannot read --mnemonic-file {missing}: No such file or directory\n"
    missing.write_text("zoo " * 12)
    fresh = DaemonProcess(tmp_path / "other", bitcoind)
    fresh.config_path.unlink()
    fresh.datadir.rmdir()
    result = subprocess.run(
        [*fresh.command("init", "--mnemonic-file", str(missing))[:-2], "--datadir", str(fresh.datadir)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "not valid" in result.stderr
    assert not fresh.datadir.exists()
