"""Driving exits on regtest through the real daemon's REST API, as a barkd client would."""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from bitcoin.core import CTransaction, b2lx

from exitd.ark.claim import ClaimSigner
from exitd.ark.encoding import OutPoint
from exitd.engine.claims import ClaimInput, claim_paying
from exitd.regtest.forge import Forge, ForgedVtxo, UserKey
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


def outside_claim(daemon: DaemonProcess, node: RegtestNode, forged: ForgedVtxo, fee: int) -> CTransaction:
    """A claim of `forged` (owned by the daemon's key 0) that exitd did not make: another tool holding the
    same key, signing with exitd's own claim library, paying the miner."""
    clause = forged.vtxo.claim_clause
    signer = ClaimSigner(clause, daemon_keychain(daemon).seckey(0))
    claim_in = ClaimInput(OutPoint.from_str(str(forged.id)), forged.vtxo.amount, clause.script_pubkey, signer)
    destination = bytes.fromhex(node.rpc("validateaddress", node.miner_address())["scriptPubKey"])
    return claim_paying([claim_in], destination, fee, node.height())


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


def above_the_market(node: RegtestNode) -> int:
    """sat/vB: twice the node's ~1-block estimate (what exitd aims at), so exitd has no cause to outbid it."""
    estimate = node.rpc("estimatesmartfee", 1, "economical").get("feerate", Decimal("0.0001"))
    return max(10, math.ceil(2 * estimate * 100_000))


def broadcast_with_child(node: RegtestNode, forge: Forge, tx: CTransaction) -> str:
    """Another party's package: the exit tx and a CPFP child from the miner wallet; the child's txid."""
    child = forge.cpfp_child(tx, fee_rate=above_the_market(node))
    answer = node.rpc("submitpackage", [tx.serialize().hex(), child.serialize().hex()])
    assert answer["package_msg"] == "success", answer
    return str(b2lx(child.GetTxid()))


def anchor_block(node: RegtestNode, forged: ForgedVtxo) -> str:
    """The hash of the block holding the VTXO's chain anchor tx."""
    return str(node.find_tx(forged.vtxo.anchor_point.txid_hex)["blockhash"])


def spend_anchors(node: RegtestNode, forge: Forge, *forged: ForgedVtxo) -> str:
    """Spend each VTXO's chain anchor outside its exit chain, as the server's sweep would, and mine them:
    the block they are spent in."""
    for vtxo in forged:
        node.rpc("sendrawtransaction", forge.competing_spend(vtxo, node.miner_address()).serialize().hex())
    (block,) = node.mine(1)
    return block
