"""A full exit in each vocabulary (`rest.substate_vocabulary`), every answer judged by barkd's document of
that version: the status is one it documents for the operation, the body valid against its schema. The exit
meets what changes the shapes: a foreign CPFP child adopted from the mempool, a package replaced at a higher
rate, a reorg that takes a confirmed level back, a canceled exit, a claim."""

from __future__ import annotations

import http.client
from pathlib import Path
from typing import Any

import pytest

from exitd.ark.exit_tx import build_exit_chain
from exitd.regtest.forge import Forge
from exitd.regtest.node import RegtestNode
from tests.support.barkd_schema import assert_answer
from tests.support.daemon import DaemonProcess, running_daemon
from tests.support.exits import fund_wallet, owned, package_rate, wallet_address

pytestmark = [pytest.mark.bitcoind, pytest.mark.slow]

UNKNOWN_ID = "11" * 32 + ":0"
# barkd 0.1.4's sub-state names 0.6.0 renamed: a 0.6.0 client must never meet one.
NAMES_014_ONLY = {
    "needs-signed-package",
    "needs-replacement-package",
    "needs-broadcasting",
    "broadcast-with-cpfp",
}


class Client:
    """Asks the daemon as a barkd client of `vocab` would, judging every answer by that vocabulary's
    document; keeps every answer body for the checks of the whole run."""

    def __init__(self, daemon: DaemonProcess, vocab: str) -> None:
        self.daemon = daemon
        self.vocab = vocab
        self.answers: list[tuple[str, Any]] = []

    def ask(self, method: str, template: str, path: str | None = None, body: Any = None) -> tuple[int, Any]:
        status, answer = self.daemon.request(method, path or template, body)
        assert_answer(method, template, status, answer, self.vocab, whole=True)
        self.answers.append((template, answer))
        return status, answer

    def ok(self, method: str, template: str, path: str | None = None, body: Any = None) -> Any:
        status, answer = self.ask(method, template, path, body)
        assert status == 200, answer
        return answer

    def progress(self, **body: Any) -> dict[str, Any]:
        return dict(self.ok("POST", "/api/v1/exits/progress", body=body))

    def look(self, vtxo_ids: list[str]) -> dict[str, Any]:
        """Every status endpoint, plain and with histories and transactions; the listing by VTXO id."""
        listing: dict[str, Any] = {}
        for query in ("?history=true&transactions=true", "", "?transactions=true"):
            for which in ("all", "live", "finished"):
                template = f"/api/v1/exits/status/{which}"
                for e in self.ok("GET", template, f"{template}{query}"):
                    listing.setdefault(e["vtxo_id"], e)
            if self.vocab == "0.1.4":
                self.ok("GET", "/api/v1/exits/status", f"/api/v1/exits/status{query}")
            for vtxo_id in vtxo_ids:
                for template in ("/api/v1/exits/status/{vtxo_id}", "/api/v1/exits/status/vtxo/{vtxo_id}"):
                    self.ask("GET", template, template.replace("{vtxo_id}", vtxo_id) + query)
        self.ok("GET", "/api/v1/onchain/transactions")
        self.ok("GET", "/api/v1/wallet/vtxos")
        return listing


def redirect_of(daemon: DaemonProcess, path: str) -> tuple[int, str | None, bytes]:
    """Status, Location and body of one GET, the redirect not followed."""
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {daemon.token}"})
        response = conn.getresponse()
        return response.status, response.getheader("Location"), response.read()
    finally:
        conn.close()


def tx_kinds(answer: dict[str, Any]) -> set[str]:
    return {t["status"]["type"] for e in answer["exits"] for t in e["state"].get("transactions", [])}


