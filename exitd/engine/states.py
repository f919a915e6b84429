"""Exit states as barkd 0.1.4 names and shapes them, each with its JSON (kebab-case `type` tags).

The JSON written to the database is the same as the REST shape, so a stored state can be served as is and
read back after a restart. Fee rates are sat/kvB; the deprecated sat/kwu fields are derived (kvB / 4).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Self

from exitd.chain.view import BlockRef


def kwu_from_kvb(sat_per_kvb: int) -> int:
    """barkd's deprecated sat/kwu fields: 1 vbyte is 4 weight units."""
    return sat_per_kvb // 4


def _block(data: Any) -> BlockRef:
    return BlockRef(int(data["height"]), str(data["hash"]))


def _block_or_none(data: Any) -> BlockRef | None:
    return None if data is None else _block(data)


def _block_json(block: BlockRef | None) -> dict[str, Any] | None:
    return None if block is None else {"height": block.height, "hash": block.hash}


# Who produced the CPFP child of an exit tx.


@dataclass(frozen=True)
class WalletOrigin:
    confirmed_in: BlockRef | None = None

    def to_json(self) -> dict[str, Any]:
        return {"type": "wallet", "confirmed_in": _block_json(self.confirmed_in)}


@dataclass(frozen=True)
class MempoolOrigin:
    """Found unconfirmed on the network; fee data is the whole package's (the parent pays nothing)."""

    fee_rate: int  # sat/kvB, effective rate of the package
    total_fee: int

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "mempool",
            "fee_rate_sat_per_kvb": self.fee_rate,
            "fee_rate": kwu_from_kvb(self.fee_rate),
            "total_fee": self.total_fee,
        }


@dataclass(frozen=True)
class BlockOrigin:
    """Found confirmed on the network."""

    confirmed_in: BlockRef

    def to_json(self) -> dict[str, Any]:
        return {"type": "block", "confirmed_in": _block_json(self.confirmed_in)}


ExitTxOrigin = WalletOrigin | MempoolOrigin | BlockOrigin


def origin_from_json(data: Any) -> ExitTxOrigin:
    kind = data["type"]
    if kind == "wallet":
        return WalletOrigin(_block_or_none(data.get("confirmed_in")))
    if kind == "mempool":
        return MempoolOrigin(int(data["fee_rate_sat_per_kvb"]), int(data["total_fee"]))
    if kind == "block":
        return BlockOrigin(_block(data["confirmed_in"]))
    raise ValueError(f"unknown exit tx origin {kind!r}")


# The status of one exit transaction (0.1.4's "active" vocabulary: the engine builds and broadcasts).


class TxStatusKind(StrEnum):
    VERIFY_INPUTS = "verify-inputs"
    AWAITING_INPUT_CONFIRMATION = "awaiting-input-confirmation"
    NEEDS_SIGNED_PACKAGE = "needs-signed-package"
    NEEDS_REPLACEMENT_PACKAGE = "needs-replacement-package"
    NEEDS_BROADCASTING = "needs-broadcasting"
    BROADCAST_WITH_CPFP = "broadcast-with-cpfp"
    CONFIRMED = "confirmed"


@dataclass(frozen=True)
class ExitTxStatus:
    """One variant per kind; fields unused by a kind stay at their defaults."""

    kind: TxStatusKind
    txids: tuple[str, ...] = ()
    min_fee_rate: int = 0  # sat/kvB
    min_fee: int = 0
    child_txid: str | None = None
    origin: ExitTxOrigin | None = None
    block: BlockRef | None = None

    def to_json(self, vocabulary: str = "0.1.4") -> dict[str, Any]:
        kind = self.kind
        if vocabulary == "0.6.0":
            return self._to_json_060()
        doc: dict[str, Any] = {"type": kind.value}
        if kind is TxStatusKind.AWAITING_INPUT_CONFIRMATION:
            doc["txids"] = list(self.txids)
        elif kind is TxStatusKind.NEEDS_REPLACEMENT_PACKAGE:
            doc["min_fee_rate_sat_per_kvb"] = self.min_fee_rate
            doc["min_fee_rate_kwu"] = kwu_from_kvb(self.min_fee_rate)
            doc["min_fee"] = self.min_fee
        elif kind in (
            TxStatusKind.NEEDS_BROADCASTING,
            TxStatusKind.BROADCAST_WITH_CPFP,
            TxStatusKind.CONFIRMED,
        ):
            assert self.origin is not None
            doc["child_txid"] = self.child_txid
            doc["origin"] = self.origin.to_json()
            if kind is TxStatusKind.CONFIRMED:
                doc["block"] = _block_json(self.block)
        return doc

    def _to_json_060(self) -> dict[str, Any]:
        """barkd 0.6.0's names (its migration m0032 is the mapping); mempool origins lose their fee data."""
        kind = self.kind
        if kind in (TxStatusKind.NEEDS_SIGNED_PACKAGE, TxStatusKind.NEEDS_REPLACEMENT_PACKAGE):
            return {"type": "awaiting-cpfp-broadcast"}
        if kind in (TxStatusKind.VERIFY_INPUTS, TxStatusKind.AWAITING_INPUT_CONFIRMATION):
            return self.to_json()
        assert self.origin is not None
        origin = {"type": "mempool"} if isinstance(self.origin, MempoolOrigin) else self.origin.to_json()
        if kind is TxStatusKind.CONFIRMED:
            return {
                "type": "confirmed",
                "child_txid": self.child_txid,
                "block": _block_json(self.block),
                "origin": origin,
            }
        return {"type": "awaiting-confirmation", "child_txid": self.child_txid, "origin": origin}

    @classmethod
    def from_json(cls, data: Any) -> Self:
        kind = TxStatusKind(data["type"])
        origin = origin_from_json(data["origin"]) if "origin" in data else None
        return cls(
            kind=kind,
            txids=tuple(data.get("txids", ())),
            min_fee_rate=int(data.get("min_fee_rate_sat_per_kvb", 0)),
            min_fee=int(data.get("min_fee", 0)),
            child_txid=data.get("child_txid"),
            origin=origin,
            block=_block_or_none(data.get("block")),
        )


