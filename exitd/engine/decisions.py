"""What a cycle decides from its chain snapshot and the book: pure functions, no I/O, tested without a node.

transitions.py holds the state machine of one tx and one exit; this module turns the engine's records and
a snapshot into that machine's facts, and decides what the cycle asks the node for, which rate each exit
tx aims at, what the fee budget still allows, and which txs the wallet should fund ahead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from exitd.ark.encoding import OutPoint
from exitd.chain.fees import Market
from exitd.chain.view import BlockRef, ChainSnapshot, TxState
from exitd.engine.conflicts import resumed, spent_outpoint
from exitd.engine.fee_policy import (
    CHILD_VSIZE_ESTIMATE,
    FeePolicy,
    LevelMarket,
    budget_capped_rate,
    deadline_rate,
    fee_budget,
    level_market,
    level_target,
)
from exitd.engine.model import (
    ACTIVE_KINDS,
    CLAIM_WATCHED,
    ChildStatus,
    ClaimCandidate,
    LiveExit,
    TrackedTx,
)
from exitd.engine.replacement import ClaimPlace
from exitd.engine.states import VERIFY_INPUTS, ExitState, ExitStateKind, ExitTx, ExitTxStatus
from exitd.engine.transitions import (
    ExitFacts,
    TxFacts,
    claim_next,
    claimable_next,
    processing_or_done,
)
from exitd.wallet.planner import PlannedTx

# A claim this deep is final enough: no more questions about it.
FINAL_DEPTH = 100
# The claim's output that places it when mined before exitd watched it: exitd's claims have this one only.
CLAIM_VOUT = 0
# The states in which the VTXO's own output is watched (its claim, or its spend by someone else).
_OUTPUT_WATCHED = (
    ExitStateKind.AWAITING_DELTA,
    ExitStateKind.CLAIMABLE,
    ExitStateKind.CLAIM_IN_PROGRESS,
    ExitStateKind.CLAIMED,
)


@dataclass
class SnapshotRequest:
    """What one snapshot asks bitcoind (ChainView.snapshot's arguments)."""

    txids: list[str] = field(default_factory=list)
    spends: list[OutPoint] = field(default_factory=list)
    heights: list[int] = field(default_factory=list)
    utxos: list[OutPoint] = field(default_factory=list)
    # An output of a tx the UTXO set may still hold: where it was mined, if before exitd watched it.
    outputs: dict[str, int] = field(default_factory=dict)
    # The txs each tx spends (exit tx: its input; CPFP child: its parent; claim: the leaf), which are
    # confirmed where it is even if their outputs are all spent.
    inputs: dict[str, set[str]] = field(default_factory=dict)


def is_watched(e: LiveExit, tip: BlockRef | None) -> bool:
    """Whether a cycle looks at this exit: all but canceled ones, and claims and conflicts deep enough to
    be final (a reorg may still take a conflict out: the exit then starts over)."""
    if e.state.kind is ExitStateKind.CANCELED:
        return False
    if e.state.kind in (ExitStateKind.CLAIMED, ExitStateKind.VTXO_ALREADY_SPENT):
        height = tip.height if tip else 0
        return e.state.block is not None and height - e.state.block.height < FINAL_DEPTH
    return True


def snapshot_request(
    exits: Iterable[LiveExit],
    txs: Mapping[str, TrackedTx],
    guarded: Mapping[str, int] | None = None,
    claims: Mapping[str, Sequence[ClaimCandidate]] | None = None,
) -> SnapshotRequest:
    """The txs, spends, block heights and outputs the exits' next states depend on, plus `guarded` (each
    txid with the output that places it) and every candidate of the exits' `claims` (by VTXO id)."""
    guarded = guarded or {}
    claims = claims or {}
    request = SnapshotRequest(txids=list(guarded), outputs=dict(guarded))
    for e in exits:
        kind = e.state.kind
        request.outputs[e.txids[-1]] = e.outpoint.vout
        if kind in ACTIVE_KINDS:
            for txid in e.txids:
                tracked = txs[txid]
                request.outputs[tracked.input_txid] = tracked.input_vout
                request.txids += [txid, tracked.input_txid]
                request.inputs.setdefault(txid, set()).add(tracked.input_txid)
                for c in tracked.children.values():
                    if c.status.in_flight:
                        request.txids.append(c.txid)
                        request.inputs.setdefault(c.txid, set()).add(txid)
                request.spends.append(tracked.anchor)
                request.utxos.append(tracked.spent)
        if kind is ExitStateKind.AWAITING_DELTA and e.state.claimable_height is not None:
            request.heights.append(e.state.claimable_height)
        if kind in _OUTPUT_WATCHED:
            request.spends.append(e.outpoint)
            request.utxos.append(e.outpoint)
            request.txids.append(e.txids[-1])
        lost = spent_outpoint(e.state)
        if lost is not None:
            request.utxos.append(lost)
        if e.state.claimable_since is not None:
            request.heights.append(e.state.claimable_since.height)
        candidates = [c.txid for c in claims.get(e.vtxo_id, ())]
        for claim in (e.state.claim_txid, e.state.txid, *candidates):
            if claim:
                request.txids.append(claim)
                request.outputs.setdefault(claim, CLAIM_VOUT)
                request.inputs.setdefault(claim, set()).add(e.txids[-1])
    return request


def sharers_of(watched: Iterable[LiveExit]) -> dict[str, list[LiveExit]]:
    """The exits in progress that need each exit tx."""
    sharers: dict[str, list[LiveExit]] = {}
    for e in watched:
        if e.state.kind in ACTIVE_KINDS:
            for txid in e.txids:
                sharers.setdefault(txid, []).append(e)
    return sharers


def tx_facts(tracked: TrackedTx, snap: ChainSnapshot) -> TxFacts:
    location = snap.location(tracked.txid)
    confirmed_child = None
    if location.state is TxState.CONFIRMED:
        for c in tracked.children.values():
            if c.status is ChildStatus.CONFIRMED and c.block == location.block:
                confirmed_child = c.as_child()
    spender_txid = snap.spenders.get(tracked.anchor)
    pending = tuple(c.as_child() for c in tracked.children.values() if c.pending)
    return TxFacts(
        txid=tracked.txid,
        location=location,
        input_txid=tracked.input_txid,
        input_confirmed=snap.is_confirmed(tracked.input_txid),
        spender=snap.packages.get(spender_txid) if spender_txid else None,
        pending_children=pending,
        confirmed_child=confirmed_child,
    )


@dataclass(frozen=True)
class ExitClaims:
    """The claims exitd signed for one exit, each by its first candidate's txid: `named`, the one its
    state names (None: it names none, or a tx exitd did not sign), and `firsts`, all of them."""

    named: str | None
    firsts: tuple[str, ...]


def exit_claims(e: LiveExit, claim_of: Mapping[str, str], found: str | None = None) -> ExitClaims | None:
    """The claims exitd signed for `e` that the book holds (`claim_of`: the claim of each candidate), the
    one `found` (a candidate the block search found spending its output) is of included; None when the
    exit's state watches no claim or it has none."""
    state = e.state
    if state.kind not in CLAIM_WATCHED:
        return None
    named = claim_of.get(state.claim_txid or state.txid or "")
    signed = (claim_of.get(t) for t in (*state.signed_claims, found) if t)
    firsts = tuple(dict.fromkeys(f for f in (named, *signed) if f is not None))
    return ExitClaims(named, firsts) if firsts else None


def claim_standing(claims: ExitClaims, places: Mapping[str, ClaimPlace]) -> ClaimPlace | None:
    """Where the exit's claim stands, as `advance` reads it: a candidate of any claim exitd signed for it
    confirmed (it completes the exit, however late), else one in the mempool, else the claim its state
    names (which exitd sends again); None when it names another's tx and none of its own is anywhere."""
    mine = [places[first] for first in claims.firsts]
    for state in (TxState.CONFIRMED, TxState.MEMPOOL):
        for place in mine:
            if place.location.state is state:
                return place
    return places[claims.named] if claims.named is not None else None


def exit_facts(e: LiveExit, snap: ChainSnapshot, claim: ClaimPlace | None = None) -> ExitFacts:
    """`claim`: where the exit's claim stands, when it is one exitd signed."""
    assert e.claim_delay is not None
    claim_txid = e.state.claim_txid or e.state.txid
    facts = ExitFacts(
        tip=snap.tip,
        claim_delay=e.claim_delay,
        claim_locktime=e.claim_locktime,
        block_hashes=snap.block_hashes,
        vtxo_unspent=snap.unspent.get(e.outpoint, True),
        vtxo_mempool_spender=snap.spenders.get(e.outpoint),
        claim_location=snap.location(claim_txid) if claim_txid else None,
    )
    if claim is None:
        return facts
    return replace(
        facts,
        claim_location=claim.location,
        claim_txid=claim.candidate.txid,
        claim_fee=claim.candidate.fee,
        claim_pending=not claim.found,
    )


def advance(
    e: LiveExit, snap: ChainSnapshot, statuses: Mapping[str, ExitTxStatus], claim: ClaimPlace | None = None
) -> ExitState:
    """The exit's next state from the snapshot, this cycle's tx statuses and where its claim stands (when
    it is one exitd signed)."""
    facts = exit_facts(e, snap, claim)
    state = e.state
    kind = state.kind
    if kind in ACTIVE_KINDS:
        txs = [ExitTx(txid, statuses.get(txid, VERIFY_INPUTS)) for txid in e.txids]
        new = processing_or_done(snap.tip.height, txs, facts)
        if kind is ExitStateKind.AWAITING_DELTA and new.kind is ExitStateKind.AWAITING_DELTA:
            new = new if not new.same_as(state) else state
        return new
    if kind is ExitStateKind.CLAIMABLE:
        return claimable_checked(e, facts, snap)
    if kind is ExitStateKind.VTXO_ALREADY_SPENT:
        return resumed(e, snap) or state
    return claim_next(state, facts)


def claimable_checked(e: LiveExit, facts: ExitFacts, snap: ChainSnapshot) -> ExitState:
    """A claimable exit stays claimable only while the block it became claimable in is still in the chain
    and its leaf still confirmed; after a reorg it starts over from its txs."""
    since = e.state.claimable_since
    assert since is not None
    leaf = snap.location(e.txids[-1])
    if leaf.state is not TxState.CONFIRMED or facts.block_hashes.get(since.height) != since.hash:
        return ExitState(
            ExitStateKind.PROCESSING,
            snap.tip.height,
            transactions=tuple(ExitTx(t, VERIFY_INPUTS) for t in e.txids),
        )
    return claimable_next(e.state, facts)


def next_block_room(
    sharers: Mapping[str, Sequence[LiveExit]], txs: Mapping[str, TrackedTx], snap: ChainSnapshot
) -> int:
    """The vbytes this cycle's packages may take in the next block: every exit tx whose input is confirmed
    and that is not, with its child (together they push out the cheapest of the block)."""
    return sum(
        txs[txid].vsize + CHILD_VSIZE_ESTIMATE
        for txid in sharers
        if not snap.is_confirmed(txid) and snap.is_confirmed(txs[txid].input_txid)
    )


def level_targets(
    sharers: Mapping[str, Sequence[LiveExit]], snap: ChainSnapshot, policy: FeePolicy
) -> set[int]:
    """The confirmation targets the exits with a level in flight ask the market about."""
    exits = {e.vtxo_id: e for group in sharers.values() for e in group}
    return {
        level_target(snap.tip.height, e.expiry_height, e.levels_left(snap), policy) for e in exits.values()
    }


def tx_targets(
    sharers: Mapping[str, Sequence[LiveExit]],
    snap: ChainSnapshot,
    market: Market,
    override: int | None,
    policy: FeePolicy,
) -> dict[str, int]:
    """Each exit tx's target rate: the most urgent deadline rate of the exits that need it (each exit's
    computed once, not once per tx it shares). The market of an exit is the estimate for its level's target
    and the next block's rate, or the request's rate (`override`) raised to the node's floor."""
    exits = {e.vtxo_id: e for group in sharers.values() for e in group}
    tip = snap.tip.height
    rate_of: dict[str, int] = {}
    for vtxo_id, e in exits.items():
        levels = e.levels_left(snap)
        if override is not None:
            asked = LevelMarket(market.relay.raised(override))
        else:
            asked = level_market(market, market.rate(level_target(tip, e.expiry_height, levels, policy)))
        rate_of[vtxo_id] = deadline_rate(asked, tip, e.expiry_height, levels, policy)
    return {txid: max(rate_of[e.vtxo_id] for e in group) for txid, group in sharers.items()}


def budget_rate(
    sharers: Sequence[LiveExit],
    paid: Sequence[int],
    snap: ChainSnapshot,
    tx_vsize: int,
    target: int,
    policy: FeePolicy,
) -> int:
    """The rate the exits needing a tx can afford for its package: each gives an even share, over its
    levels left, of what its budget has left after `paid` (its fees so far, aligned with `sharers`)."""
    budget_left = sum(
        max(0, fee_budget(e.amount, policy) - spent) // max(1, e.levels_left(snap))
        for e, spent in zip(sharers, paid, strict=True)
    )
    return budget_capped_rate(target, budget_left, 1, tx_vsize + CHILD_VSIZE_ESTIMATE)


def planned_txs(
    txs: Mapping[str, TrackedTx], snap: ChainSnapshot, targets: Mapping[str, int]
) -> Iterator[PlannedTx]:
    """Each exit tx not confirmed yet, once however many exits share it, at its target rate; funded
    when a child pays for it already (in the mempool, or ours stored for broadcast)."""
    for txid, target in targets.items():
        if snap.is_confirmed(txid):
            continue
        tracked = txs[txid]
        funded = snap.location(txid).state is TxState.MEMPOOL or any(
            c.status is ChildStatus.STORED for c in tracked.children.values()
        )
        yield PlannedTx(txid, tracked.input_txid, tracked.vsize, target, funded)
