"""Exit states: where an exit is, and the status of each of its transactions.

The states follow barkd 0.1.4's engine (the one that builds and broadcasts its own CPFP packages); the names
are exitd's. How barkd's REST API shows them is exitd/api/shapes.py's business, how the store keeps them
exitd/engine/records.py's. Fee rates are sat/kvB.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum

from exitd.chain.view import BlockRef

# Who produced the CPFP child of an exit tx.


@dataclass(frozen=True)
class WalletOrigin:
    confirmed_in: BlockRef | None = None


@dataclass(frozen=True)
class MempoolOrigin:
    """Found unconfirmed on the network; fee data is the whole package's (the parent pays nothing)."""

    fee_rate: int  # sat/kvB, effective rate of the package
    total_fee: int


@dataclass(frozen=True)
class BlockOrigin:
    """Found confirmed on the network."""

    confirmed_in: BlockRef


ExitTxOrigin = WalletOrigin | MempoolOrigin | BlockOrigin


class TxStatusKind(StrEnum):
    """The status of one exit transaction: the engine verifies, pays for, broadcasts and follows it."""

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


VERIFY_INPUTS = ExitTxStatus(TxStatusKind.VERIFY_INPUTS)


@dataclass(frozen=True)
class ExitTx:
    txid: str
    status: ExitTxStatus


class ExitStateKind(StrEnum):
    START = "start"
    PROCESSING = "processing"
    AWAITING_DELTA = "awaiting-delta"
    CLAIMABLE = "claimable"
    CLAIM_IN_PROGRESS = "claim-in-progress"
    CLAIMED = "claimed"
    CANCELED = "canceled"
    # An exit tx's input was spent by a tx not part of the exit (exitd/engine/conflicts.py): `txid` is that
    # tx, `block` where it confirmed, `spent_input` the outpoint it took.
    VTXO_ALREADY_SPENT = "vtxo-already-spent"

    @property
    def is_pending(self) -> bool:
        """Still on its way to claimable: what `done` in a progress answer waits for."""
        return self in (ExitStateKind.START, ExitStateKind.PROCESSING, ExitStateKind.AWAITING_DELTA)

    @property
    def is_finished(self) -> bool:
        return self in (ExitStateKind.CLAIMED, ExitStateKind.CANCELED, ExitStateKind.VTXO_ALREADY_SPENT)


@dataclass(frozen=True)
class ExitState:
    """One variant per kind, as ExitTxStatus. `tip_height` is the tip when this state was produced.
    A claimed state keeps `claimable_since`, so a reorged-out claim can go back to claimable. `claim_fee`:
    what the claim tx of a claim in progress or claimed pays (sat), when it is one exitd signed; of a batch
    claim, the whole tx's. `signed_claims`: every claim exitd signed for the exit (each by its first
    candidate's txid), kept while it is claimable, being claimed or claimed: a candidate of any of them that
    confirms completes the exit, however late (one dropped from the mempool may still be mined)."""

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
    spent_input: str | None = None
    claim_fee: int | None = None
    signed_claims: tuple[str, ...] = ()

    def same_as(self, other: ExitState) -> bool:
        """Equal but for the tip and the scan cursor: a new history entry is only made when this is False,
        so a claimable exit does not grow its history by one entry per block (a barkd flaw)."""
        return self is other or all(getattr(self, f) == getattr(other, f) for f in _COMPARED)


# The fields same_as compares (a cycle compares every exit it decides: no copies made for it).
_COMPARED = tuple(f.name for f in fields(ExitState) if f.name not in ("tip_height", "last_scanned_block"))