VERIFY_INPUTS = ExitTxStatus(TxStatusKind.VERIFY_INPUTS)


@dataclass(frozen=True)
class ExitTx:
    txid: str
    status: ExitTxStatus

    def to_json(self, vocabulary: str = "0.1.4") -> dict[str, Any]:
        return {"txid": self.txid, "status": self.status.to_json(vocabulary)}


# Top-level exit states.


class ExitStateKind(StrEnum):
    START = "start"
    PROCESSING = "processing"
    AWAITING_DELTA = "awaiting-delta"
    CLAIMABLE = "claimable"
    CLAIM_IN_PROGRESS = "claim-in-progress"
    CLAIMED = "claimed"
    CANCELED = "canceled"

    @property
    def is_pending(self) -> bool:
        """Still on its way to claimable: what `done` in a progress answer waits for."""
        return self in (ExitStateKind.START, ExitStateKind.PROCESSING, ExitStateKind.AWAITING_DELTA)

    @property
    def is_finished(self) -> bool:
        return self in (ExitStateKind.CLAIMED, ExitStateKind.CANCELED)


@dataclass(frozen=True)
class ExitState:
    """One variant per kind, as ExitTxStatus. `tip_height` is the tip when this state was produced."""

    kind: ExitStateKind
    tip_height: int
    transactions: tuple[ExitTx, ...] = ()
    confirmed_block: BlockRef | None = None
    claimable_height: int | None = None
    claimable_since: BlockRef | None = None
    last_scanned_block: BlockRef | None = None
    claim_txid: str | None = None
    txid: str | None = None
    block: BlockRef | None = None

    def same_as(self, other: ExitState) -> bool:
        """Equal but for the tip and the scan cursor: a new history entry is only made when this is False,
        so a claimable exit does not grow its history by one entry per block (a barkd flaw)."""
        return replace(self, tip_height=0, last_scanned_block=None) == replace(
            other, tip_height=0, last_scanned_block=None
        )

    def to_json(self, vocabulary: str = "0.1.4") -> dict[str, Any]:
        doc: dict[str, Any] = {"type": self.kind.value, "tip_height": self.tip_height}
        kind = self.kind
        if kind is ExitStateKind.PROCESSING:
            doc["transactions"] = [tx.to_json(vocabulary) for tx in self.transactions]
        elif kind is ExitStateKind.AWAITING_DELTA:
            doc["confirmed_block"] = _block_json(self.confirmed_block)
            doc["claimable_height"] = self.claimable_height
        elif kind is ExitStateKind.CLAIMABLE:
            doc["claimable_since"] = _block_json(self.claimable_since)
            doc["last_scanned_block"] = _block_json(self.last_scanned_block)
        elif kind is ExitStateKind.CLAIM_IN_PROGRESS:
            doc["claimable_since"] = _block_json(self.claimable_since)
            doc["claim_txid"] = self.claim_txid
        elif kind is ExitStateKind.CLAIMED:
            doc["txid"] = self.txid
            doc["block"] = _block_json(self.block)
            # Extra (clients may ignore it): kept so a reorged-out claim can go back to claimable.
            doc["claimable_since"] = _block_json(self.claimable_since)
        return doc

    @classmethod
    def from_json(cls, data: Any) -> Self:
        return cls(
            kind=ExitStateKind(data["type"]),
            tip_height=int(data["tip_height"]),
            transactions=tuple(
                ExitTx(str(tx["txid"]), ExitTxStatus.from_json(tx["status"]))
                for tx in data.get("transactions", ())
            ),
            confirmed_block=_block_or_none(data.get("confirmed_block")),
            claimable_height=data.get("claimable_height"),
            claimable_since=_block_or_none(data.get("claimable_since")),
            last_scanned_block=_block_or_none(data.get("last_scanned_block")),
            claim_txid=data.get("claim_txid"),
            txid=data.get("txid"),
            block=_block_or_none(data.get("block")),
        )
