"""barkd's onchain and wallet endpoints on the real daemon: balances, sends at the estimated rate, bad
requests that spend nothing, a walletless start with the wallet created over REST, a node without wallets."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from exitd.ark.bip39 import generate_mnemonic
from exitd.chain.fees import btc_to_sat
from exitd.regtest.node import RegtestNode
from exitd.wallet.address import script_to_address
from exitd.wallet.keys import Bip86Account, Keychain
from exitd.wallet.seed import master_fingerprint
from tests.support.barkd_schema import assert_valid
from tests.support.daemon import DaemonProcess
from tests.support.vectors import V2_VECTORS

pytestmark = pytest.mark.bitcoind

MAINNET_ADDRESS = "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr"


def ok(daemon: DaemonProcess, method: str, path: str, body: Any = None) -> Any:
    status, answer = daemon.request(method, path, body)
    assert status == 200, answer
    return answer


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """bitcoind tells its wallets about blocks and mempool txs asynchronously."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def balance(daemon: DaemonProcess) -> dict[str, int]:
    answer = ok(daemon, "GET", "/api/v1/onchain/balance")
    assert_valid(answer, "OnchainBalance")
    return dict(answer)


def mine_and_sync(daemon: DaemonProcess, node: RegtestNode) -> None:
    node.mine(1)
    ok(daemon, "POST", "/api/v1/onchain/sync")


def paid(node: RegtestNode, txid: str) -> tuple[dict[str, int], int, int]:
    """(sat paid to each address, fee, vsize) of a confirmed or mempool tx."""
    tx = node.rpc("getrawtransaction", txid, 1)
    outputs: dict[str, int] = {}
    for out in tx["vout"]:
        address = out["scriptPubKey"]["address"]
        outputs[address] = outputs.get(address, 0) + btc_to_sat(out["value"])
    spent = sum(
        btc_to_sat(node.rpc("getrawtransaction", vin["txid"], 1)["vout"][vin["vout"]]["value"])
        for vin in tx["vin"]
    )
    return outputs, spent - sum(outputs.values()), int(tx["vsize"])


def test_balances_and_sends_at_the_estimated_rate(daemon: DaemonProcess, bitcoind: RegtestNode) -> None:
    first, second = (ok(daemon, "POST", "/api/v1/onchain/addresses/next")["address"] for _ in range(2))
    assert first != second and first.startswith("bcrt1p")
    bitcoind.send(first, "0.01")
    bitcoind.send(second, "0.02")
    wait_until(lambda: balance(daemon)["untrusted_pending_sat"] == 3_000_000)
    assert balance(daemon) == {
        "confirmed_sat": 0,
        "immature_sat": 0,
        "total_sat": 3_000_000,
        "trusted_pending_sat": 0,
        "trusted_spendable_sat": 0,
        "untrusted_pending_sat": 3_000_000,
    }
    mine_and_sync(daemon, bitcoind)
    assert balance(daemon) == {
        "confirmed_sat": 3_000_000,
        "immature_sat": 0,
        "total_sat": 3_000_000,
        "trusted_pending_sat": 0,
        "trusted_spendable_sat": 3_000_000,
        "untrusted_pending_sat": 0,
    }
    utxos = ok(daemon, "GET", "/api/v1/onchain/utxos")
    assert_valid(utxos[0], "UtxoInfo")
    assert sorted(u["amount_sat"] for u in utxos) == [1_000_000, 2_000_000]
    assert {u["confirmation_height"] for u in utxos} == {bitcoind.height()}
    rate = ok(daemon, "GET", "/api/v1/fees/onchain")["regular_sat_per_vb"]

    target = bitcoind.miner_address()
    answer = ok(daemon, "POST", "/api/v1/onchain/send", {"destination": target, "amount_sat": 400_000})
    assert_valid(answer, "Send")
    sent = answer["txid"]
    outputs, fee, vsize = paid(bitcoind, sent)
    assert outputs.pop(target) == 400_000 and abs(fee / vsize - rate) <= 1
    (change,) = outputs.values()
    assert change == 1_000_000 - 400_000 - fee  # the smallest coin that pays for it all
    wait_until(lambda: balance(daemon)["trusted_pending_sat"] == change)
    assert balance(daemon)["confirmed_sat"] == 2_000_000 and balance(daemon)["trusted_spendable_sat"] == (
        2_000_000 + change
    )
    mine_and_sync(daemon, bitcoind)

    one, two = bitcoind.miner_address(), bitcoind.miner_address()
    body = {"destinations": [f"{one}:100000 sat", f"{two}:0.002 BTC"]}
    many = ok(daemon, "POST", "/api/v1/onchain/send-many", body)["txid"]
    outputs, fee, vsize = paid(bitcoind, many)
    assert outputs[one] == 100_000 and outputs[two] == 200_000 and abs(fee / vsize - rate) <= 1
    mine_and_sync(daemon, bitcoind)

    total = balance(daemon)["confirmed_sat"]
    drained = ok(daemon, "POST", "/api/v1/onchain/drain", {"destination": target})["txid"]
    outputs, fee, vsize = paid(bitcoind, drained)
    assert outputs == {target: total - fee} and abs(fee / vsize - rate) <= 1
    mine_and_sync(daemon, bitcoind)
    wait_until(lambda: balance(daemon)["total_sat"] == 0)

    listed = ok(daemon, "GET", "/api/v1/onchain/transactions")
    assert_valid(listed[0], "TransactionInfo")
    assert [t["txid"] for t in listed][-3:] == [sent, many, drained] and len(listed) == 5
    assert listed[-1]["tx"] == bitcoind.rpc("getrawtransaction", drained)


