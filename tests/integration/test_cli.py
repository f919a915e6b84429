"""The CLI against the real daemon: import, start, cancel, status, progress; errors a person can act on."""

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from exitd.cli.main import main
from exitd.regtest.node import RegtestNode, free_port
from tests.support.daemon import DaemonProcess
from tests.support.vectors import V2_VECTORS

pytestmark = pytest.mark.bitcoind


@dataclass(frozen=True)
class CliRun:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def exitd(capsys: pytest.CaptureFixture[str], daemon: DaemonProcess) -> Callable[..., CliRun]:
    """`exitd ARGS --config <the daemon's>`, run in this process (the daemon is the real subprocess)."""

    def run(*args: str) -> CliRun:
        try:
            code = main([*args, "--config", str(daemon.config_path)])
        except SystemExit as e:  # argparse's usage errors
            code = int(e.code or 0)
        out, err = capsys.readouterr()
        return CliRun(code, out, err)

    return run


def vtxo_id(index: int) -> str:
    return str(V2_VECTORS[index].derived["vtxo_id"])


def test_import_start_cancel_then_status(exitd: Callable[..., CliRun], tmp_path: Path) -> None:
    vtxos_file = tmp_path / "vtxos.txt"
    vtxos_file.write_text(f"{V2_VECTORS[0].data.hex()}\n{V2_VECTORS[1].data.hex()}\n")
    result = exitd("import", str(vtxos_file), V2_VECTORS[2].data.hex(), "--json")
    assert result.returncode == 0, result.stderr
    imported = json.loads(result.stdout)
    assert [v["id"] for v in imported] == [vtxo_id(0), vtxo_id(1), vtxo_id(2)]

    result = exitd("start", "--force", vtxo_id(0), vtxo_id(1))  # real vectors: not worth it here
    started = f"started 2 exits:\n  {vtxo_id(0)}\n  {vtxo_id(1)}\n"
    assert (result.returncode, result.stdout) == (0, started), result.stderr
    result = exitd("cancel", vtxo_id(1))
    assert result.returncode == 0 and "canceled" in result.stdout, result.stderr

    result = exitd("status")
    assert result.returncode == 0, result.stderr
    table, funding, source, node = result.stdout.strip().split("\n\n")
    assert funding.startswith("funding: ")  # the wallet's funding plan, under the table
    assert source.startswith("source: imports only")  # no barkd followed
    assert node.startswith("bitcoind ") and "wallets enabled" in node and "problem" not in node
    header, *rows = table.split("\n")
    assert header.split() == ["VTXO", "AMOUNT", "STATE", "LEVEL", "NEXT", "ERROR"]
    by_id = {row.split()[0]: row for row in rows}
    # The canceled exit is gone from the listing: barkd 0.1.4 (the default vocabulary) has no canceled
    # exit, its VTXO is simply not exiting.
    assert set(by_id) == {vtxo_id(0)}
    assert f"{imported[0]['amount_sat']:,} sat" in by_id[vtxo_id(0)]
    assert f"0/{V2_VECTORS[0].exit_depth}" in by_id[vtxo_id(0)].split()

    statuses = json.loads(exitd("status", "--json").stdout)
    assert {s["vtxo_id"] for s in statuses} == {vtxo_id(0)}
    progress = json.loads(exitd("progress", "--json").stdout)
    assert set(progress) >= {"exits", "done"}
    assert exitd("progress").stdout.split("\n")[0].split() == ["VTXO", "STATE", "NEXT", "ERROR"]


def test_errors_are_one_actionable_line_with_a_meaningful_code(
    exitd: Callable[..., CliRun], daemon: DaemonProcess
) -> None:
    cases = [
        (["start"], 2, "takes --all or VTXO ids"),
        (["start", "--all", vtxo_id(0)], 2, "takes --all or VTXO ids"),
        (["import", "not-hex-nor-file"], 2, "neither a file nor a hex-encoded VTXO"),
        (["progress", "--fee-rate", "-5"], 2, "positive number of sat/kvB"),
        (["cancel", vtxo_id(0)], 1, "(HTTP 404)"),
        (["claim", "--all", "--to", "not-an-address"], 1, "(HTTP 400)"),
    ]
    for args, code, why in cases:
        result = exitd(*args)
        assert result.returncode == code and why in result.stderr, (args, result.stderr)
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1 or args[0] == "progress", result.stderr  # argparse adds usage
        assert daemon.token not in result.stderr


def test_a_token_the_daemon_rejects_is_a_configuration_error(
    exitd: Callable[..., CliRun], daemon: DaemonProcess
) -> None:
    token_file = daemon.datadir / "auth_token"
    token = token_file.read_text()
    token_file.write_text(token[:10] + ("B" if token[10] != "B" else "C") + token[11:])  # another secret
    result = exitd("status")
    token_file.write_text(token)
    assert result.returncode == 2 and "rejected the token" in result.stderr and "--datadir" in result.stderr


def test_a_daemon_that_is_not_running_exits_3(tmp_path: Path, bitcoind: RegtestNode) -> None:
    proc = DaemonProcess(tmp_path / "exitd", bitcoind)
    proc.init()
    port = free_port()
    result = subprocess.run(
        proc.command("status", "--rest-port", str(port)), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 3
    assert result.stderr.startswith(
        f"exitd: daemon not reachable at 127.0.0.1:{port} — is `exitd run` running?"
    )


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0 and "3    the daemon is not reachable" in out
    for command in ("status", "import", "start", "progress", "claim", "address", "balance", "cancel"):
        assert command in out


def test_progress_wait_returns_once_nothing_is_pending(exitd: Callable[..., CliRun]) -> None:
    result = exitd("progress", "--wait", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["done"] is True
    result = exitd("progress", "--wait")
    assert "Ctrl-C stops waiting, not the exits" in result.stderr
    assert result.stdout == "nothing left to confirm\n"  # no exit to show, block after block


def test_address_then_balance(exitd: Callable[..., CliRun], bitcoind: RegtestNode) -> None:
    result = exitd("address")
    assert result.returncode == 0, result.stderr
    address = result.stdout.strip()
    assert address.startswith("bcrt1p") and len(result.stdout.split("\n")) == 2
    bitcoind.send(address, "0.001")
    bitcoind.mine(1)
    deadline = time.monotonic() + 20
    while json.loads(exitd("balance", "--json").stdout)["confirmed_sat"] != 100_000:
        assert time.monotonic() < deadline, "the funding never showed as confirmed"
        time.sleep(0.2)
    lines = exitd("balance").stdout.split("\n")
    assert lines[1].split() == ["confirmed", "100,000", "sat"]
