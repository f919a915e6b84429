"""What the engine holds in memory: the exits, the exit txs they need, and the CPFP children of those txs.

An exit tx shared by several exits (the ancestors of a round tree's leaves) is one `TrackedTx` in the
book, whatever the number of exits that need it; its children are recorded once, and their fees are split
among the exits that need the tx when each exit's spending is counted.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from bitcoin.core import CTransaction, b2lx

from exitd.ark.encoding import OutPoint
from exitd.chain.view import BlockRef, ChainSnapshot
from exitd.engine.errors import ClaimHeld, ExitError
from exitd.engine.fee_policy import RaisedRate
from exitd.engine.rest import RestIndex, rest_of
from exitd.engine.states import (
    BlockOrigin,
    ExitState,
    ExitStateKind,
    ExitTxOrigin,
    ExitTxStatus,
    MempoolOrigin,
    WalletOrigin,
)
from exitd.engine.timing import DurationTally
from exitd.engine.transitions import Action, Child

# The states in which an exit still needs its exit txs looked after.
ACTIVE_KINDS = (ExitStateKind.START, ExitStateKind.PROCESSING, ExitStateKind.AWAITING_DELTA)
# The states in which an exit's claim tx is followed.
CLAIM_KINDS = (ExitStateKind.CLAIM_IN_PROGRESS, ExitStateKind.CLAIMED)
# The states in which every claim exitd signed for an exit is watched: any of them may still confirm.
CLAIM_WATCHED = (ExitStateKind.CLAIMABLE, *CLAIM_KINDS)


class ChildSource(StrEnum):
    """Who made a CPFP child: our wallet, or someone else (found in the mempool or a block)."""

    WALLET = "wallet"
    NETWORK = "network"


class ChildStatus(StrEnum):
    STORED = "stored"  # ours, stored with its coin reservations, not seen by bitcoind yet
    BROADCAST = "broadcast"  # in the mempool
    CONFIRMED = "confirmed"
    REPLACED = "replaced"  # another child won the anchor
    ABANDONED = "abandoned"  # can never be valid, or no exit needs its parent any more

    @property
    def in_flight(self) -> bool:
        return self in (ChildStatus.STORED, ChildStatus.BROADCAST)


@dataclass
class ChildRecord:
    txid: str
    parent_txid: str
    raw: bytes
    fee: int
    vsize: int
    package_rate: int
    source: ChildSource
    status: ChildStatus
    block: BlockRef | None = None

    @property
    def ours(self) -> bool:
        return self.source is ChildSource.WALLET

    @property
    def pending(self) -> bool:
        return self.ours and self.status.in_flight

    def origin(self) -> ExitTxOrigin:
        if self.ours:
            return WalletOrigin(self.block)
        if self.block is not None:
            return BlockOrigin(self.block)
        return MempoolOrigin(self.package_rate, self.fee)

    def as_child(self) -> Child:
        return Child(self.txid, self.fee, self.package_rate, self.ours, self.block)


@dataclass
class TrackedTx:
    """An exit tx and what the engine knows of its children; shared by every exit that needs it."""

    txid: str
    raw: bytes
    vsize: int
    input_txid: str
    anchor_vout: int
    children: dict[str, ChildRecord] = field(default_factory=dict)
    # The P2A output its CPFP children spend.
    anchor: OutPoint = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.anchor = OutPoint.of(self.txid, self.anchor_vout)

    @property
    def tx(self) -> CTransaction:
        return CTransaction.deserialize(self.raw)

    @functools.cached_property
    def input_vout(self) -> int:
        """The output of `input_txid` this tx spends: the UTXO set shows its input mined until it is."""
        return int(self.tx.vin[0].prevout.n)

    @functools.cached_property
    def spent(self) -> OutPoint:
        """The outpoint this tx spends (its one input): the previous level's output, or the chain anchor."""
        return OutPoint.of(self.input_txid, self.input_vout)


@dataclass(frozen=True)
class ClaimCandidate:
    """A claim tx exitd signed, stored before it was ever broadcast. The candidates of one claim spend the
    same exit outputs to the same destination, each replacing the one before (exitd/engine/replacement.py);
    `first_txid` names the claim (its first candidate), `seq` the place among them."""

    txid: str
    first_txid: str
    seq: int
    raw: bytes
    fee: int
    vsize: int
    rate: int  # sat/kvB it was priced at
    signed_height: int  # the tip when it was signed
    refused_height: int | None = None  # the tip at which the node refused it for its fee

    @property
    def tx(self) -> CTransaction:
        return CTransaction.deserialize(self.raw)

    @property
    def amount(self) -> int:
        """What its inputs hold: its output plus its fee."""
        return self.fee + sum(int(o.nValue) for o in self.tx.vout)

    @property
    def vtxo_ids(self) -> tuple[str, ...]:
        """The VTXOs it claims (its inputs are their outputs)."""
        return tuple(str(OutPoint.of(b2lx(i.prevout.hash), i.prevout.n)) for i in self.tx.vin)


