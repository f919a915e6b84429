"""/metrics read by prometheus_client's own parser: the series an operator alerts on are there and true."""

import time
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exitd.engine.alerts import AlertEvent
from exitd.regtest.forge import Forge, UserKey
from exitd.regtest.node import RegtestNode
from tests.support.daemon import DaemonProcess, running_daemon
from tests.support.exits import advance_until, all_in, daemon_keychain, fund_wallet

pytestmark = pytest.mark.bitcoind

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(daemon: DaemonProcess) -> tuple[dict[str, str], Samples]:
    """(family name -> type, (sample name, sorted labels) -> value), as prometheus_client reads them."""
    status, text = daemon.request("GET", "/metrics")
    assert status == 200, text
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return types, samples


def test_the_series_an_operator_alerts_on(daemon: DaemonProcess, bitcoind: RegtestNode) -> None:
    bitcoind.mine(1)
    time.sleep(2)  # at least one long poll for the next block has come back
    types, samples = scrape(daemon)
    assert types["exitd_node_up"] == "gauge" and samples[("exitd_node_up", ())] == 1
    tip = bitcoind.rpc("getblockchaininfo")
    assert samples[("exitd_node_last_block_height", ())] == tip["blocks"]
    header = bitcoind.rpc("getblockheader", tip["bestblockhash"])
    assert samples[("exitd_node_last_block_timestamp_seconds", ())] == header["time"]

    assert types["exitd_cycle_duration_seconds"] == "histogram"
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in samples.items()
        if name == "exitd_cycle_duration_seconds_bucket"
    )
    assert buckets[-1][0] == float("inf") and [v for _, v in buckets] == sorted(v for _, v in buckets)
    assert buckets[-1][1] == samples[("exitd_cycle_duration_seconds_count", ())] >= 1

    # Latency leaves out the long polls for the next block: they would weigh a second each.
    assert types["exitd_rpc_latency_seconds"] == "summary"
    count = samples[("exitd_rpc_latency_seconds_count", ())]
    assert 0 < count < samples[("exitd_rpc_requests_total", ())]
    assert samples[("exitd_rpc_latency_seconds_sum", ())] / count < 0.2

    assert types["exitd_alerts"] == "counter"
    events = {
        dict(labels)["event"]: v for (name, labels), v in samples.items() if name == "exitd_alerts_total"
    }
    assert events == dict.fromkeys((e.value for e in AlertEvent), 0.0)


def test_balances_and_last_block_stay_while_the_node_is_down(
    tmp_path: Path, private_bitcoind: RegtestNode
) -> None:
    private_bitcoind.fund_miner()
    with running_daemon(tmp_path / "exitd", private_bitcoind) as daemon:
        fund_wallet(daemon, private_bitcoind, coins=1, btc="0.002")
        deadline = time.monotonic() + 30
        while scrape(daemon)[1].get(("exitd_wallet_balance_sat", (("state", "confirmed"),))) != 200_000:
            assert time.monotonic() < deadline, "the balance never showed"
            time.sleep(0.2)
        _, up = scrape(daemon)
        private_bitcoind.stop()
        types, down = scrape(daemon)
        assert down[("exitd_node_up", ())] == 0 and up[("exitd_node_up", ())] == 1
        kept = [k for k in up if k[0] in ("exitd_wallet_balance_sat", "exitd_node_last_block_height")]
        assert len(kept) == 5 and all(down[k] == up[k] for k in kept)
        assert "exitd_node_last_block_timestamp_seconds" in types
        private_bitcoind.start()


def test_alerts_are_counted_by_event(daemon: DaemonProcess, bitcoind: RegtestNode) -> None:
    fund_wallet(daemon, bitcoind, coins=1)
    owner = UserKey.from_secret(daemon_keychain(daemon).seckey(0))
    board = Forge(bitcoind).board(50_000, owner)
    status, imported = daemon.request("POST", "/api/v1/wallet/import-vtxo", {"vtxos": [board.hex]})
    assert status == 200, imported
    assert daemon.request("POST", "/api/v1/exits/start/vtxos", {"vtxos": [imported[0]["id"]]})[0] == 200
    advance_until(daemon, bitcoind, all_in("claimable"))
    deadline = time.monotonic() + 20
    while scrape(daemon)[1][("exitd_alerts_total", (("event", "exit-claimable"),))] != 1:
        assert time.monotonic() < deadline, "the exit-claimable alert was not counted"
        time.sleep(0.2)
    _, samples = scrape(daemon)
    assert samples[("exitd_alerts_total", (("event", "exit-claimed"),))] == 0
    assert samples[("exitd_fees_paid_sat_total", (("kind", "cpfp"),))] > 0
    assert Decimal(samples[("exitd_exits", (("state", "claimable"),))]) == 1
