"""`exitd demo` as a person runs it: every exit claimed, and nothing left behind, also after Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from exitd.regtest.obtain import find_bitcoind

pytestmark = pytest.mark.bitcoind

REPO = Path(__file__).resolve().parents[2]


def demo(tmpdir: Path, *args: str) -> subprocess.Popen[str]:
    """`exitd demo` in its own process, its temporary files under `tmpdir` (TMPDIR) so the test sees them."""
    tmpdir.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXITD_")}
    env |= {"TMPDIR": str(tmpdir), "BITCOIND": str(find_bitcoind())}
    return subprocess.Popen(
        [sys.executable, "-m", "exitd.cli", "demo", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def processes_using(path: Path) -> list[str]:
    """Command lines of live processes that name `path` (a bitcoind's -datadir, say)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in cmdline and proc.name.isdigit():
            found.append(cmdline)
    return found


def assert_nothing_left(tmpdir: Path) -> None:
    assert list(tmpdir.iterdir()) == []
    assert processes_using(tmpdir) == []


def test_demo_claims_every_exit_and_leaves_nothing_behind(tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    process = demo(tmpdir, "--json")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    summary = json.loads(out)
    exits = summary["exits"]
    assert {e["state"] for e in exits} == {"claimed"}
    assert [e["shape"] for e in exits] == [
        "board",
        *(f"tree leaf {i}/4" for i in range(1, 5)),
        "arkoor, 2 hops",
    ]
    assert [e["depth"] for e in exits] == [1, 2, 2, 2, 2, 5]
    for e in exits:
        assert e["amount_out_sat"] == e["amount_in_sat"] - e["claim_fee_sat"] > 0
        assert e["cpfp_fees_sat"] > 0 and e["blocks"] > e["depth"]
    assert summary["seconds"] < 60
    assert_nothing_left(tmpdir)


def test_demo_without_a_bitcoind_says_so_in_one_line_and_makes_nothing(tmp_path: Path) -> None:
    tmpdir, missing = tmp_path / "tmp", tmp_path / "no-bitcoind"
    tmpdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXITD_")}
    env |= {"TMPDIR": str(tmpdir), "BITCOIND": str(missing)}
    command = [sys.executable, "-m", "exitd.cli", "demo"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"exitd demo: $BITCOIND={missing} is not an executable file\n"
    assert list(tmpdir.iterdir()) == []


def test_demo_interrupted_cleans_up(tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    process = demo(tmpdir)
    assert process.stdout is not None
    for line in process.stdout:  # plain lines: stdout is not a terminal
        if "processing" in line:
            break
    else:
        pytest.fail(f"the demo ended before any exit was processing: {process.stderr}")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted" in err
    assert_nothing_left(tmpdir)