def test_bad_requests_are_400_and_spend_nothing(daemon: DaemonProcess, bitcoind: RegtestNode) -> None:
    address = ok(daemon, "POST", "/api/v1/onchain/addresses/next")["address"]
    bitcoind.send(address, Decimal("0.12345678"))  # all 8 decimals survive bitcoind's JSON and ours
    wait_until(lambda: len(ok(daemon, "GET", "/api/v1/onchain/utxos")) == 1)
    assert ok(daemon, "GET", "/api/v1/onchain/utxos")[0]["confirmation_height"] is None
    mine_and_sync(daemon, bitcoind)
    wait_until(lambda: balance(daemon)["confirmed_sat"] == 12_345_678)
    utxos = ok(daemon, "GET", "/api/v1/onchain/utxos")
    target = bitcoind.miner_address()
    bad: list[tuple[str, dict[str, Any], str]] = [
        ("send", {"destination": MAINNET_ADDRESS, "amount_sat": 10_000}, "for mainnet, not regtest"),
        (
            "send",
            {"destination": "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx", "amount_sat": 10_000},
            "testnet",
        ),
        ("send", {"destination": "not an address", "amount_sat": 10_000}, "not a valid address"),
        ("send", {"destination": target, "amount_sat": 100}, "below the dust limit of 330 sat"),
        ("send", {"destination": target, "amount_sat": 20_000_000}, "insufficient confirmed funds"),
        ("send", {"destination": target, "amount_sat": "10000"}, "whole number of sat"),
        ("send", {"destination": target, "amount_sat": -1}, "between 0 and"),
        ("send", {"amount_sat": 10_000}, "'destination'"),
        ("send-many", {"destinations": [target]}, "expected address:amount"),
        ("send-many", {"destinations": [f"{target}:lots"]}, "invalid amount"),
        ("send-many", {"destinations": [f"{target}:0.000000001 btc"]}, "whole number of sat"),
        ("send-many", {"destinations": [f"{MAINNET_ADDRESS}:10000 sat"]}, "for mainnet"),
        ("send-many", {"destinations": []}, "non-empty list"),
        ("drain", {"destination": MAINNET_ADDRESS}, "for mainnet"),
        ("drain", {}, "'destination'"),
    ]
    for path, body, why in bad:
        status, answer = daemon.request("POST", f"/api/v1/onchain/{path}", body)
        assert status == 400 and set(answer) == {"message"} and why in answer["message"], (path, body, answer)
    status, answer = daemon.request(
        "GET", f"/api/v1/fees/send-onchain?amount_sat=1000&address={MAINNET_ADDRESS}"
    )
    assert status == 400 and "mainnet" in answer["message"]
    status, answer = daemon.request("GET", "/api/v1/fees/send-onchain?amount_sat=1000")
    assert status == 400 and "required" in answer["message"]
    estimate = ok(daemon, "GET", f"/api/v1/fees/send-onchain?amount_sat=50000&address={target}")
    assert_valid(estimate, "FeeEstimateResponse")
    assert estimate["net_amount_sat"] == 50_000 and estimate["fee_sat"] > 0 and estimate["vtxos_spent"] == []
    assert estimate["gross_amount_sat"] == 50_000 + estimate["fee_sat"]
    assert ok(daemon, "GET", "/api/v1/onchain/utxos") == utxos
    assert len(ok(daemon, "GET", "/api/v1/onchain/transactions")) == 1


