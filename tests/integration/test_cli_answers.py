"""What the CLI says it did, against the real daemon: which exits started, restarted or were skipped; what a
claim spent, paid and left; packages a cancel cannot call back; the VTXOs; sends and drains; live views."""

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest

from exitd.cli.main import main
from exitd.regtest.forge import Forge, UserKey
from exitd.regtest.node import MINER_WALLET, NodeFlavor, RegtestNode
from tests.support.daemon import DaemonProcess
from tests.support.exits import (
    advance_until,
    all_in,
    anchor_block,
    daemon_keychain,
    fund_wallet,
    progress,
    spend_anchors,
)
from tests.support.vectors import V2_VECTORS

pytestmark = pytest.mark.bitcoind

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], daemon: DaemonProcess) -> Iterator[Cli]:
    """`exitd ARGS --config <the daemon's>` in this process: (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        code = main([*args, "--config", str(daemon.config_path)])
        out, err = capsys.readouterr()
        return code, out, err

    yield run


def vector_id(index: int) -> str:
    return str(V2_VECTORS[index].derived["vtxo_id"])


def owned_key(daemon: DaemonProcess, index: int) -> UserKey:
    return UserKey.from_secret(daemon_keychain(daemon).seckey(index))


def import_hex(daemon: DaemonProcess, *hexes: str) -> list[str]:
    status, imported = daemon.request("POST", "/api/v1/wallet/import-vtxo", {"vtxos": list(hexes)})
    assert status == 200, imported
    return [v["id"] for v in imported]


@pytest.mark.parametrize("bitcoind", [NodeFlavor.PLAIN], indirect=True, ids=["plain"])
def test_import_of_a_spent_anchor_asks_for_its_block_and_takes_it(cli: Cli, bitcoind: RegtestNode) -> None:
    forge = Forge(bitcoind)
    board = forge.board(30_000)
    block = anchor_block(bitcoind, board)
    spend_anchors(bitcoind, forge, board)
    code, out, err = cli("import", board.hex)
    assert code != 0 and out == ""
    assert "--anchor-block <hash|height>" in err and board.vtxo.anchor_point.txid_hex in err
    height = str(bitcoind.rpc("getblockheader", block)["height"])
    for named in (height, block):
        code, out, err = cli("import", board.hex, "--anchor-block", named)
        assert code == 0 and str(board.id) in out, err


def test_start_says_what_started_restarted_and_was_skipped(cli: Cli, daemon: DaemonProcess) -> None:
    ids = import_hex(daemon, *(V2_VECTORS[i].data.hex() for i in range(3)))
    assert ids == [vector_id(0), vector_id(1), vector_id(2)]

    code, out, _ = cli("start", "--force", ids[0])
    assert (code, out) == (0, f"started 1 exit:\n  {ids[0]}\n")
    code, out, _ = cli("start", "--force", ids[0], ids[1])
    assert code == 0
    lines = out.strip().split("\n")
    assert lines[:3] == ["started 1 exit:", f"  {ids[1]}", "skipped 1:"]
    assert lines[3].startswith(f"  {ids[0]}  its exit is already ") and len(lines) == 4
    assert cli("cancel", ids[1])[0] == 0

    code, out, _ = cli(
        "start", "--force", "--all", "--json"
    )  # the spendable VTXOs: ids[0] is exiting already
    outcome = json.loads(out)
    assert code == 0 and outcome["message"] == "Exit started successfully"
    assert (sorted(outcome["started"]), outcome["restarted"]) == (sorted(ids[1:]), [ids[1]])
    assert outcome["skipped"] == []
    code, out, _ = cli("start", "--force", "--all")
    assert (code, out) == (0, "no exit started\n")
    code, out, _ = cli("start", "--force", ids[2])
    assert (code, out.split("\n")[:2]) == (0, ["no exit started", "skipped 1:"])


def test_status_live_hides_finished_exits(cli: Cli, daemon: DaemonProcess) -> None:
    ids = import_hex(daemon, V2_VECTORS[0].data.hex(), V2_VECTORS[1].data.hex())
    assert cli("start", "--force", ids[0])[0] == 0
    assert cli("start", "--force", ids[1])[0] == 0 and cli("cancel", ids[1])[0] == 0

    everything = {s["vtxo_id"] for s in json.loads(cli("status", "--json")[1])}
    live = {s["vtxo_id"] for s in json.loads(cli("status", "--live", "--json")[1])}
    assert live == {ids[0]} and everything >= live
    assert ids[1] not in cli("status", "--live")[1] and ids[0] in cli("status", "--live")[1]


def test_cancel_warns_of_a_package_already_out(
    cli: Cli, daemon: DaemonProcess, bitcoind: RegtestNode
) -> None:
    fund_wallet(daemon, bitcoind, coins=2)
    chain = Forge(bitcoind).arkoor_chain(30_000, owned_key(daemon, 0), hops=1)  # depth 3
    (vtxo,) = import_hex(daemon, chain.hex)
    assert cli("start", "--force", vtxo)[0] == 0
    answer = progress(daemon)
    first = answer["exits"][0]["state"]["transactions"][0]
    assert first["status"]["type"] == "broadcast-with-cpfp"
    assert first["txid"] in bitcoind.rpc("getrawmempool")

    code, out, _ = cli("cancel", vtxo)
    assert code == 0
    lines = out.strip().split("\n")
    assert lines[0] == f"canceled the exit of {vtxo}"
    assert lines[1].startswith("warning: 1 package of this exit already broadcast will still confirm")
    assert lines[2] == f"  exit tx {first['txid']} (child {first['status']['child_txid']})"
    bitcoind.mine(1)  # the package was not called back: it confirms
    assert bitcoind.rpc("getrawtransaction", first["txid"], True)["confirmations"] == 1


def test_claim_says_what_it_spent_paid_and_left(
    cli: Cli, daemon: DaemonProcess, bitcoind: RegtestNode
) -> None:
    fund_wallet(daemon, bitcoind, coins=1)
    board = Forge(bitcoind).board(50_000, owned_key(daemon, 0))
    (vtxo,) = import_hex(daemon, board.hex)
    (stuck,) = import_hex(daemon, V2_VECTORS[0].data.hex())  # its inputs are on no chain: never claimable
    assert cli("start", "--force", vtxo)[0] == 0 and cli("start", "--force", stuck)[0] == 0
    advance_until(
        daemon,
        bitcoind,
        lambda a: {e["vtxo_id"]: e["state"]["type"] for e in a["exits"]}[vtxo] == "claimable",
    )
    destination = bitcoind.rpc("getnewaddress", wallet=MINER_WALLET)

    code, out, _ = cli("claim", "--all", "--to", destination, "--json")
    assert code == 0
    outcome = json.loads(out)
    txid = outcome["txid"]
    entry = bitcoind.rpc("getmempoolentry", txid)
    fee = int(Decimal(str(entry["fees"]["base"])) * 100_000_000)
    tx = bitcoind.rpc("getrawtransaction", txid, True)
    (output,) = tx["vout"]
    out_sat = int(Decimal(str(output["value"])) * 100_000_000)
    assert outcome["vtxos"] == [vtxo] and outcome["amount_sat"] == 50_000
    assert (outcome["fee_sat"], outcome["net_sat"]) == (fee, out_sat)
    ((not_claimed),) = outcome["not_claimed"]
    assert not_claimed["vtxo_id"] == stuck and not_claimed["reason"].startswith("its exit is ")
    state = {s["vtxo_id"]: s["state"] for s in json.loads(cli("status", "--json")[1])}[vtxo]
    assert (state["type"], state["claim_txid"]) == ("claim-in-progress", txid)
    assert cli("claim", "--all", "--to", destination)[0] == 1  # nothing claimable is left: refused


def test_claim_text_names_txid_amounts_and_fee(
    cli: Cli, daemon: DaemonProcess, bitcoind: RegtestNode
) -> None:
    fund_wallet(daemon, bitcoind, coins=1)
    (vtxo,) = import_hex(daemon, Forge(bitcoind).board(40_000, owned_key(daemon, 0)).hex)
    assert cli("start", "--force", vtxo)[0] == 0
    advance_until(daemon, bitcoind, all_in("claimable"))
    destination = bitcoind.rpc("getnewaddress", wallet=MINER_WALLET)
    code, out, _ = cli("claim", vtxo, "--to", destination)
    lines = out.strip().split("\n")
    txid = lines[1].removeprefix("claim txid ")
    fee = int(Decimal(str(bitcoind.rpc("getmempoolentry", txid)["fees"]["base"])) * 100_000_000)
    assert code == 0
    assert lines[0] == (
        f"claimed 1 exit to {destination}: 40,000 sat in, fee {fee:,} sat, {40_000 - fee:,} sat out"
    )
    assert lines[2] == f"  {vtxo}" and len(lines) == 3


def test_send_and_drain_say_amount_fee_and_txid(
    cli: Cli, daemon: DaemonProcess, bitcoind: RegtestNode
) -> None:
    fund_wallet(daemon, bitcoind, coins=2)
    destination = bitcoind.rpc("getnewaddress", wallet=MINER_WALLET)

    code, out, _ = cli("send", destination, "25000")
    first, second = out.strip().split("\n")
    txid = second.removeprefix("txid ")
    fee = int(Decimal(str(bitcoind.rpc("getmempoolentry", txid)["fees"]["base"])) * 100_000_000)
    assert code == 0 and first == f"sent 25,000 sat to {destination}, fee {fee:,} sat"
    bitcoind.mine(1)

    code, out, _ = cli("drain", destination, "--json")
    outcome = json.loads(out)
    entry = bitcoind.rpc("getmempoolentry", outcome["txid"])
    tx = bitcoind.rpc("getrawtransaction", outcome["txid"], True)
    assert code == 0 and outcome["destination"] == destination
    assert outcome["fee_sat"] == int(Decimal(str(entry["fees"]["base"])) * 100_000_000)
    assert outcome["amount_sat"] == int(Decimal(str(tx["vout"][0]["value"])) * 100_000_000)
    assert len(tx["vout"]) == 1
    total = 2 * 1_000_000 - 25_000 - fee  # the two coins, less the send and its fee
    assert outcome["amount_sat"] + outcome["fee_sat"] == total


def test_progress_wait_is_a_live_view_block_by_block(daemon: DaemonProcess, bitcoind: RegtestNode) -> None:
    fund_wallet(daemon, bitcoind, coins=1)
    (vtxo,) = import_hex(daemon, Forge(bitcoind).board(50_000, owned_key(daemon, 0)).hex)
    assert daemon.request("POST", "/api/v1/exits/start/vtxos", {"vtxos": [vtxo]})[0] == 200
    waiting = subprocess.Popen(
        daemon.command("progress", "--wait"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert waiting.stdout is not None
        # Its first view before the first block: on a loaded machine the command may start after it.
        first = waiting.stdout.readline()
        for _ in range(40):  # a block a second until the exit is claimable (depth 1 + delta 6)
            if waiting.poll() is not None:
                break
            bitcoind.mine(1)
            time.sleep(1.0)
        out, err = waiting.communicate(timeout=30)
        out = first + out
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    lines = out.splitlines()
    assert waiting.returncode == 0, err
    assert "Ctrl-C stops waiting, not the exits" in err
    views = [line.split() for line in lines if line.startswith("height")]
    heights = [int(v[1]) for v in views]
    # A line each time the exit changed, at the height it was seen (a pipe gets no escape codes).
    assert heights == sorted(heights) and len(set(heights)) >= 2 and "\x1b" not in out
    assert all(v[2] == vtxo for v in views)
    assert views[0][3] == "processing" and views[-1][3] == "claimable"
    assert lines[-1].startswith("all exit txs confirmed; claimable from height")
