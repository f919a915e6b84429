"""barkd's JSON for exits, in each vocabulary, validated against barkd's own document of that version."""

import pytest

from exitd.api.shapes import (
    ERROR_TAGS,
    V014,
    V060,
    error_json,
    fee_info_json,
    history_json,
    origin_json,
    shown,
    state_json,
    tx_status_json,
)
from exitd.engine import errors
from exitd.engine.states import ExitState, ExitStateKind, MempoolOrigin, WalletOrigin
from tests.support.barkd_schema import assert_valid
from tests.support.exit_states import STATES, TX_STATUSES, TXID

ERRORS = [
    errors.InternalError("boom"),
    errors.DustLimit(TXID + ":0", 200, 330),
    errors.InsufficientConfirmedFunds(5000, 12),
    errors.ExitPackageBroadcastFailure(TXID, "rejected"),
    errors.ExitPackageFinalizeFailure("nope"),
    errors.FeeBudgetExceeded(1000, 2000, 0.5),
    errors.TransactionRetrievalFailure(TXID, "x"),
    errors.ClaimMissingInputs(),
    errors.ClaimFeeExceedsOutput(10, 5, 2000, 0, 1000),
    errors.ClaimMarketUnknown(144, 5000),
    errors.ClaimMarketUnknown(144, None),
    errors.ClaimMissingSignableClause(TXID + ":0", "why"),
    errors.ClaimSigningError("s"),
    errors.VtxoNotClaimable(TXID + ":0", "processing"),
    errors.InvalidWalletState("w"),
    errors.BlockRetrievalFailure(7, "gone"),
    errors.NotExiting(TXID + ":0"),
    errors.CannotCancelExit(TXID + ":0", "claimable", "it is claimable"),
]


@pytest.mark.parametrize("vocab", [V014, V060])
@pytest.mark.parametrize("state", STATES, ids=lambda s: s.kind.value)
def test_every_state_is_valid_in_each_vocabulary(state: ExitState, vocab: str) -> None:
    if not shown(state, vocab):
        assert state.kind is ExitStateKind.CANCELED and vocab == V014
        return
    assert_valid(state_json(state, vocab), "ExitState", vocab)


@pytest.mark.parametrize("vocab", [V014, V060])
def test_every_tx_status_and_origin_is_valid_in_each_vocabulary(vocab: str) -> None:
    for status in TX_STATUSES:
        assert_valid(tx_status_json(status, vocab), "ExitTxStatus", vocab)
        if status.origin is not None:
            assert_valid(origin_json(status.origin, vocab), "ExitTxOrigin", vocab)


def test_060_names_and_fee_data() -> None:
    names = [tx_status_json(s, V060)["type"] for s in TX_STATUSES]
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
    assert origin_json(MempoolOrigin(3000, 900), V060) == {"type": "mempool"}
    assert fee_info_json(MempoolOrigin(3000, 900), 0, 0) == {
        "fee_rate_sat_per_kvb": 3000,
        "total_fee_sat": 900,
    }
    assert fee_info_json(WalletOrigin(), 400, 2000) == {"fee_rate_sat_per_kvb": 2000, "total_fee_sat": 400}
    assert_valid(fee_info_json(WalletOrigin(), 400, 2000), "FeeInfo", V060)


def test_014_deprecated_kwu_fields() -> None:
    doc = tx_status_json(TX_STATUSES[3], V014)
    assert doc["min_fee_rate_kwu"] == 501 and doc["min_fee_rate_sat_per_kvb"] == 2004
    assert origin_json(MempoolOrigin(3000, 900), V014)["fee_rate"] == 750


def test_history_follows_the_vocabulary() -> None:
    """History entries are rendered like the state: a 0.6.0 client never meets a 0.1.4 sub-state name."""
    history = history_json(STATES, V060)
    for entry in history:
        assert_valid(entry, "ExitState", V060)
    names = {tx["status"]["type"] for s in history for tx in s.get("transactions", [])}
    assert names.isdisjoint({"needs-signed-package", "broadcast-with-cpfp", "needs-broadcasting"})
    assert [s["type"] for s in history_json(STATES, V014)] == [
        s.kind.value for s in STATES if s.kind is not ExitStateKind.CANCELED
    ]


@pytest.mark.parametrize("vocab", [V014, V060])
@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_every_error_is_valid_in_each_vocabulary(error: errors.ExitError, vocab: str) -> None:
    assert_valid(error_json(error, vocab), "ExitError", vocab)


def test_every_exit_error_class_has_a_tag() -> None:
    classes = {
        cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.ExitError)
    }
    assert all(any(c in ERROR_TAGS for c in cls.__mro__[:2]) for cls in classes)


def test_a_claim_waiting_for_a_market_is_barkds_internal_error_with_the_message() -> None:
    error = errors.ClaimMarketUnknown(144, 5000)
    doc = error_json(error, V060)
    assert doc["type"] == "internal-error" and doc["error"] == str(error)
    assert "no fee estimate for 144 blocks" in doc["error"] and doc["next_block"] == 5000
