"""barkd's JSON for exits (states, transaction statuses, origins, packages, errors) in each vocabulary, for
VTXOs and wallet txs, and barkd's documents of both versions (`contract`).

The one place that knows barkd's names. `0.1.4` is the contract (barkd-openapi-0.1.4.json); `0.6.0`
(`rest.substate_vocabulary`) renders everything as barkd 0.6.0 does: its sub-state names (its migration
m0032 is the mapping), mempool origins without fee data (a package's fees are its `fee_info`), and the
0.6.0-only variants (the `canceled` and `vtxo-already-spent` states, cancel errors). barkd 0.1.4 has
neither state: in its vocabulary such an exit is not shown at all (`shown`), as barkd 0.1.4 shows a VTXO
that is not exiting.
Fee rates are sat/kvB; 0.1.4's deprecated sat/kwu fields are derived (kvB / 4).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from exitd.chain.view import BlockRef
from exitd.engine.errors import (
    BlockRetrievalFailure,
    CannotCancelExit,
    ClaimFeeExceedsOutput,
    ClaimMarketUnknown,
    ClaimMissingInputs,
    ClaimMissingSignableClause,
    ClaimSigningError,
    DustLimit,
    ExitError,
    ExitPackageBroadcastFailure,
    ExitPackageFinalizeFailure,
    InsufficientConfirmedFunds,
    InternalError,
    InvalidWalletState,
    NotExiting,
    TransactionRetrievalFailure,
    VtxoAlreadySpent,
    VtxoNotClaimable,
)
from exitd.engine.states import (
    BlockOrigin,
    ExitState,
    ExitStateKind,
    ExitTxOrigin,
    ExitTxStatus,
    MempoolOrigin,
    TxStatusKind,
    WalletOrigin,
)
from exitd.store.vtxos import StoredVtxo, VtxoState
from exitd.wallet.onchain import WalletTx

V014 = "0.1.4"
V060 = "0.6.0"
VOCABULARIES = (V014, V060)


@cache
def contract(version: str) -> dict[str, Any]:
    """The facts of barkd's OpenAPI document of `version`, as packaged with exitd (exitd/api/contract/)."""
    text = resources.files("exitd.api").joinpath(f"contract/barkd-openapi-{version}.json").read_text()
    return dict(json.loads(text))


Json = dict[str, Any]

STATE_NAMES = {
    ExitStateKind.START: "start",
    ExitStateKind.PROCESSING: "processing",
    ExitStateKind.AWAITING_DELTA: "awaiting-delta",
    ExitStateKind.CLAIMABLE: "claimable",
    ExitStateKind.CLAIM_IN_PROGRESS: "claim-in-progress",
    ExitStateKind.CLAIMED: "claimed",
    ExitStateKind.CANCELED: "canceled",
    ExitStateKind.VTXO_ALREADY_SPENT: "vtxo-already-spent",
}

TX_STATUS_NAMES = {
    V014: {
        TxStatusKind.VERIFY_INPUTS: "verify-inputs",
        TxStatusKind.AWAITING_INPUT_CONFIRMATION: "awaiting-input-confirmation",
        TxStatusKind.NEEDS_SIGNED_PACKAGE: "needs-signed-package",
        TxStatusKind.NEEDS_REPLACEMENT_PACKAGE: "needs-replacement-package",
        TxStatusKind.NEEDS_BROADCASTING: "needs-broadcasting",
        TxStatusKind.BROADCAST_WITH_CPFP: "broadcast-with-cpfp",
        TxStatusKind.CONFIRMED: "confirmed",
    },
    V060: {
        TxStatusKind.VERIFY_INPUTS: "verify-inputs",
        TxStatusKind.AWAITING_INPUT_CONFIRMATION: "awaiting-input-confirmation",
        TxStatusKind.NEEDS_SIGNED_PACKAGE: "awaiting-cpfp-broadcast",
        TxStatusKind.NEEDS_REPLACEMENT_PACKAGE: "awaiting-cpfp-broadcast",
        TxStatusKind.NEEDS_BROADCASTING: "awaiting-confirmation",
        TxStatusKind.BROADCAST_WITH_CPFP: "awaiting-confirmation",
        TxStatusKind.CONFIRMED: "confirmed",
    },
}

