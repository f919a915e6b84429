"""Next states from facts: pure functions, no I/O, so the state machine is tested without a node.

The cycle gathers a chain snapshot, turns it into these facts, asks for the next status of every exit tx
(once per tx, however many exits share it) and the next state of every exit, then carries out the
actions returned here: build a child, broadcast a stored package, replace an underpaying one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from exitd.chain.view import BlockRef, MempoolPackage, TxLocation, TxState
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

# A package paying within this share of the target is left alone: its rate was computed from the same
# vsizes, and replacing it for a rounding difference would only cost the incremental relay fee.
REPLACEMENT_TOLERANCE = 200  # 1/200 = 0.5 %


@dataclass(frozen=True)
class Child:
    """A CPFP child we know: ours (`ours`) or one adopted from the network."""

    txid: str
    fee: int
    package_rate: int
    ours: bool
    block: BlockRef | None = None


@dataclass(frozen=True)
class TxFacts:
    """What the snapshot says about one exit tx."""

    txid: str
    location: TxLocation
    input_txid: str
    input_confirmed: bool
    # The mempool package spending this tx's P2A output, if the tx is in the mempool.
    spender: MempoolPackage | None
    # Our children not known to be dead (stored or broadcast), newest last.
    pending_children: tuple[Child, ...]
    # The child confirmed with this tx, if this tx is confirmed and it is known.
    confirmed_child: Child | None


class ActionKind(Enum):
    BUILD = "build"
    REPLACE = "replace"
    BROADCAST = "broadcast"


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    txid: str
    child_txid: str | None = None
    min_package_fee: int | None = None


def needs_bump(package_rate: int, target: int) -> bool:
    return package_rate * REPLACEMENT_TOLERANCE < target * (REPLACEMENT_TOLERANCE - 1)


def next_tx_status(facts: TxFacts, target_rate: int) -> tuple[ExitTxStatus, Action | None]:
    """The status of one exit tx this cycle, and what to do about it."""
    location = facts.location
    if location.state is TxState.CONFIRMED:
        assert location.block is not None
        child = facts.confirmed_child
        if child is None:
            # Mined without a child of its own in that block: nothing to show but the block.
            return ExitTxStatus(
                TxStatusKind.CONFIRMED,
                child_txid="",
                origin=BlockOrigin(location.block),
                block=location.block,
            ), None
        origin = WalletOrigin(location.block) if child.ours else BlockOrigin(location.block)
        return ExitTxStatus(
            TxStatusKind.CONFIRMED, child_txid=child.txid, origin=origin, block=location.block
        ), None
    if not facts.input_confirmed:
        return ExitTxStatus(TxStatusKind.AWAITING_INPUT_CONFIRMATION, txids=(facts.input_txid,)), None
    if location.state is TxState.MEMPOOL:
        package = facts.spender
        if package is None:
            # The parent sits in the mempool without a child: a reorg re-added it and TRUC's limits evicted
            # its child. Zero-fee, it will never be mined alone: pay for it again.
            return ExitTxStatus(TxStatusKind.NEEDS_SIGNED_PACKAGE), Action(ActionKind.BUILD, facts.txid)
        ours = any(c.txid == package.txid for c in facts.pending_children)
        if needs_bump(package.rate, target_rate):
            status = ExitTxStatus(
                TxStatusKind.NEEDS_REPLACEMENT_PACKAGE, min_fee_rate=package.rate, min_fee=package.fee
            )
            return status, Action(ActionKind.REPLACE, facts.txid, package.txid, package.fee)
        found: ExitTxOrigin = WalletOrigin() if ours else MempoolOrigin(package.rate, package.fee)
        return ExitTxStatus(TxStatusKind.BROADCAST_WITH_CPFP, child_txid=package.txid, origin=found), None
    # Not in the mempool nor the chain: send our stored package again as it is (re-sending is not spending:
    # its child is built and paid for already), and only without one build a new one. A package that left
    # the mempool (expiry, eviction, a node restarted without it) is back within a cycle; if it pays less
    # than the target now, the next cycle replaces it from the mempool as the curve says.
    if facts.pending_children:
        child = facts.pending_children[-1]
        status = ExitTxStatus(TxStatusKind.NEEDS_BROADCASTING, child_txid=child.txid, origin=WalletOrigin())
        return status, Action(ActionKind.BROADCAST, facts.txid, child.txid)
    return ExitTxStatus(TxStatusKind.NEEDS_SIGNED_PACKAGE), Action(ActionKind.BUILD, facts.txid)


@dataclass(frozen=True)
class ExitFacts:
    """What the cycle knows about one exit beyond its txs' statuses."""

    tip: BlockRef
    # Blocks the claim must wait after the leaf confirms (the user clause's CSV), and its CLTV height.
    claim_delay: int
    claim_locktime: int | None
    # Block hashes at heights the current state refers to (reorg checks); missing when above the tip.
    block_hashes: dict[int, str]
    # Whether the VTXO's own output is still unspent in the chain.
    vtxo_unspent: bool
    # The mempool tx spending the VTXO's output, if any.
    vtxo_mempool_spender: str | None
    claim_location: TxLocation | None
    # When the claim is one exitd signed (exitd/engine/replacement.py): the candidate `claim_location` is of
    # and its fee; `claim_pending` while exitd has a candidate to send although none is found anywhere.
    claim_txid: str | None = None
    claim_fee: int | None = None
    claim_pending: bool = False


