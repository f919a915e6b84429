"""Watching guard mode through the real daemon: its config, an exit's status as it moves, its cycles."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from exitd.regtest.forge import ForgedVtxo
from exitd.regtest.node import RegtestNode
from tests.support.daemon import DaemonProcess

T = TypeVar("T")

# Small enough that an expiring VTXO is due a few blocks after it is forged.
SLACK_BLOCKS = 2
# sat/kvB: auto-claims pay the node's estimate up to this.
CLAIM_MAX_RATE = 3000
CYCLE_LINE = re.compile(r" cycle exits=\d+ tip=(\d+) ms=(\d+)")


def guard_config(webhook_url: str = "", protect_imports: bool = True, **alerts: int) -> str:
    """TOML for exitd in guard mode, claiming to its own wallet, alerting `webhook_url`; every import is
    guarded unless `protect_imports` is off (no barkd vouches for the VTXOs these tests forge)."""
    extra = "".join(f"{key} = {value}\n" for key, value in alerts.items())
    return f"""
[guard]
slack_blocks = {SLACK_BLOCKS}
claim_address = "wallet"
claim_max_rate = {CLAIM_MAX_RATE}
protect_imports = {str(protect_imports).lower()}

[alerts]
webhook_url = "{webhook_url}"
{extra}"""


def poll(what: str, probe: Callable[[], T | None], timeout: float = 20.0) -> T:
    """The first truthy answer of `probe`, asked every 50 ms."""
    deadline = time.monotonic() + timeout
    while True:
        answer = probe()
        if answer:
            return answer
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def exit_status(daemon: DaemonProcess, vtxo_id: str) -> dict[str, Any] | None:
    status, body = daemon.request("GET", f"/api/v1/exits/status/{vtxo_id}?history=true&transactions=true")
    if status == 404:
        return None
    assert status == 200, body
    return dict(body)


def wait_for_state(daemon: DaemonProcess, vtxo_id: str, kind: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        status = exit_status(daemon, vtxo_id)
        return status if status is not None and status["state"]["type"] == kind else None

    return poll(f"{vtxo_id} to be {kind}", reached)


def wait_for_level(daemon: DaemonProcess, vtxo_id: str, level: int, kind: str) -> dict[str, Any]:
    """The exit's status once its tx at `level` (1: the root) has the status `kind`."""

    def reached() -> dict[str, Any] | None:
        status = exit_status(daemon, vtxo_id)
        if status is None or status["state"]["type"] != "processing":
            return None
        return status if status["state"]["transactions"][level - 1]["status"]["type"] == kind else None

    return poll(f"level {level} of {vtxo_id} to be {kind}", reached)


def cycles(daemon: DaemonProcess) -> list[tuple[int, int]]:
    """(tip, milliseconds) of every cycle the daemon logged."""
    return [(int(m[1]), int(m[2])) for m in CYCLE_LINE.finditer(daemon.log_text())]


def wait_for_cycle_at(daemon: DaemonProcess, height: int) -> None:
    poll(f"a cycle at {height}", lambda: any(tip == height for tip, _ in cycles(daemon)))


def import_vtxos(daemon: DaemonProcess, forged: list[ForgedVtxo]) -> list[str]:
    status, imported = daemon.request(
        "POST", "/api/v1/wallet/import-vtxo", {"vtxos": [f.hex for f in forged]}
    )
    assert status == 200, imported
    return [str(v["id"]) for v in imported]


def start_to_awaiting_delta(daemon: DaemonProcess, node: RegtestNode, vtxo_id: str) -> dict[str, Any]:
    """Start the exit of a one-level VTXO (forced: these tests fund the wallet themselves) and mine it into
    its delta; the awaiting-delta status."""
    status, body = daemon.request("POST", "/api/v1/exits/start/vtxos", {"vtxos": [vtxo_id], "force": True})
    assert status == 200, body
    wait_for_state(daemon, vtxo_id, "processing")
    node.mine(1)
    return wait_for_state(daemon, vtxo_id, "awaiting-delta")


def finish_unattended(daemon: DaemonProcess, node: RegtestNode, vtxo_id: str) -> dict[str, Any]:
    """Mine through an exit the guard runs: its levels, its delta, its claim; the claimed status."""
    status = wait_for_state(daemon, vtxo_id, "awaiting-delta")
    node.mine(status["state"]["claimable_height"] - node.height())
    wait_for_state(daemon, vtxo_id, "claim-in-progress")
    node.mine(1)
    return wait_for_state(daemon, vtxo_id, "claimed")