# barkd's ExitError tag of each variant; a subclass takes its base's (FeeBudgetExceeded: a finalize failure).
ERROR_TAGS: dict[type[ExitError], str] = {
    ExitError: "internal-error",
    InternalError: "internal-error",
    DustLimit: "dust-limit",
    InsufficientConfirmedFunds: "insufficient-confirmed-funds",
    ExitPackageBroadcastFailure: "exit-package-broadcast-failure",
    ExitPackageFinalizeFailure: "exit-package-finalize-failure",
    TransactionRetrievalFailure: "transaction-retrieval-failure",
    ClaimMissingInputs: "claim-missing-inputs",
    ClaimFeeExceedsOutput: "claim-fee-exceeds-output",
    ClaimMarketUnknown: "internal-error",
    ClaimMissingSignableClause: "claim-missing-signable-clause",
    ClaimSigningError: "claim-signing-error",
    VtxoNotClaimable: "vtxo-not-claimable",
    InvalidWalletState: "invalid-wallet-state",
    BlockRetrievalFailure: "block-retrieval-failure",
    NotExiting: "not-exiting",
    CannotCancelExit: "cannot-cancel-exit",
    VtxoAlreadySpent: "vtxo-already-spent",
}
# Variants barkd 0.1.4 lacks: shown there as the internal error they are to a 0.1.4 client.
ONLY_060 = (NotExiting, CannotCancelExit, VtxoAlreadySpent)


def kwu_from_kvb(sat_per_kvb: int) -> int:
    """barkd's deprecated sat/kwu fields: 1 vbyte is 4 weight units."""
    return sat_per_kvb // 4


def block_json(block: BlockRef | None) -> Json | None:
    return None if block is None else {"height": block.height, "hash": block.hash}


# States barkd 0.1.4 lacks: an exit in one is not shown to a 0.1.4 client at all.
ONLY_060_STATES = (ExitStateKind.CANCELED, ExitStateKind.VTXO_ALREADY_SPENT)


def shown(state: ExitState, vocab: str) -> bool:
    """Whether a client of `vocab` sees this exit at all (barkd 0.1.4 knows no canceled exit)."""
    return vocab == V060 or state.kind not in ONLY_060_STATES


def origin_json(origin: ExitTxOrigin, vocab: str) -> Json:
    if isinstance(origin, WalletOrigin):
        return {"type": "wallet", "confirmed_in": block_json(origin.confirmed_in)}
    if isinstance(origin, BlockOrigin):
        return {"type": "block", "confirmed_in": block_json(origin.confirmed_in)}
    if vocab == V060:
        return {"type": "mempool"}
    return {
        "type": "mempool",
        "fee_rate_sat_per_kvb": origin.fee_rate,
        "fee_rate": kwu_from_kvb(origin.fee_rate),
        "total_fee": origin.total_fee,
    }


def tx_status_json(status: ExitTxStatus, vocab: str) -> Json:
    kind = status.kind
    doc: Json = {"type": TX_STATUS_NAMES[vocab][kind]}
    if kind is TxStatusKind.AWAITING_INPUT_CONFIRMATION:
        doc["txids"] = list(status.txids)
    elif kind is TxStatusKind.NEEDS_REPLACEMENT_PACKAGE and vocab == V014:
        doc["min_fee_rate_sat_per_kvb"] = status.min_fee_rate
        doc["min_fee_rate_kwu"] = kwu_from_kvb(status.min_fee_rate)
        doc["min_fee"] = status.min_fee
    elif kind in (TxStatusKind.NEEDS_BROADCASTING, TxStatusKind.BROADCAST_WITH_CPFP, TxStatusKind.CONFIRMED):
        assert status.origin is not None
        doc["child_txid"] = status.child_txid
        if kind is TxStatusKind.CONFIRMED and vocab == V060:
            doc["block"] = block_json(status.block)
        doc["origin"] = origin_json(status.origin, vocab)
        if kind is TxStatusKind.CONFIRMED and vocab == V014:
            doc["block"] = block_json(status.block)
    return doc


