"""Driving exits on regtest through the real daemon's REST API, as a barkd client would."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from exitd.regtest.forge import UserKey
from exitd.regtest.node import MINER_WALLET, NodeFlavor, RegtestNode
from exitd.wallet.keys import VtxoKeychain
from tests.support.daemon import DaemonProcess


def minted(node: RegtestNode) -> None:
    """On a pruned node, the blocks of the VTXOs just made are pruned before exitd sees them (their
    anchors are found in the UTXO set); nothing on other nodes."""
    minted_at = node.height()
    if node.flavor is NodeFlavor.PRUNED:
        assert node.prune_history() > minted_at


def daemon_keychain(daemon: DaemonProcess) -> VtxoKeychain:
    return VtxoKeychain.from_mnemonic((daemon.datadir / "mnemonic").read_text())


def owned(daemon: DaemonProcess, index: int) -> UserKey:
    return UserKey.from_secret(daemon_keychain(daemon).seckey(index))


def import_and_start(daemon: DaemonProcess, hexes: list[str], force: bool = True) -> list[str]:
    """Import and start, forced past admission by default (tests of the exit's course fund the wallet when
    they need to; tests/integration/test_exit_safety.py tests admission itself)."""
    status, imported = daemon.request("POST", "/api/v1/wallet/import-vtxo", {"vtxos": hexes})
    assert status == 200, imported
    ids = [v["id"] for v in imported]
    assert all(v["key_held"] for v in imported)
    status, body = daemon.request("POST", "/api/v1/exits/start/vtxos", {"vtxos": ids, "force": force})
    assert status == 200 and body["message"] == "Exit started successfully", body
    assert body["started"] == ids, body
    return ids


def wallet_address(daemon: DaemonProcess) -> str:
    status, body = daemon.request("POST", "/api/v1/onchain/addresses/next")
    assert status == 200, body
    return str(body["address"])


def fund_wallet(daemon: DaemonProcess, node: RegtestNode, coins: int = 3, btc: str = "0.01") -> None:
    """Give the daemon's on-chain wallet `coins` confirmed coins to pay CPFP children with (one sendmany:
    the miner's wallet refuses long chains of unconfirmed sends)."""
    addresses = []
    for _ in range(coins):
        status, body = daemon.request("POST", "/api/v1/onchain/addresses/next")
        assert status == 200, body
        addresses.append(body["address"])
    node.rpc("sendmany", "", dict.fromkeys(addresses, str(Decimal(btc))), wallet=MINER_WALLET)
    node.mine(1)
    status, body = daemon.request("POST", "/api/v1/onchain/sync")
    assert status == 200, body


def progress(daemon: DaemonProcess, **body: Any) -> dict[str, Any]:
    status, answer = daemon.request("POST", "/api/v1/exits/progress", body)
    assert status == 200, answer
    return answer


def states(daemon: DaemonProcess) -> dict[str, str]:
    status, body = daemon.request("GET", "/api/v1/exits/status")
    assert status == 200, body
    return {e["vtxo_id"]: e["state"]["type"] for e in body}


def advance_until(
    daemon: DaemonProcess,
    node: RegtestNode,
    done: Callable[[dict[str, Any]], bool],
    max_blocks: int = 60,
    **progress_body: Any,
) -> int:
    """Progress, then mine one block, until `done(progress answer)`; returns the blocks mined."""
    for mined in range(max_blocks + 1):
        answer = progress(daemon, **progress_body)
        if done(answer):
            return mined
        node.mine(1)
    raise AssertionError(f"not done after {max_blocks} blocks: {answer}")


def all_in(*kinds: str) -> Callable[[dict[str, Any]], bool]:
    return lambda answer: bool(answer["exits"]) and all(e["state"]["type"] in kinds for e in answer["exits"])


def package_rate(node: RegtestNode, child_txid: str) -> int:
    """The package's effective rate as bitcoind sees it: ancestor fees over ancestor size (sat/kvB)."""
    entry = node.rpc("getmempoolentry", child_txid)
    return int(entry["fees"]["ancestor"] * 10**8) * 1000 // int(entry["ancestorsize"])
