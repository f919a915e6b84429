"""`exitd run` refusing to start: the reason logged, and an exit status systemd does not restart."""

import re
import subprocess
import time

import pytest

from exitd.regtest.node import RegtestNode
from tests.support.daemon import DaemonProcess

pytestmark = pytest.mark.bitcoind


def cycles_done(daemon: DaemonProcess) -> int:
    status, text = daemon.request("GET", "/metrics")
    assert status == 200
    found = re.search(r"^exitd_cycles_total (\d+)$", text, re.MULTILINE)
    assert found is not None
    return int(found.group(1))


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
