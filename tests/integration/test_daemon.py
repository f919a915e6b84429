"""The real daemon as a subprocess: init, run, auth, errors, and a node that goes away and comes back."""

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exitd.regtest.node import RegtestNode
from tests.support.daemon import DaemonProcess

pytestmark = pytest.mark.bitcoind


def test_ping_is_open(daemon: DaemonProcess) -> None:
    assert daemon.request("GET", "/ping", auth=False) == (200, "pong")


def test_tip_needs_the_token(daemon: DaemonProcess, bitcoind: RegtestNode) -> None:
    status, body = daemon.request("GET", "/api/v1/bitcoin/tip")
    assert status == 200 and body == {"tip_height": bitcoind.height()}
    bitcoind.mine(1)
    assert daemon.request("GET", "/api/v1/bitcoin/tip")[1] == {"tip_height": bitcoind.height()}


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (False, "missing Authorization"),
        ("Basic dXNlcjpwYXNz", "Bearer"),
        ("Bearer ", "Bearer"),
        ("Bearer !!!", "base64url"),
        ("Bearer AAAA", "length"),
        ("Bearer AAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f", "invalid auth token"),
    ],
)
def test_bad_auth_is_401(daemon: DaemonProcess, header: bool | str, why: str) -> None:
    status, body = daemon.request("GET", "/api/v1/bitcoin/tip", auth=header)
    assert status == 401
    assert set(body) == {"message"} and why in body["message"]
    assert daemon.token not in body["message"]


def test_fee_rates_shape(daemon: DaemonProcess, bitcoind: RegtestNode) -> None:
    status, body = daemon.request("GET", "/api/v1/fees/onchain")
    assert status == 200
    assert set(body) == {"fast_sat_per_vb", "regular_sat_per_vb", "slow_sat_per_vb"}
    # What the node estimates for 1, 3 and 6 blocks, rounded up to sat/vB; the configured fallback
    # (2000 sat/kvB) where it has none (a fresh regtest chain); a longer target never costs more.
    expected = []
    for blocks in (1, 3, 6):
        feerate = bitcoind.rpc("estimatesmartfee", blocks, "economical").get("feerate")
        expected.append(-(-int(feerate * 100_000_000) // 1000) if feerate is not None else 2)
    expected = [min(expected[: i + 1]) for i in range(3)]
    assert [body["fast_sat_per_vb"], body["regular_sat_per_vb"], body["slow_sat_per_vb"]] == expected


def test_unknown_route_and_ark_server_routes(daemon: DaemonProcess) -> None:
    status, body = daemon.request("GET", "/api/v1/nope")
    assert status == 404 and body["resources"] == [] and "no such endpoint" in body["message"]
    status, body = daemon.request("POST", "/api/v1/boards/board-all", body={})
    assert status == 501 and "only performs unilateral exits" in body["message"]
    status, body = daemon.request("DELETE", "/api/v1/bitcoin/tip")
    assert status == 405 and "GET" in body["message"]


def test_init_files_are_private_and_kept(tmp_path: Path, bitcoind: RegtestNode) -> None:
    proc = DaemonProcess(tmp_path / "exitd", bitcoind)
    out = proc.init().stdout
    for name in ("mnemonic", "auth_token"):
        mode = stat.S_IMODE(os.stat(tmp_path / "exitd" / name).st_mode)
        assert mode == 0o600, name
    words = (tmp_path / "exitd" / "mnemonic").read_text()
    assert len(words.split()) == 12 and words.strip() not in out
    token = proc.token
    proc.init()
    assert (tmp_path / "exitd" / "mnemonic").read_text() == words and proc.token == token
    printed = subprocess.run(proc.command("token"), capture_output=True, text=True, check=True).stdout.strip()
    assert printed == token


def test_init_imports_a_mnemonic_and_refuses_another(tmp_path: Path, bitcoind: RegtestNode) -> None:
    words = "abandon " * 11 + "about"
    source = tmp_path / "words.txt"
    source.write_text(words)
    proc = DaemonProcess(tmp_path / "exitd", bitcoind)
    proc.init("--mnemonic-file", str(source))
    assert (tmp_path / "exitd" / "mnemonic").read_text().strip() == words
    source.write_text("zoo " * 11 + "zoo")  # bad checksum
    result = subprocess.run(
        proc.command("init", "--mnemonic-file", str(source)), capture_output=True, text=True
    )
    assert result.returncode == 2 and "not valid" in result.stderr and "zoo" not in result.stderr
    source.write_text("zoo " * 11 + "wrong")  # valid, but another wallet
    result = subprocess.run(
        proc.command("init", "--mnemonic-file", str(source)), capture_output=True, text=True
    )
    assert result.returncode == 2 and "different mnemonic" in result.stderr and "zoo" not in result.stderr
    assert (tmp_path / "exitd" / "mnemonic").read_text().strip() == words


def test_config_error_exits_2_naming_the_key(tmp_path: Path, bitcoind: RegtestNode) -> None:
    proc = DaemonProcess(tmp_path / "exitd", bitcoind, extra_config="[fees]\nfallback_rat = 3\n")
    result = subprocess.run(proc.command("run"), capture_output=True, text=True)
    assert result.returncode == 2 and "'fees.fallback_rat'" in result.stderr


def test_run_refuses_uninitialised_datadir(tmp_path: Path, bitcoind: RegtestNode) -> None:
    proc = DaemonProcess(tmp_path / "exitd", bitcoind)
    result = subprocess.run(proc.command("run"), capture_output=True, text=True)
    assert result.returncode == 2 and "exitd init" in result.stderr


def test_help_and_version() -> None:
    out = subprocess.run([sys.executable, "-m", "exitd.cli", "--help"], capture_output=True, text=True).stdout
    for command in ("init", "run", "token", "version"):
        assert command in out
    out = subprocess.run(
        [sys.executable, "-m", "exitd.cli", "version"], capture_output=True, text=True
    ).stdout
    assert out.startswith("exitd 0.")


def wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def test_survives_bitcoind_outage(tmp_path: Path, private_bitcoind: RegtestNode) -> None:
    proc = DaemonProcess(tmp_path / "exitd", private_bitcoind)
    proc.init()
    proc.start()
    try:
        assert proc.request("GET", "/api/v1/bitcoin/tip") == (200, {"tip_height": 0})
        private_bitcoind.stop()
        status, body = proc.request("GET", "/api/v1/bitcoin/tip")
        assert status == 500 and "bitcoind is unavailable" in body["message"]
        assert proc.request("GET", "/ping", auth=False) == (200, "pong")
        private_bitcoind.start()
        private_bitcoind.mine(2)
        wait_for(lambda: proc.request("GET", "/api/v1/bitcoin/tip") == (200, {"tip_height": 2}))
    finally:
        assert proc.stop() == 0


def test_wrong_chain_is_fatal(tmp_path: Path, bitcoind: RegtestNode) -> None:
    proc = DaemonProcess(tmp_path / "exitd", bitcoind)
    proc.config_path.write_text(
        proc.config_path.read_text().replace('network = "regtest"', 'network = "signet"')
    )
    proc.init()
    result = subprocess.run(proc.command("run"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "chain 'regtest'" in result.stderr