def claimable_height(leaf_block: BlockRef, claim_delay: int, claim_locktime: int | None) -> int:
    """The first height at which the claim's CSV (and CLTV, for HTLC-send) are met, as barkd counts."""
    return max(leaf_block.height + claim_delay, claim_locktime or 0)


def processing_or_done(tip: int, statuses: list[ExitTx], facts: ExitFacts) -> ExitState:
    """`processing` until every tx is confirmed, then `awaiting-delta` (or `claimable` right away)."""
    if not statuses or any(tx.status.kind is not TxStatusKind.CONFIRMED for tx in statuses):
        return ExitState(ExitStateKind.PROCESSING, tip, transactions=tuple(statuses))
    blocks = [tx.status.block for tx in statuses if tx.status.block is not None]
    confirmed = max(blocks, key=lambda b: b.height)
    height = claimable_height(confirmed, facts.claim_delay, facts.claim_locktime)
    return awaiting_or_claimable(
        ExitState(ExitStateKind.AWAITING_DELTA, tip, confirmed_block=confirmed, claimable_height=height),
        facts,
    )


def awaiting_or_claimable(state: ExitState, facts: ExitFacts) -> ExitState:
    assert state.claimable_height is not None
    if facts.tip.height < state.claimable_height:
        return state
    since_hash = facts.block_hashes.get(state.claimable_height)
    if since_hash is None:
        return state  # the hash is asked for next cycle
    since = BlockRef(state.claimable_height, since_hash)
    return claimable_next(ExitState(ExitStateKind.CLAIMABLE, facts.tip.height, claimable_since=since), facts)


def claimable_next(state: ExitState, facts: ExitFacts) -> ExitState:
    """From claimable: a candidate of a claim exitd signed for it confirmed (`claim_location`, found by
    the snapshot or the cycle's block search) makes it claimed, however late; a mempool spender makes it
    claim-in-progress; a spend in the chain by another tx is the cycle's conflict to end."""
    assert state.claimable_since is not None
    location = facts.claim_location
    if facts.claim_txid is not None and location is not None and location.state is TxState.CONFIRMED:
        return claimed_by(state, facts.tip.height, facts.claim_txid, location, facts.claim_fee)
    spender = facts.vtxo_mempool_spender
    if spender is not None:
        return ExitState(
            ExitStateKind.CLAIM_IN_PROGRESS,
            facts.tip.height,
            claimable_since=state.claimable_since,
            claim_txid=spender,
            claim_fee=facts.claim_fee if spender == facts.claim_txid else None,
            signed_claims=state.signed_claims,
        )
    if facts.vtxo_unspent:
        return ExitState(
            ExitStateKind.CLAIMABLE,
            facts.tip.height,
            claimable_since=state.claimable_since,
            last_scanned_block=facts.tip,
            signed_claims=state.signed_claims,
        )
    return state


def claimed_by(
    state: ExitState, tip: int, txid: str | None, location: TxLocation, fee: int | None
) -> ExitState:
    """Claimed by `txid`, confirmed at `location`, paying `fee` (known when it is a claim exitd signed)."""
    return ExitState(
        ExitStateKind.CLAIMED,
        tip,
        claimable_since=state.claimable_since,
        txid=txid,
        block=location.block,
        claim_fee=fee,
        signed_claims=state.signed_claims,
    )


def claim_next(state: ExitState, facts: ExitFacts) -> ExitState:
    """claim-in-progress or claimed, following the claim tx (which may be reorged out or dropped)."""
    assert state.claimable_since is not None
    txid = facts.claim_txid or (
        state.claim_txid if state.kind is ExitStateKind.CLAIM_IN_PROGRESS else state.txid
    )
    fee = facts.claim_fee if facts.claim_txid else state.claim_fee
    location = facts.claim_location
    in_progress = ExitState(
        ExitStateKind.CLAIM_IN_PROGRESS,
        facts.tip.height,
        claimable_since=state.claimable_since,
        claim_txid=txid,
        claim_fee=fee,
        signed_claims=state.signed_claims,
    )
    if location is not None and location.state is TxState.CONFIRMED:
        return claimed_by(state, facts.tip.height, txid, location, fee)
    if location is not None and location.state is TxState.MEMPOOL:
        return in_progress
    if state.kind is ExitStateKind.CLAIMED and not facts.vtxo_unspent:
        # Mined before exitd watched it and its outputs spent since (a datadir upgraded from a tx index):
        # nothing places the claim, but the VTXO's output is spent in the chain, so it stays claimed.
        return state
    if facts.claim_pending and facts.vtxo_unspent and facts.vtxo_mempool_spender is None:
        # Refused for its fee, evicted or reorged out: exitd sends a candidate again (replacement.py).
        return in_progress
    # Dropped from the mempool (or reorged out and not re-accepted): claimable again, its claims still
    # watched (a candidate the network kept may yet be mined).
    back = ExitState(
        ExitStateKind.CLAIMABLE,
        facts.tip.height,
        claimable_since=state.claimable_since,
        signed_claims=state.signed_claims,
    )
    return claimable_next(back, facts)
