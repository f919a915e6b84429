"""The CLI's words and tables for barkd's exit JSON: levels, next actions, errors, layout."""

from typing import Any

from exitd.cli.console import exit_error_text, exit_level, funding_text, next_action, status_table, table

TXID = "ab" * 32


def confirmed(txid: str) -> dict[str, Any]:
    return {"txid": txid, "status": {"type": "confirmed", "child_txid": "c" * 64, "origin": {}, "block": {}}}


def pending(txid: str, kind: str) -> dict[str, Any]:
    return {"txid": txid, "status": {"type": kind}}


def package(txid: str) -> dict[str, Any]:
    return {"exit": {"txid": txid, "tx": ""}, "child": None}


def test_table_aligns_columns_without_trailing_blanks() -> None:
    assert table(("A", "BB"), [("xxx", "y"), ("z", "")]) == "A    BB\nxxx  y\nz"


def test_levels_count_confirmed_exit_txs_over_depth() -> None:
    txs = [package("1"), package("2"), package("3")]
    start = {"state": {"type": "start", "tip_height": 5}, "transactions": txs}
    assert exit_level(start) == "0/3"
    processing = {
        "state": {
            "type": "processing",
            "tip_height": 5,
            "transactions": [
                confirmed("1"),
                pending("2", "broadcast-with-cpfp"),
                pending("3", "verify-inputs"),
            ],
        },
        "transactions": txs,
    }
    assert exit_level(processing) == "1/3"
    claimable = {"state": {"type": "claimable"}, "transactions": txs}
    assert exit_level(claimable) == "3/3"
    assert exit_level({"state": {"type": "canceled"}, "transactions": txs}) == "-"


def test_next_action_follows_the_first_unconfirmed_tx() -> None:
    state = {"type": "processing", "transactions": [confirmed("1"), pending("2", "needs-signed-package")]}
    assert next_action(state) == "fund and broadcast a CPFP package"
    assert (
        next_action({"type": "awaiting-delta", "claimable_height": 120}) == "wait for height 120 (exit delta)"
    )
    assert "exitd claim" in next_action({"type": "claimable"})
    assert (
        next_action({"type": "claim-in-progress", "claim_txid": TXID})
        == f"wait for claim tx {TXID[:8]}…{TXID[-4:]} to confirm"  # narrow; --json has it whole
    )
    assert next_action({"type": "claimed"}) == "-"


def test_exit_errors_in_one_line() -> None:
    assert exit_error_text(None) == ""
    assert (
        exit_error_text({"type": "insufficient-confirmed-funds", "needed": 1000, "available": 10})
        == "insufficient-confirmed-funds needed=1000 available=10"
    )
    text = exit_error_text({"type": "exit-package-broadcast-failure", "txid": "t", "error": "too low"})
    assert text == "exit-package-broadcast-failure txid=t: too low"


def test_status_table_joins_amounts_and_says_what_to_do_when_empty() -> None:
    assert "exitd import" in status_table([], {})
    status = {"vtxo_id": f"{TXID}:0", "state": {"type": "start"}, "transactions": [package("1")]}
    lines = status_table([status], {f"{TXID}:0": 12345}).split("\n")
    assert lines[0].split() == ["VTXO", "AMOUNT", "STATE", "LEVEL", "NEXT", "ERROR"]
    assert lines[1].split()[:5] == [f"{TXID}:0", "12,345", "sat", "start", "0/1"]


def test_funding_plan_in_one_line() -> None:
    split = {
        "blocks_needed": 3,
        "extra_blocks": 1,
        "coins_needed": 9,
        "coin_size_sat": 2308,
        "coins_available": 0,
        "coins_arriving": 10,
        "missing_sat": 0,
        "split_txid": TXID,
    }
    assert funding_text(split) == (
        "funding: 9 coins needed (up to 2,308 sat each), 0 available, 10 arriving next block; "
        f"1 block beyond the 3-block limit; split {TXID} confirming"
    )
    on_time = {**split, "extra_blocks": 0, "blocks_needed": 1, "split_txid": None}
    assert funding_text(on_time).endswith("; one level per block (1 block left)")
    short = {**split, "extra_blocks": None, "missing_sat": 4870, "split_txid": None}
    assert funding_text(short).endswith("; the wallet cannot finish the exits; 4,870 sat missing")