@dataclass
class LiveExit:
    vtxo_id: str
    amount: int
    expiry_height: int
    txids: list[str]
    state: ExitState
    started_by: str
    created_at: int
    error: ExitError | None = None
    claim_delay: int | None = None
    claim_locktime: int | None = None
    # The user's claim leaf: a mempool tx spending the VTXO's output through it is a claim.
    claim_leaf: bytes | None = None
    # The error as the store holds it (JSON): a cycle that changes neither it nor the state writes nothing.
    stored_error: str | None = None
    # The last fee_rate a request gave for this exit, when the node's floor stood above it.
    raised_rate: RaisedRate | None = None
    # The VTXO's own output, which the claim spends.
    outpoint: OutPoint = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.outpoint = OutPoint.from_str(self.vtxo_id)

    @property
    def held_claim(self) -> ClaimHeld | None:
        """Why automatic claims leave this claimable exit alone (errors.ClaimHeld), or None."""
        if self.state.kind is ExitStateKind.CLAIMABLE and isinstance(self.error, ClaimHeld):
            return self.error
        return None

    def levels_left(self, snap: ChainSnapshot) -> int:
        """Exit txs the snapshot does not show confirmed: the blocks this exit still needs at the least."""
        return sum(1 for txid in self.txids if not snap.is_confirmed(txid))


@dataclass
class PackageWork:
    """An exit tx this cycle pays for or broadcasts: what to do, at what rate, for whom; the child once
    there is one, and the tx's status as the cycle leaves it."""

    tracked: TrackedTx
    action: Action
    rate: int
    sharers: list[LiveExit]
    status: ExitTxStatus
    child: ChildRecord | None = None


@dataclass(frozen=True)
class ExitProgress:
    """An exit as a cycle left it: a report keeps the state and error of then, whatever later cycles do."""

    vtxo_id: str
    state: ExitState
    error: ExitError | None
    raised_rate: RaisedRate | None = None


@dataclass(frozen=True, eq=False)
class ProgressReport:
    """What one cycle did; shared by every caller of that cycle (eq=False: compared and hashed by
    identity, so that the API renders each report once)."""

    exits: tuple[ExitProgress, ...]
    done: bool
    claimable_height: int | None


@dataclass
class EngineCounters:
    """What /metrics reads (exitd/api/prometheus.py); every counter only ever grows."""

    packages_broadcast: int = 0
    cpfp_fees_paid: int = 0  # sat, of our children accepted into the mempool
    claim_fees_paid: int = 0  # sat
    cycles: int = 0
    cycle_errors: int = 0  # cycles that raised; every cycle ends in `cycles` or here
    cycle_seconds: float = 0.0
    cycle_durations: DurationTally = field(default_factory=DurationTally)
    # Cycles running now, and the most ever at once: 1 proves the single-flight (load tests read it).
    cycles_running: int = 0
    max_concurrent_cycles: int = 0


def set_error(exits: Iterable[LiveExit], error: ExitError) -> None:
    for e in exits:
        e.error = error


def claimable_height(state: ExitState) -> int | None:
    """The height from which the exit is (or will be) claimable, when the state knows it."""
    if state.kind is ExitStateKind.AWAITING_DELTA:
        return state.claimable_height
    if state.claimable_since is not None:
        return state.claimable_since.height
    return None