def test_walletless_daemon_creates_its_wallet_over_rest(tmp_path: Path, bitcoind: RegtestNode) -> None:
    proc = DaemonProcess(tmp_path / "exitd", bitcoind)
    proc.init("--no-wallet")
    mnemonic = tmp_path / "exitd" / "mnemonic"
    assert not mnemonic.exists()
    proc.start()
    try:
        assert ok(proc, "GET", "/api/v1/wallet") == {"fingerprint": None}
        assert_valid({"fingerprint": None}, "WalletExistsResponse")
        vtxos = {"vtxos": [v.data.hex() for v in V2_VECTORS]}
        for method, path, needing in [
            ("POST", "/api/v1/onchain/addresses/next", None),
            ("GET", "/api/v1/onchain/balance", None),
            ("GET", "/api/v1/wallet/balance", None),
            ("POST", "/api/v1/wallet/import-vtxo", vtxos),
        ]:
            status, answer = proc.request(method, path, needing)
            assert status == 400 and answer["message"].startswith("no wallet yet: "), (path, answer)

        status, answer = proc.request("POST", "/api/v1/wallet/create", {"network": "mainnet"})
        assert status == 400 and "runs on regtest" in answer["message"]
        invalid = {"network": "regtest", "mnemonic": "zoo " * 11 + "zoo"}
        status, answer = proc.request("POST", "/api/v1/wallet/create", invalid)
        assert status == 400 and "checksum" in answer["message"] and "zoo" not in answer["message"]
        words = generate_mnemonic()
        body: dict[str, Any] = {
            "network": "regtest",
            "mnemonic": words,
            "birthday_height": bitcoind.height(),
            "ark_server": "https://ark.example.org",
            "chain_source": None,
        }
        assert ok(proc, "POST", "/api/v1/wallet/create", body) == {"fingerprint": master_fingerprint(words)}
        assert mnemonic.read_text() == words + "\n" and stat.S_IMODE(os.stat(mnemonic).st_mode) == 0o600
        assert ok(proc, "GET", "/api/v1/wallet") == {"fingerprint": master_fingerprint(words)}
        assert_valid({"fingerprint": master_fingerprint(words)}, "CreateWalletResponse")
        status, answer = proc.request("POST", "/api/v1/wallet/create", {"network": "regtest"})
        assert status == 400 and "already exists" in answer["message"]

        account = Bip86Account.from_mnemonic(words, "regtest")
        first = script_to_address(account.script_pubkey(Keychain.EXTERNAL, 0), "regtest")
        assert ok(proc, "POST", "/api/v1/onchain/addresses/next") == {"address": first}
        assert_valid({"address": first}, "Address")
        assert ok(proc, "GET", "/api/v1/wallet/balance") == {
            "spendable_sat": 0,
            "pending_lightning_send_sat": 0,
            "claimable_lightning_receive_sat": 0,
            "pending_in_round_sat": 0,
            "pending_board_sat": 0,
            "pending_exit_sat": 0,
        }
        imported = ok(proc, "POST", "/api/v1/wallet/import-vtxo", vtxos)
        amounts = {v["id"]: v["amount_sat"] for v in imported}
        locked = imported[0]["id"]
        with sqlite3.connect(tmp_path / "exitd" / "exitd.sqlite3") as db:
            db.execute("update vtxos set state = 'locked' where vtxo_id = ?", (locked,))
        wallet_balance = ok(proc, "GET", "/api/v1/wallet/balance")
        assert_valid(wallet_balance, "Balance")
        assert wallet_balance["pending_exit_sat"] == amounts[locked]
        assert wallet_balance["spendable_sat"] == sum(amounts.values()) - amounts[locked]
    finally:
        assert proc.stop() == 0


def test_node_without_wallets_is_a_startup_error(tmp_path: Path) -> None:
    node = RegtestNode(tmp_path / "bitcoind", extra_args=("-disablewallet",))
    node.start()
    try:
        proc = DaemonProcess(tmp_path / "exitd", node)
        proc.init()
        result = subprocess.run(proc.command("run"), capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and "-disablewallet" in result.stderr, result.stderr
    finally:
        node.stop()
