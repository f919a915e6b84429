"""exitd following a bark wallet: a barkd stand-in (tests/support/barkd.py) serves the forge's VTXOs exactly
as barkd's 0.6.0 or 0.1.4 document defines its wallet VTXO and notification endpoints, and the real daemon
on regtest imports them, never exits one barkd spent, exits and claims one near expiry, and keeps doing so
for the last known set when barkd is gone. Imports no source vouches for are not guarded unless asked."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from exitd.regtest.forge import DEFAULT_EXIT_DELTA, Forge, ForgedVtxo
from exitd.regtest.node import RegtestNode
from tests.support.barkd import BarkdStandIn, stand_in_served
from tests.support.daemon import DaemonProcess, running_daemon
from tests.support.exits import fund_wallet, owned
from tests.support.guard import (
    SLACK_BLOCKS,
    exit_status,
    finish_unattended,
    guard_config,
    import_vtxos,
    poll,
    wait_for_cycle_at,
    wait_for_state,
)
from tests.support.webhook import WebhookReceiver

pytestmark = pytest.mark.bitcoind

# Blocks before expiry at which the guard starts a board: its depth (1) + exit delta + slack.
MARGIN = 1 + DEFAULT_EXIT_DELTA + SLACK_BLOCKS
# Blocks the test's setup may take before the boards are due.
SETUP_BLOCKS = 12


def guard_toml(webhook_url: str, barkd: str = "") -> str:
    """Guard mode claiming to exitd's wallet, with imports guarded only when protected (the default)."""
    return guard_config(webhook_url, protect_imports=False) + barkd


def barkd_toml(stand_in: BarkdStandIn, token_file: Path, sync_interval: float) -> str:
    return f"""
[barkd]
url = "{stand_in.url}"
token_file = "{token_file}"
sync_interval = {sync_interval}
"""


@pytest.fixture
def stand_in_06() -> Iterator[BarkdStandIn]:
    yield from stand_in_served("0.6.0")


@pytest.fixture
def stand_in_014() -> Iterator[BarkdStandIn]:
    yield from stand_in_served("0.1.4")


def following(
    tmp_path: Path, node: RegtestNode, receiver: WebhookReceiver, barkd: BarkdStandIn, sync_interval: float
) -> AbstractContextManager[DaemonProcess]:
    """exitd in guard mode following the stand-in, alerting `receiver`."""
    token = barkd.write_token(tmp_path / "barkd_token")
    config = guard_toml(receiver.url, barkd_toml(barkd, token, sync_interval))
    return running_daemon(tmp_path / "exitd", node, config)


def vtxo(daemon: DaemonProcess, vtxo_id: str) -> dict[str, Any]:
    status, body = daemon.request("GET", f"/api/v1/wallet/vtxos/{vtxo_id}")
    assert status == 200, body
    return dict(body)


def source(daemon: DaemonProcess) -> dict[str, Any]:
    status, body = daemon.request("GET", "/api/v1/wallet/source")
    assert status == 200, body
    return dict(body)


def seen_as(daemon: DaemonProcess, vtxo_id: str, state: str) -> dict[str, Any] | None:
    status, body = daemon.request("GET", f"/api/v1/wallet/vtxos/{vtxo_id}")
    if status != 200 or body["seen"] is None or body["seen"]["state"] != state:
        return None
    return dict(body)


def expiring_boards(daemon: DaemonProcess, node: RegtestNode, count: int) -> tuple[list[ForgedVtxo], int]:
    """`count` boards of the daemon's keys, all due at one height a few blocks ahead; that height."""
    expiry = node.height() + SETUP_BLOCKS + MARGIN
    forge = Forge(node)
    boards = [forge.board(50_000, owned(daemon, i), expiry_height=expiry) for i in range(count)]
    assert node.height() < expiry - MARGIN
    return boards, expiry - MARGIN


def mine_to(node: RegtestNode, height: int) -> None:
    node.mine(height - node.height())


def guard_exits_and_claims(daemon: DaemonProcess, node: RegtestNode, vtxo_id: str, due: int) -> None:
    """Mine to the height the VTXO is due at: the guard exits it and claims it to exitd's wallet."""
    mine_to(node, due)
    started = poll("the guard's exit", lambda: exit_status(daemon, vtxo_id))
    assert started["started_by"] == "expiry-guard"
    wait_for_state(daemon, vtxo_id, "processing")
    node.mine(1)
    assert finish_unattended(daemon, node, vtxo_id)["error"] is None


def start_refused(daemon: DaemonProcess, vtxo_id: str) -> str:
    status, body = daemon.request("POST", "/api/v1/exits/start/vtxos", {"vtxos": [vtxo_id]})
    assert status == 400, body
    return str(body["message"])


