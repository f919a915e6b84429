"""The SQLite file on a full or read-only disk: clear errors, the daemon stays up, nothing corrupted."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from exitd.regtest.forge import Forge
from exitd.regtest.node import RegtestNode
from tests.support.daemon import running_daemon
from tests.support.exits import advance_until, all_in, fund_wallet, import_and_start, owned, states

pytestmark = pytest.mark.bitcoind

DISK_SIZE = "32m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of its own (needs root and mount rights; skipped elsewhere), always unmounted."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)  # until ENOSPC
    return filler


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("pragma integrity_check").fetchone()[0])


def test_full_then_read_only_disk(small_disk: Path, bitcoind: RegtestNode) -> None:
    with running_daemon(small_disk / "exitd", bitcoind) as proc:
        fund_wallet(proc, bitcoind, coins=1)
        forge = Forge(bitcoind)
        (vtxo_id,) = import_and_start(proc, [forge.board(50_000, owned(proc, 0)).hex])
        more = forge.board(40_000, owned(proc, 1)).hex

        filler = fill(small_disk)
        status, body = proc.request("POST", "/api/v1/wallet/import-vtxo", {"vtxos": [more]})
        assert status == 500 and "database cannot be used" in body["message"], body
        assert proc.request("GET", "/ping", auth=False) == (200, "pong")
        filler.unlink()
        assert proc.request("POST", "/api/v1/wallet/import-vtxo", {"vtxos": [more]})[0] == 200

        proc.stop()
        subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
        result = subprocess.run(proc.command("run"), capture_output=True, text=True, timeout=60)
        assert result.returncode == 1 and "not writable: a read-only disk?" in result.stderr, result.stderr
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
        proc.start()
        advance_until(proc, bitcoind, all_in("claimable"))
        assert states(proc)[vtxo_id] == "claimable"
    assert integrity(small_disk / "exitd" / "exitd.sqlite3") == "ok"