class ExitBook:
    """The exits by VTXO id and the exit txs by txid; the engine changes them only under its cycle lock.
    Which exits the next cycle decides is `rest` (exitd/engine/rest.py); the exits needing each exit tx
    are indexed, so that splitting a shared tx's fees looks at that tx's exits only."""

    def __init__(self) -> None:
        self.exits: dict[str, LiveExit] = {}
        self.txs: dict[str, TrackedTx] = {}
        # The candidates of each claim of the exits claimed or being claimed, by the claim's first txid,
        # oldest first; and the claim of each candidate's txid.
        self.claims: dict[str, list[ClaimCandidate]] = {}
        self.claim_of: dict[str, str] = {}
        self.rest = RestIndex()
        self._needers: dict[str, set[str]] = {}
        self._indexed = True

    def reindex(self) -> None:
        """After the exits were loaded: the indexes are built again when a cycle next needs them (a
        standby, which reloads often and runs no cycle, never builds them)."""
        self._indexed = False

    def _index(self) -> None:
        """Each exit rests as its stored state allows (one stored with an error is awake, so that a cycle
        decides it again and gives it its error in memory), and the exits needing each tx are indexed."""
        if self._indexed:
            return
        self.rest.reset(
            (e.vtxo_id, rest_of(e.state) if e.stored_error is None else None, e.txids)
            for e in self.exits.values()
        )
        self._needers = {}
        for e in self.exits.values():
            self._need(e)
        self._indexed = True

    def add(self, e: LiveExit) -> None:
        """A started (or restarted) exit: awake, and indexed under its txs."""
        self.exits[e.vtxo_id] = e
        if self._indexed:
            self._need(e)
            self.rest.wake(e.vtxo_id)

    def _need(self, e: LiveExit) -> None:
        for txid in e.txids:
            self._needers.setdefault(txid, set()).add(e.vtxo_id)

    def awake(self) -> list[LiveExit]:
        """The exits the next cycle decides (before those it wakes)."""
        self._index()
        return [self.exits[vtxo_id] for vtxo_id in self.rest.awake]

    def candidates(self, txid: str | None) -> list[ClaimCandidate]:
        """Every candidate of the claim `txid` is a candidate of, oldest first (none: not exitd's claim)."""
        first = self.claim_of.get(txid) if txid else None
        return list(self.claims[first]) if first else []

    def keep_candidate(self, c: ClaimCandidate) -> None:
        """Add a candidate, or put a known one's new facts (a refusal) in its place."""
        group = self.claims.setdefault(c.first_txid, [])
        group[:] = sorted([*(k for k in group if k.txid != c.txid), c], key=lambda k: k.seq)
        self.claim_of[c.txid] = c.first_txid

    def broadcast_by_exitd(self, txid: str) -> bool:
        """Whether a child of our wallet ever paid for this exit tx (one abandoned unbroadcast aside)."""
        tracked = self.txs.get(txid)
        return tracked is not None and any(
            c.ours and c.status is not ChildStatus.ABANDONED for c in tracked.children.values()
        )

    def refcounts(self, txids: Iterable[str] | None = None) -> dict[str, int]:
        """How many exits (canceled ones aside) need each exit tx, to split a shared tx's fees among them;
        of `txids` only when given (from the index: the others' exits are not looked at)."""
        refcount: dict[str, int] = {}
        if txids is not None:
            self._index()
            for txid in txids:
                needers = (self.exits[i] for i in self._needers.get(txid, ()))
                refcount[txid] = sum(
                    1 for e in needers if e.state.kind is not ExitStateKind.CANCELED and txid in e.txids
                )
            return refcount
        for other in self.exits.values():
            if other.state.kind is not ExitStateKind.CANCELED:
                for txid in other.txids:
                    refcount[txid] = refcount.get(txid, 0) + 1
        return refcount

    def still_needed(self) -> set[str]:
        """The exit txs of every exit that is not canceled."""
        return {t for e in self.exits.values() if e.state.kind is not ExitStateKind.CANCELED for t in e.txids}

    def fees_paid(self, e: LiveExit, refcount: Mapping[str, int] | None = None) -> int:
        """CPFP fees of this exit's live children; a shared tx's child counts once, split among its exits.
        `refcount`: refcounts(), when the caller asks for many exits (each call would recount all)."""
        if refcount is None:
            refcount = self.refcounts()
        total = 0
        for txid in e.txids:
            for c in self.txs[txid].children.values():
                if c.ours and c.status in (ChildStatus.BROADCAST, ChildStatus.CONFIRMED):
                    total += c.fee // max(1, refcount.get(txid, 1))
        return total

    def fees_paid_each(self, exits: Iterable[LiveExit]) -> dict[str, int]:
        """fees_paid of many exits by VTXO id, the shared txs counted once for all (a status listing of N
        exits would otherwise recount every exit N times)."""
        refcount = self.refcounts()
        return {e.vtxo_id: self.fees_paid(e, refcount) for e in exits}

    def packages(self, e: LiveExit) -> list[tuple[TrackedTx, ChildRecord | None, ExitTxOrigin | None]]:
        """Each exit tx with the child that matters now (in flight or confirmed) and where that child came
        from: as the current status says, else from what the engine recorded of it."""
        statuses = {tx.txid: tx.status for tx in e.state.transactions}
        result: list[tuple[TrackedTx, ChildRecord | None, ExitTxOrigin | None]] = []
        for txid in e.txids:
            tracked = self.txs[txid]
            status = statuses.get(txid)
            child = tracked.children.get(status.child_txid) if status and status.child_txid else None
            if child is None:
                live = [
                    c
                    for c in tracked.children.values()
                    if c.status in (ChildStatus.CONFIRMED, ChildStatus.BROADCAST)
                ]
                child = live[-1] if live else None
            origin = status.origin if status is not None and status.origin is not None else None
            if origin is None and child is not None:
                origin = child.origin()
            result.append((tracked, child, origin))
        return result

    def report(self) -> ProgressReport:
        exits = [e for e in self.exits.values() if not e.state.kind.is_finished]
        pending = [e for e in exits if e.state.kind.is_pending]
        heights = [h for e in exits if (h := claimable_height(e.state)) is not None]
        unknown = any(claimable_height(e.state) is None for e in pending)
        return ProgressReport(
            tuple(ExitProgress(e.vtxo_id, e.state, e.error, e.raised_rate) for e in exits),
            not pending,
            None if unknown or not heights else max(heights),
        )
