"""Exit states: JSON round trips, and every shape validated against barkd's own schemas."""

import pytest

from exitd.chain.view import BlockRef
from exitd.engine.states import (
    VERIFY_INPUTS,
    BlockOrigin,
    ExitState,
    ExitStateKind,
    ExitTx,
    ExitTxStatus,
    MempoolOrigin,
    TxStatusKind,
    WalletOrigin,
)
from tests.support.barkd_schema import assert_valid

BLOCK = BlockRef(105, "ab" * 32)
TXID = "cd" * 32

TX_STATUSES = [
    VERIFY_INPUTS,
    ExitTxStatus(TxStatusKind.AWAITING_INPUT_CONFIRMATION, txids=(TXID,)),
    ExitTxStatus(TxStatusKind.NEEDS_SIGNED_PACKAGE),
    ExitTxStatus(TxStatusKind.NEEDS_REPLACEMENT_PACKAGE, min_fee_rate=2004, min_fee=700),
    ExitTxStatus(TxStatusKind.NEEDS_BROADCASTING, child_txid=TXID, origin=WalletOrigin()),
    ExitTxStatus(TxStatusKind.BROADCAST_WITH_CPFP, child_txid=TXID, origin=MempoolOrigin(3000, 900)),
    ExitTxStatus(TxStatusKind.CONFIRMED, child_txid=TXID, origin=WalletOrigin(BLOCK), block=BLOCK),
    ExitTxStatus(TxStatusKind.CONFIRMED, child_txid=TXID, origin=BlockOrigin(BLOCK), block=BLOCK),
]

STATES = [
    ExitState(ExitStateKind.START, 100),
    ExitState(ExitStateKind.PROCESSING, 101, transactions=tuple(ExitTx(TXID, s) for s in TX_STATUSES)),
    ExitState(ExitStateKind.AWAITING_DELTA, 105, confirmed_block=BLOCK, claimable_height=111),
    ExitState(ExitStateKind.CLAIMABLE, 111, claimable_since=BLOCK),
    ExitState(ExitStateKind.CLAIMABLE, 112, claimable_since=BLOCK, last_scanned_block=BLOCK),
    ExitState(ExitStateKind.CLAIM_IN_PROGRESS, 112, claimable_since=BLOCK, claim_txid=TXID),
    ExitState(ExitStateKind.CLAIMED, 113, claimable_since=BLOCK, txid=TXID, block=BLOCK),
]


@pytest.mark.parametrize("status", TX_STATUSES, ids=lambda s: s.kind.value)
def test_tx_status_json(status: ExitTxStatus) -> None:
    doc = status.to_json()
    assert_valid(doc, "ExitTxStatus")
    assert ExitTxStatus.from_json(doc) == status
    assert_valid(status.to_json("0.6.0"), "ExitTxStatus", "0.6.0")


@pytest.mark.parametrize("state", STATES, ids=lambda s: s.kind.value)
def test_state_json(state: ExitState) -> None:
    doc = state.to_json()
    assert_valid(doc, "ExitState")
    assert ExitState.from_json(doc) == state


def test_deprecated_kwu_fields() -> None:
    doc = TX_STATUSES[3].to_json()
    assert doc["min_fee_rate_kwu"] == 501 and doc["min_fee_rate_sat_per_kvb"] == 2004
    assert MempoolOrigin(3000, 900).to_json()["fee_rate"] == 750


def test_060_vocabulary_mapping() -> None:
    names = [s.to_json("0.6.0")["type"] for s in TX_STATUSES]
    assert names == [
        "verify-inputs",
        "awaiting-input-confirmation",
        "awaiting-cpfp-broadcast",
        "awaiting-cpfp-broadcast",
        "awaiting-confirmation",
        "awaiting-confirmation",
        "confirmed",
        "confirmed",
    ]


def test_same_as_ignores_tip_and_scan_cursor() -> None:
    a = ExitState(ExitStateKind.CLAIMABLE, 111, claimable_since=BLOCK)
    assert a.same_as(ExitState(ExitStateKind.CLAIMABLE, 150, claimable_since=BLOCK, last_scanned_block=BLOCK))
    assert not a.same_as(ExitState(ExitStateKind.CLAIMABLE, 111, claimable_since=BlockRef(106, "00" * 32)))