def test_barkd_vtxos_are_followed_and_a_spent_one_is_never_exited(
    tmp_path: Path, bitcoind: RegtestNode, receiver: WebhookReceiver, stand_in_06: BarkdStandIn
) -> None:
    barkd = stand_in_06
    # An hour between syncs: what changes after the first one reaches exitd through barkd's notifications.
    with following(tmp_path, bitcoind, receiver, barkd, sync_interval=3600) as daemon:
        fund_wallet(daemon, bitcoind, coins=2)
        (kept, refreshed), due = expiring_boards(daemon, bitcoind, 2)
        kept_id, refreshed_id = barkd.add(kept.vtxo), barkd.add(refreshed.vtxo)

        for vtxo_id in (kept_id, refreshed_id):
            found = poll(f"{vtxo_id} from barkd", lambda v=vtxo_id: seen_as(daemon, v, "spendable"))
            assert (found["source"], found["state"]) == ("barkd", {"type": "spendable"})
        barkd.set_state(refreshed_id, "spent")  # bark refreshed it: the server holds the old one now
        spent = poll("barkd's spend", lambda: seen_as(daemon, refreshed_id, "spent"))
        assert spent["state"] == {"type": "spent"}
        assert "barkd reports it spent" in start_refused(daemon, refreshed_id)

        guard_exits_and_claims(daemon, bitcoind, kept_id, due)
        assert exit_status(daemon, refreshed_id) is None
        followed = source(daemon)
        assert followed["kind"] == "barkd" and followed["notifications"] is True
        assert followed["error"] is None and followed["listed"] == 2
    assert any(path.startswith("GET /api/v1/notifications/wait") for path in barkd.served)
    assert "barkd_sync_failed" not in daemon.log_text()


def test_with_barkd_gone_the_last_known_spendable_set_is_still_exited(
    tmp_path: Path, bitcoind: RegtestNode, receiver: WebhookReceiver, stand_in_014: BarkdStandIn
) -> None:
    barkd = stand_in_014
    with following(tmp_path, bitcoind, receiver, barkd, sync_interval=0.5) as daemon:
        fund_wallet(daemon, bitcoind, coins=1)
        (board,), due = expiring_boards(daemon, bitcoind, 1)
        vtxo_id = barkd.add(board.vtxo)
        poll("the VTXO from barkd", lambda: seen_as(daemon, vtxo_id, "spendable"))
        synced = poll("a sync after the import", lambda: source(daemon)["listed"] == 1 and source(daemon))
        assert synced["notifications"] is False  # barkd 0.1.4 has no notifications/wait

        barkd.stop()
        failing = poll("the failed sync", lambda: source(daemon)["error"] and source(daemon))
        assert failing["last_sync_at"] >= synced["last_sync_at"] and "failed" in failing["error"]
        poll(
            "the barkd-unreachable alert",
            lambda: "barkd-unreachable" in [b["event"] for b in receiver.bodies],
        )

        guard_exits_and_claims(daemon, bitcoind, vtxo_id, due)
        # It keeps trying (every sync_interval) while the exit goes on, and alerts once.
        poll("a second failed sync", lambda: daemon.log_text().count("barkd_sync_failed") >= 2)
    unreachable = [b for b in receiver.bodies if b["event"] == "barkd-unreachable"]
    assert len(unreachable) == 1 and unreachable[0]["url"] == barkd.url


def test_stale_imports_are_not_exited_unasked(
    tmp_path: Path, bitcoind: RegtestNode, receiver: WebhookReceiver
) -> None:
    with running_daemon(tmp_path / "exitd", bitcoind, guard_toml(receiver.url)) as daemon:
        fund_wallet(daemon, bitcoind, coins=3)
        (stale, protected, gone), due = expiring_boards(daemon, bitcoind, 3)
        (stale_id, gone_id) = import_vtxos(daemon, [stale, gone])
        status, answer = daemon.request(
            "POST", "/api/v1/wallet/import-vtxo", {"vtxos": [protected.hex, gone.hex], "protect": True}
        )
        assert status == 200, answer
        protected_id = answer[0]["id"]
        assert [v["protected"] for v in answer] == [True, True]
        marked = subprocess.run(daemon.command("gone", gone_id), capture_output=True, text=True)
        assert marked.returncode == 0, marked.stderr
        assert vtxo(daemon, gone_id)["state"] == {"type": "spent"} and vtxo(daemon, gone_id)["gone_at"]

        mine_to(bitcoind, due)
        wait_for_cycle_at(daemon, due)
        started = poll("the guard's exit", lambda: exit_status(daemon, protected_id))
        assert started["started_by"] == "expiry-guard"
        assert exit_status(daemon, stale_id) is None and exit_status(daemon, gone_id) is None
        assert "you marked it gone" in start_refused(daemon, gone_id)

        status, body = daemon.request("POST", "/api/v1/exits/start/vtxos", {"vtxos": [stale_id]})
        assert status == 200, body  # asked for: it exits
        wait_for_state(daemon, stale_id, "processing")
        wait_for_state(daemon, protected_id, "processing")
        bitcoind.mine(1)
        assert finish_unattended(daemon, bitcoind, protected_id)["error"] is None
        assert exit_status(daemon, gone_id) is None
        listing = subprocess.run(daemon.command("vtxos"), capture_output=True, text=True)
        assert listing.returncode == 0, listing.stderr
        assert "source: imports only" in listing.stdout and "gone (marked" in listing.stdout
