"""A whole exit driven as a barkd client drives barkd, every answer judged by barkd's own document: the
status is one barkd documents for the operation, the body valid (JSON Schema 2020-12) against barkd's
schema of that response. The fee estimate, which 0.1.4 lacks, is judged by barkd 0.6.0's document."""

from __future__ import annotations

from typing import Any

import pytest

from exitd.regtest.forge import Forge
from exitd.regtest.node import RegtestNode
from tests.support.barkd_schema import assert_answer
from tests.support.daemon import DaemonProcess
from tests.support.exits import owned

pytestmark = pytest.mark.bitcoind

UNKNOWN_ID = "11" * 32 + ":0"


def ask(
    daemon: DaemonProcess,
    method: str,
    template: str,
    path: str | None = None,
    body: Any = None,
    version: str = "0.1.4",
) -> tuple[int, Any]:
    """One request to `path` (the template itself when it has no parameters), its answer judged."""
    status, answer = daemon.request(method, path or template, body)
    assert_answer(method, template, status, answer, version)
    return status, answer


def ok(daemon: DaemonProcess, method: str, template: str, path: str | None = None, **kw: Any) -> Any:
    status, answer = ask(daemon, method, template, path, **kw)
    assert status == 200, answer
    return answer


def test_whole_exit_as_a_barkd_client(daemon: DaemonProcess, bitcoind: RegtestNode) -> None:
    ok(daemon, "GET", "/api/v1/wallet")
    ok(daemon, "GET", "/api/v1/bitcoin/tip")
    ok(daemon, "GET", "/api/v1/fees/onchain")
    addresses = [ok(daemon, "POST", "/api/v1/onchain/addresses/next")["address"] for _ in range(3)]
    bitcoind.rpc("sendmany", "", dict.fromkeys(addresses, "0.01"), wallet="miner")
    bitcoind.mine(1)
    ok(daemon, "POST", "/api/v1/onchain/sync")
    ok(daemon, "POST", "/api/v1/wallet/sync")
    assert len(ok(daemon, "GET", "/api/v1/onchain/utxos")) == 3
    ok(daemon, "GET", "/api/v1/onchain/transactions")
    assert ok(daemon, "GET", "/api/v1/onchain/balance")["confirmed_sat"] == 3_000_000

    forge = Forge(bitcoind)
    arkoor = forge.arkoor_chain(30_000, owned(daemon, 0), hops=1)
    (info,) = ok(daemon, "POST", "/api/v1/wallet/import-vtxo", body={"vtxos": [arkoor.hex]})
    vtxo_id = info["id"]
    ok(daemon, "GET", "/api/v1/wallet/vtxos")
    ok(daemon, "GET", "/api/v1/wallet/vtxos/{id}", f"/api/v1/wallet/vtxos/{vtxo_id}")
    ok(daemon, "GET", "/api/v1/wallet/vtxos/{id}/encoded", f"/api/v1/wallet/vtxos/{vtxo_id}/encoded")
    ok(daemon, "GET", "/api/v1/wallet/balance")
    fee = ok(daemon, "GET", "/api/v1/exits/fee", f"/api/v1/exits/fee?vtxo_ids={vtxo_id}", version="0.6.0")
    assert fee["fundable"] and fee["txs_to_broadcast"] == arkoor.vtxo.exit_depth

    # Rejections in barkd's shapes.
    status, _ = ask(daemon, "POST", "/api/v1/exits/start/vtxos", body={"vtxos": [UNKNOWN_ID]})
    assert status == 404
    status, _ = ask(daemon, "POST", "/api/v1/exits/start/vtxos", body={"vtxos": ["nope"]})
    assert status == 400
    status, _ = ask(daemon, "GET", "/api/v1/exits/status/{vtxo_id}", f"/api/v1/exits/status/{UNKNOWN_ID}")
    assert status == 404

    ok(daemon, "POST", "/api/v1/exits/start/vtxos", body={"vtxos": [vtxo_id]})
    for _ in range(arkoor.vtxo.exit_depth + arkoor.vtxo.exit_delta + 1):
        answer = ok(daemon, "POST", "/api/v1/exits/progress", body={})
        if answer["exits"][0]["state"]["type"] == "claimable":
            break
        ok(daemon, "GET", "/api/v1/exits/status", "/api/v1/exits/status?history=true&transactions=true")
        bitcoind.mine(1)
    assert answer["exits"][0]["state"]["type"] == "claimable", answer

    one = f"/api/v1/exits/status/{vtxo_id}?history=true&transactions=true"
    status_doc = ok(daemon, "GET", "/api/v1/exits/status/{vtxo_id}", one)
    assert len(status_doc["transactions"]) == arkoor.vtxo.exit_depth and len(status_doc["history"]) >= 3
    # 0.6.0's listings answer what 0.1.4's do, in the configured sub-state vocabulary (0.1.4's by default;
    # test_exits.py judges the 0.6.0 vocabulary by 0.6.0's document): 0.1.4's operation is their judge.
    for listing in ("all", "live"):
        ok(daemon, "GET", "/api/v1/exits/status", f"/api/v1/exits/status/{listing}?history=true")
    vtxo_path = f"/api/v1/exits/status/vtxo/{vtxo_id}?transactions=true"
    ok(daemon, "GET", "/api/v1/exits/status/{vtxo_id}", vtxo_path)

    status, _ = ask(daemon, "POST", "/api/v1/exits/claim/all", body={"destination": "bc1qnotanaddress"})
    assert status == 400
    destination = ok(daemon, "POST", "/api/v1/onchain/addresses/next")["address"]
    ok(daemon, "POST", "/api/v1/exits/claim/vtxos", body={"destination": destination, "vtxos": [vtxo_id]})
    bitcoind.mine(1)
    assert ok(daemon, "POST", "/api/v1/exits/progress", body={})["done"]
    final = ok(daemon, "GET", "/api/v1/exits/status/{vtxo_id}", one)
    assert final["state"]["type"] == "claimed"
    ok(daemon, "GET", "/api/v1/exits/status", "/api/v1/exits/status/finished?transactions=true")
    assert ok(daemon, "GET", "/api/v1/wallet/vtxos/{id}", f"/api/v1/wallet/vtxos/{vtxo_id}")["state"] == {
        "type": "spent"
    }
