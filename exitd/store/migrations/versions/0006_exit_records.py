"""exits: states, histories and errors in exitd's own records instead of barkd 0.1.4's wire JSON

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

Up to 0005 the exits table held each state as barkd 0.1.4 shows it over REST (kebab `type` tags, blocks as
objects, the deprecated sat/kwu fields) and each error as barkd's ExitError JSON. From 0006 it holds the
engine's records (exitd/engine/records.py). The conversion is written out here, frozen as of this revision,
so that it keeps meaning what it meant when later versions change either side.
"""

import json
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Doc = dict[str, Any]

# barkd's ExitError tag -> the engine's class of that variant (FeeBudgetExceeded was stored as its base).
ERROR_CLASSES = {
    "internal-error": "InternalError",
    "dust-limit": "DustLimit",
    "insufficient-confirmed-funds": "InsufficientConfirmedFunds",
    "exit-package-broadcast-failure": "ExitPackageBroadcastFailure",
    "exit-package-finalize-failure": "ExitPackageFinalizeFailure",
    "transaction-retrieval-failure": "TransactionRetrievalFailure",
    "claim-missing-inputs": "ClaimMissingInputs",
    "claim-fee-exceeds-output": "ClaimFeeExceedsOutput",
    "claim-missing-signable-clause": "ClaimMissingSignableClause",
    "claim-signing-error": "ClaimSigningError",
    "vtxo-not-claimable": "VtxoNotClaimable",
    "invalid-wallet-state": "InvalidWalletState",
    "block-retrieval-failure": "BlockRetrievalFailure",
}
ERROR_TAGS = {name: tag for tag, name in ERROR_CLASSES.items()}
# Fields of a wire state or status kept under another name in a record (blocks converted either way).
STATE_KEYS = {"tip_height": "tip"}
STATUS_KEYS = {"txids": "inputs", "min_fee_rate_sat_per_kvb": "min_fee_rate", "child_txid": "child"}
BLOCK_KEYS = ("block", "confirmed_block", "claimable_since", "last_scanned_block", "confirmed_in")


def _block_record(block: Doc | None) -> list[Any] | None:
    return None if block is None else [block["height"], block["hash"]]


def _block_wire(block: list[Any] | None) -> Doc | None:
    return None if block is None else {"height": block[0], "hash": block[1]}


def _record(doc: Doc, renames: dict[str, str], drop: tuple[str, ...] = ()) -> Doc:
    """A wire object as a record: `type` is `kind`, blocks are pairs, nulls and empty values are left out."""
    record: Doc = {}
    for key, value in doc.items():
        if key in drop or value is None or value == [] or (value == 0 and key != "tip_height"):
            continue
        name = "kind" if key == "type" else renames.get(key, key)
        record[name] = _block_record(value) if key in BLOCK_KEYS else value
    return record


def origin_record(origin: Doc) -> Doc:
    record = _record(origin, {"fee_rate_sat_per_kvb": "fee_rate", "confirmed_in": "block"}, ("fee_rate",))
    if record["kind"] == "mempool":
        record.setdefault("fee_rate", 0)
        record.setdefault("total_fee", 0)
    return record


def status_record(status: Doc) -> Doc:
    record = _record(status, STATUS_KEYS, ("min_fee_rate_kwu", "origin"))
    if "origin" in status:
        record["origin"] = origin_record(status["origin"])
    return record


def state_record(state: Doc) -> Doc:
    record = _record(state, STATE_KEYS, ("transactions",))
    txs = [[tx["txid"], status_record(tx["status"])] for tx in state.get("transactions", ())]
    if txs:
        record["txs"] = txs
    return record


def error_record(error: Doc) -> Doc:
    fields = {key: value for key, value in error.items() if key != "type"}
    return {"kind": ERROR_CLASSES.get(error["type"], "InternalError"), "fields": fields}


def origin_wire(record: Doc) -> Doc:
    kind = record["kind"]
    if kind == "mempool":
        rate = record["fee_rate"]
        return {
            "type": kind,
            "fee_rate_sat_per_kvb": rate,
            "fee_rate": rate // 4,
            "total_fee": record["total_fee"],
        }
    return {"type": kind, "confirmed_in": _block_wire(record.get("block"))}


def status_wire(record: Doc) -> Doc:
    kind = record["kind"]
    doc: Doc = {"type": kind}
    if kind == "awaiting-input-confirmation":
        doc["txids"] = record.get("inputs", [])
    elif kind == "needs-replacement-package":
        rate = record.get("min_fee_rate", 0)
        doc.update(
            min_fee_rate_sat_per_kvb=rate, min_fee_rate_kwu=rate // 4, min_fee=record.get("min_fee", 0)
        )
    elif kind in ("needs-broadcasting", "broadcast-with-cpfp", "confirmed"):
        doc.update(child_txid=record.get("child"), origin=origin_wire(record["origin"]))
        if kind == "confirmed":
            doc["block"] = _block_wire(record.get("block"))
    return doc


STATE_FIELDS = {
    "processing": (),
    "awaiting-delta": ("confirmed_block", "claimable_height"),
    "claimable": ("claimable_since", "last_scanned_block"),
    "claim-in-progress": ("claimable_since", "claim_txid"),
    "claimed": ("txid", "block", "claimable_since"),
}


def state_wire(record: Doc) -> Doc:
    kind = record["kind"]
    doc: Doc = {"type": kind, "tip_height": record["tip"]}
    if kind == "processing":
        doc["transactions"] = [{"txid": txid, "status": status_wire(s)} for txid, s in record.get("txs", ())]
    for key in STATE_FIELDS.get(kind, ()):
        value = record.get(key)
        doc[key] = _block_wire(value) if key in BLOCK_KEYS else value
    return doc


def error_wire(record: Doc) -> Doc:
    return {"type": ERROR_TAGS.get(record["kind"], "internal-error"), **record.get("fields", {})}


def _convert(state: Callable[[Doc], Doc], error: Callable[[Doc], Doc]) -> None:
    exits = sa.table(
        "exits", sa.column("vtxo_id"), sa.column("state"), sa.column("history"), sa.column("error")
    )
    conn = op.get_bind()
    rows = conn.execute(sa.select(exits.c.vtxo_id, exits.c.state, exits.c.history, exits.c.error)).all()
    for vtxo_id, current, history, last_error in rows:
        conn.execute(
            exits.update()
            .where(exits.c.vtxo_id == vtxo_id)
            .values(
                state=_dump(state(json.loads(current))),
                history=_dump([state(h) for h in json.loads(history)]),
                error=None if last_error is None else _dump(error(json.loads(last_error))),
            )
        )


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def upgrade() -> None:
    _convert(state_record, error_record)


def downgrade() -> None:
    _convert(state_wire, error_wire)
