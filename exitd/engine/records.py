"""Exit states and errors as the store keeps them: exitd's own JSON records, not barkd's wire shapes.

The store holds a state in one text column and appends each state an exit leaves to its history (SQLite
moves the JSON itself), so a record is plain JSON; barkd's names and shapes may change with its versions
(exitd/api/shapes.py follows them) while these records only change through an alembic revision.
Blocks are [height, hash]; absent keys are the defaults of the dataclass fields.
"""

from __future__ import annotations

import json
from typing import Any

from exitd.chain.view import BlockRef
from exitd.engine.errors import ClaimFeeExceedsOutput, ClaimHeld, ClaimMarketUnknown, ExitError
from exitd.engine.states import (
    BlockOrigin,
    ExitState,
    ExitStateKind,
    ExitTx,
    ExitTxOrigin,
    ExitTxStatus,
    MempoolOrigin,
    TxStatusKind,
    WalletOrigin,
)

Record = dict[str, Any]


def _block(block: BlockRef | None) -> list[Any] | None:
    return None if block is None else [block.height, block.hash]


def _block_of(data: Any) -> BlockRef | None:
    return None if data is None else BlockRef(int(data[0]), str(data[1]))


def _without_none(record: Record) -> Record:
    return {key: value for key, value in record.items() if value is not None}


def origin_record(origin: ExitTxOrigin) -> Record:
    if isinstance(origin, WalletOrigin):
        return _without_none({"kind": "wallet", "block": _block(origin.confirmed_in)})
    if isinstance(origin, MempoolOrigin):
        return {"kind": "mempool", "fee_rate": origin.fee_rate, "total_fee": origin.total_fee}
    return {"kind": "block", "block": _block(origin.confirmed_in)}


def origin_of(record: Record) -> ExitTxOrigin:
    kind = record["kind"]
    if kind == "wallet":
        return WalletOrigin(_block_of(record.get("block")))
    if kind == "mempool":
        return MempoolOrigin(int(record["fee_rate"]), int(record["total_fee"]))
    if kind == "block":
        block = _block_of(record["block"])
        assert block is not None
        return BlockOrigin(block)
    raise ValueError(f"unknown exit tx origin {kind!r} in the store")


def tx_status_record(status: ExitTxStatus) -> Record:
    return _without_none(
        {
            "kind": status.kind.value,
            "inputs": list(status.txids) or None,
            "min_fee_rate": status.min_fee_rate or None,
            "min_fee": status.min_fee or None,
            "child": status.child_txid,
            "origin": None if status.origin is None else origin_record(status.origin),
            "block": _block(status.block),
        }
    )


def tx_status_of(record: Record) -> ExitTxStatus:
    origin = record.get("origin")
    return ExitTxStatus(
        kind=TxStatusKind(record["kind"]),
        txids=tuple(record.get("inputs", ())),
        min_fee_rate=int(record.get("min_fee_rate", 0)),
        min_fee=int(record.get("min_fee", 0)),
        child_txid=record.get("child"),
        origin=None if origin is None else origin_of(origin),
        block=_block_of(record.get("block")),
    )


def state_record(state: ExitState) -> Record:
    return _without_none(
        {
            "kind": state.kind.value,
            "tip": state.tip_height,
            "txs": [[tx.txid, tx_status_record(tx.status)] for tx in state.transactions] or None,
            "confirmed_block": _block(state.confirmed_block),
            "claimable_height": state.claimable_height,
            "claimable_since": _block(state.claimable_since),
            "last_scanned_block": _block(state.last_scanned_block),
            "claim_txid": state.claim_txid,
            "txid": state.txid,
            "block": _block(state.block),
            "spent_input": state.spent_input,
            "claim_fee": state.claim_fee,
            "signed_claims": list(state.signed_claims) or None,
        }
    )


def state_of(record: Record) -> ExitState:
    height = record.get("claimable_height")
    return ExitState(
        kind=ExitStateKind(record["kind"]),
        tip_height=int(record["tip"]),
        transactions=tuple(ExitTx(str(txid), tx_status_of(status)) for txid, status in record.get("txs", ())),
        confirmed_block=_block_of(record.get("confirmed_block")),
        claimable_height=None if height is None else int(height),
        claimable_since=_block_of(record.get("claimable_since")),
        last_scanned_block=_block_of(record.get("last_scanned_block")),
        claim_txid=record.get("claim_txid"),
        txid=record.get("txid"),
        block=_block_of(record.get("block")),
        spent_input=record.get("spent_input"),
        claim_fee=record.get("claim_fee"),
        signed_claims=tuple(record.get("signed_claims", ())),
    )


def encode_state(state: ExitState) -> str:
    return json.dumps(state_record(state), separators=(",", ":"))


def decode_state(text: str) -> ExitState:
    return state_of(json.loads(text))


def encode_error(error: ExitError) -> str:
    """The error's class, message and data: kept so an operator reading the database sees what failed, and
    compared by the engine to write an exit only when its error changed."""
    record = {"kind": type(error).__name__, "message": str(error), "fields": error.fields}
    return json.dumps(record, separators=(",", ":"))


# The errors restored at load: no cycle derives them again (exitd/engine/errors.py, ClaimHeld).
KEPT_ERRORS: dict[str, type[ClaimHeld]] = {
    cls.__name__: cls for cls in (ClaimFeeExceedsOutput, ClaimMarketUnknown)
}


def decode_error(text: str | None) -> ExitError | None:
    """A kept error as encode_error stored it; None for any other (the next cycle says it again, if it
    still holds) and for a record older than its variant's fields."""
    if text is None:
        return None
    record = json.loads(text)
    kind = KEPT_ERRORS.get(record.get("kind", ""))
    if kind is None:
        return None
    try:
        return kind(**record.get("fields", {}))
    except TypeError:
        return None