@pytest.mark.parametrize("vocab", ["0.1.4", "0.6.0"])
def test_full_exit_in_each_vocabulary(tmp_path: Path, private_bitcoind: RegtestNode, vocab: str) -> None:
    node = private_bitcoind
    node.fund_miner()
    vocabulary = {"EXITD_REST_SUBSTATE_VOCABULARY": vocab}
    with running_daemon(tmp_path / "exitd", node, env=vocabulary) as daemon:
        client = Client(daemon, vocab)
        fund_wallet(daemon, node, coins=6)
        forge = Forge(node)
        arkoor = forge.arkoor_chain(30_000, owned(daemon, 0), hops=1)  # three levels
        board = forge.board(45_000, owned(daemon, 1))
        dropped = forge.arkoor_chain(31_000, owned(daemon, 2), hops=1)
        # Someone else broadcasts the board's exit tx with a child of their own before exitd starts.
        (board_tx,) = [t.tx for t in build_exit_chain(board.vtxo).txs]
        foreign = forge.cpfp_child(board_tx, fee_rate=50)
        result = node.rpc("submitpackage", [board_tx.serialize().hex(), foreign.serialize().hex()])
        assert result["package_msg"] == "success"
        hexes = [v.hex for v in (arkoor, board, dropped)]
        imported = client.ok("POST", "/api/v1/wallet/import-vtxo", body={"vtxos": hexes})
        ids = [v["id"] for v in imported]
        x, b, c = ids
        status, _ = client.ask("GET", "/api/v1/exits/fee", f"/api/v1/exits/fee?vtxo_ids={UNKNOWN_ID}")
        assert status == 400  # an unknown VTXO is bad input to the estimate, as barkd answers
        client.ok("GET", "/api/v1/exits/fee", f"/api/v1/exits/fee?vtxo_ids={x}")
        client.ok("POST", "/api/v1/exits/start/vtxos", body={"vtxos": ids})

        first = client.progress(fee_rate=2000)  # the foreign child pays far more: adopted
        mine = next(e for e in first["exits"] if e["vtxo_id"] == x)["state"]["transactions"][0]["status"]
        theirs = next(e for e in first["exits"] if e["vtxo_id"] == b)["state"]["transactions"][0]["status"]
        assert theirs["child_txid"] == foreign.GetTxid()[::-1].hex() and theirs["origin"]["type"] == "mempool"
        # Replaced: a target three times the package's rate.
        second = client.progress(fee_rate=3 * package_rate(node, mine["child_txid"]))
        replaced = next(e for e in second["exits"] if e["vtxo_id"] == x)["state"]["transactions"][0]["status"]
        assert replaced["child_txid"] != mine["child_txid"]
        assert client.ok("POST", "/api/v1/exits/cancel/{vtxo_id}", f"/api/v1/exits/cancel/{c}")
        listing = client.look(ids)
        adopted = listing[b]["transactions"][0]["child"]
        if vocab == "0.6.0":
            assert adopted["origin"] == {"type": "mempool"}
            assert adopted["fee_info"]["fee_rate_sat_per_kvb"] >= 49_000
            assert listing[c]["state"]["type"] == "canceled"
        else:
            assert adopted["origin"]["fee_rate_sat_per_kvb"] >= 49_000 and "fee_info" not in adopted
            assert c not in listing  # barkd 0.1.4 has no canceled exit: not exiting
            assert client.ask("GET", "/api/v1/exits/status/{vtxo_id}", f"/api/v1/exits/status/{c}")[0] == 404

        # Levels confirm; then the last block is taken back and the exit still completes.
        node.mine(1)
        client.progress()
        node.mine(1)
        client.progress()
        node.rpc("invalidateblock", node.rpc("getblockhash", node.height()))
        client.progress()
        client.look(ids)
        for _ in range(40):
            answer = client.progress()
            if answer["exits"] and all(e["state"]["type"] == "claimable" for e in answer["exits"]):
                break
            node.mine(1)
        else:
            raise AssertionError(f"not claimable: {answer}")
        client.look(ids)
        client.ok("POST", "/api/v1/exits/claim/all", body={"destination": wallet_address(daemon)})
        node.mine(1)
        client.progress()
        final = client.look(ids)
        assert {final[i]["state"]["type"] for i in (x, b)} == {"claimed"}

        status, location, body = redirect_of(daemon, "/api/v1/exits/status?history=true")
        if vocab == "0.6.0":  # moved to /status/all, query and all
            assert (status, location, body) == (308, "/api/v1/exits/status/all?history=true", b"")
            assert_answer("GET", "/api/v1/exits/status", status, "", vocab)
        else:
            assert status == 200
        seen = repr(client.answers)
        assert ("needs-signed-package" in seen or "broadcast-with-cpfp" in seen) == (vocab == "0.1.4")
        if vocab == "0.6.0":
            assert not any(f'"{name}"' in seen or f"'{name}'" in seen for name in NAMES_014_ONLY)