def state_json(state: ExitState, vocab: str) -> Json:
    kind = state.kind
    doc: Json = {"type": STATE_NAMES[kind], "tip_height": state.tip_height}
    if kind is ExitStateKind.PROCESSING:
        doc["transactions"] = [
            {"txid": tx.txid, "status": tx_status_json(tx.status, vocab)} for tx in state.transactions
        ]
    elif kind is ExitStateKind.AWAITING_DELTA:
        doc["confirmed_block"] = block_json(state.confirmed_block)
        doc["claimable_height"] = state.claimable_height
    elif kind is ExitStateKind.CLAIMABLE:
        doc["claimable_since"] = block_json(state.claimable_since)
        doc["last_scanned_block"] = block_json(state.last_scanned_block)
    elif kind is ExitStateKind.CLAIM_IN_PROGRESS:
        doc["claimable_since"] = block_json(state.claimable_since)
        doc["claim_txid"] = state.claim_txid
    elif kind is ExitStateKind.CLAIMED:
        doc["txid"] = state.txid
        doc["block"] = block_json(state.block)
        # Extra (clients may ignore it): the height the claim waited for.
        doc["claimable_since"] = block_json(state.claimable_since)
    if kind in (ExitStateKind.CLAIM_IN_PROGRESS, ExitStateKind.CLAIMED) and state.claim_fee is not None:
        # Extra: what the claim tx pays (of the candidate in the mempool, or the one that confirmed).
        doc["claim_fee_sat"] = state.claim_fee
    return doc


def history_json(history: list[ExitState], vocab: str) -> list[Json]:
    return [state_json(state, vocab) for state in history if shown(state, vocab)]


def fee_info_json(origin: ExitTxOrigin | None, fee: int, package_rate: int) -> Json | None:
    """0.6.0's fee data of a CPFP package: the mempool's when the network found it there, else what exitd
    recorded of its own child (a child found in a block has no fee data: null)."""
    if isinstance(origin, MempoolOrigin):
        return {"fee_rate_sat_per_kvb": origin.fee_rate, "total_fee_sat": origin.total_fee}
    if package_rate:
        return {"fee_rate_sat_per_kvb": package_rate, "total_fee_sat": fee}
    return None


def error_tag(error: ExitError) -> str:
    return next(ERROR_TAGS[cls] for cls in type(error).__mro__ if cls in ERROR_TAGS)


def error_json(error: ExitError, vocab: str) -> Json:
    if vocab == V014 and isinstance(error, ONLY_060):
        return {"type": "internal-error", "error": str(error)}
    if vocab == V060 and isinstance(error, DustLimit):
        amount, dust = error.fields["vtxo"], error.fields["dust"]
        return {"type": "dust-limit", "vtxo": error.vtxo_id, "amount": amount, "dust": dust}
    tag = error_tag(error)
    if tag == "internal-error" and "error" not in error.fields:
        return {"type": tag, "error": str(error), **error.fields}  # the schema requires `error`
    return {"type": tag, **error.fields}


def wallet_tx_json(tx: WalletTx) -> Json:
    """barkd 0.6.0's WalletTxInfo."""
    return {
        "txid": tx.txid,
        "tx": tx.raw.hex(),
        "balance_change_sat": tx.balance_change,
        "is_cpfp": tx.is_cpfp,
        "confirmation": block_json(tx.block),
        "onchain_fee_sat": tx.fee,
    }


# barkd's VtxoStateInfo names of exitd's VTXO states.
VTXO_STATE_NAMES = {
    VtxoState.SPENDABLE: "spendable",
    VtxoState.LOCKED: "locked",
    VtxoState.SPENT: "spent",
}


def vtxo_info_json(row: StoredVtxo) -> Json:
    """barkd's WalletVtxoInfo, plus exitd's extras: `key_held` (whether this wallet can sign the claim),
    `source` (import or barkd), `protected` (the user asked the guard to protect it), `seen` (what the
    followed barkd last said of it, and when) and `gone_at` (when the user said it is gone)."""
    return {
        "id": row.vtxo_id,
        "amount_sat": row.amount_sat,
        "policy_type": row.policy_type,
        "user_pubkey": row.user_pubkey,
        "server_pubkey": row.server_pubkey,
        "expiry_height": row.expiry_height,
        "exit_delta": row.exit_delta,
        "chain_anchor": row.chain_anchor,
        "exit_depth": row.exit_depth,
        "state": {"type": VTXO_STATE_NAMES[row.state]},
        "key_held": row.key_index is not None,
        "source": row.source,
        "protected": row.protect,
        "seen": None if row.seen_state is None else {"state": row.seen_state, "at": row.seen_at},
        "gone_at": row.gone_at,
    }
