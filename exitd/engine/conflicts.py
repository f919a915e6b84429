"""Conflicts: an exit tx whose input was spent by a tx that is not part of the exit can never confirm.

The Ark server's sweep after expiry, a forfeit, a double-spend by the key holders: once such a tx is in the
chain, the exit is over. Retrying it would fail every cycle forever (other engines did exactly that), so
the exit ends in barkd 0.6's `vtxo-already-spent` state, naming the tx and the outpoint it took; its
children in flight are abandoned and their coins released, the VTXO is spent, an alert is raised
(exit-conflicted, exitd/engine/guard.py), and no cycle sends anything for it again. A reorg that takes the
conflicting tx out of the chain starts the exit over.

The claim has the same end: the VTXO's own output (the exit's last output, the claim's input) spent in the
chain by a tx that is none of exitd's claims (the server's refund leaf after an HTLC receive's deadline, a
claim another tool made) leaves nothing to claim, so the exit ends there too instead of staying claimable
and being claimed again every cycle.

Only a conflict in the chain ends an exit: one in the mempool may still be replaced or evicted, and the
package's refusal says so in the exit's error meanwhile. A mempool tx spending the VTXO's output is the
exit's claim in progress only when its witness spends through the user's claim leaf (exitd's own claim, or
one another tool made with the user's key); the server's refund of an HTLC receive, or any other spend,
is set aside: the exit stays claimable, and ends here once that tx is mined.
"""

from __future__ import annotations

import logging
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass

from exitd.ark.claim import spends_through
from exitd.ark.encoding import OutPoint
from exitd.chain.rpc import BitcoinRpc
from exitd.chain.spends import ChainSpend, find_chain_spend, mempool_witnesses
from exitd.chain.view import ChainSnapshot
from exitd.engine.errors import VtxoAlreadySpent
from exitd.engine.model import (
    ACTIVE_KINDS,
    ChildRecord,
    ChildStatus,
    ClaimCandidate,
    LiveExit,
    TrackedTx,
)
from exitd.engine.states import ExitState, ExitStateKind
from exitd.log import event, get_logger

log = get_logger("engine")

# The states in which the VTXO's output is the claim's to spend: spent otherwise, the exit is over.
_CLAIMING = (ExitStateKind.CLAIMABLE, ExitStateKind.CLAIM_IN_PROGRESS)


@dataclass(frozen=True)
class Suspect:
    """An exit whose tx `txid` is not confirmed while the outpoint it spends is spent in the chain."""

    exit: LiveExit
    txid: str
    spent: OutPoint


@dataclass(frozen=True)
class ClaimSuspect:
    """A claimable (or being claimed) exit whose VTXO output is spent in the chain while none of its claims
    `claims` (the one its state names and exitd's candidates) is confirmed; `lowest`: the height its leaf
    confirmed in, where the search for the spender stops."""

    exit: LiveExit
    claims: frozenset[str]
    lowest: int


def suspects(exits: Iterable[LiveExit], txs: Mapping[str, TrackedTx], snap: ChainSnapshot) -> list[Suspect]:
    """The exits in progress whose first unconfirmed tx has lost its input in the chain."""
    found = []
    for e in exits:
        if e.state.kind not in ACTIVE_KINDS:
            continue
        for txid in e.txids:
            if snap.is_confirmed(txid):
                continue
            tracked = txs[txid]
            if snap.is_confirmed(tracked.input_txid) and snap.unspent.get(tracked.spent) is False:
                found.append(Suspect(e, txid, tracked.spent))
            break
    return found


def claim_suspects(
    exits: Iterable[LiveExit], candidates: Mapping[str, Sequence[ClaimCandidate]], snap: ChainSnapshot
) -> list[ClaimSuspect]:
    """The exits in CLAIMABLE / CLAIM_IN_PROGRESS whose VTXO output the chain shows spent by no claim of
    theirs it shows confirmed (`candidates`: exitd's claim candidates, by VTXO id)."""
    found = []
    for e in exits:
        if e.state.kind not in _CLAIMING:
            continue
        if snap.unspent.get(e.outpoint) is not False:
            continue
        claims = frozenset(
            t for t in (e.state.claim_txid, *(c.txid for c in candidates.get(e.vtxo_id, ()))) if t
        )
        if any(snap.is_confirmed(t) for t in claims):
            continue
        leaf = snap.location(e.txids[-1]).block
        found.append(ClaimSuspect(e, claims, leaf.height if leaf is not None else 0))
    return found


def conflicted_state(tip: int, spend: ChainSpend, spent: OutPoint) -> ExitState:
    return ExitState(
        ExitStateKind.VTXO_ALREADY_SPENT,
        tip,
        txid=spend.txid,
        block=spend.block,
        spent_input=str(spent),
    )


def conflict_error(vtxo_id: str, state: ExitState) -> VtxoAlreadySpent:
    """The error a conflicted exit carries: which tx spent what, and in which block."""
    assert state.block is not None
    if state.spent_input == vtxo_id:
        why = (
            f"its exit's output {state.spent_input} was spent by {state.txid} in block {state.block.height}, "
            "not by a claim exitd made"
        )
    else:
        why = (
            f"its exit tx input {state.spent_input} was spent by {state.txid} in block {state.block.height}, "
            "a tx not part of this exit"
        )
    return VtxoAlreadySpent(
        vtxo_id,
        why,
        spent_by=state.txid or "",
        spent_input=state.spent_input or "",
        spent_at_height=state.block.height,
    )


def spent_outpoint(state: ExitState) -> OutPoint | None:
    """The outpoint a conflicted exit lost."""
    if state.kind is not ExitStateKind.VTXO_ALREADY_SPENT or state.spent_input is None:
        return None
    return OutPoint.from_str(state.spent_input)


def resumed(e: LiveExit, snap: ChainSnapshot) -> ExitState | None:
    """A conflicted exit whose lost input a reorg made unspent in the chain again starts over; else None."""
    spent = spent_outpoint(e.state)
    if spent is None or snap.unspent.get(spent) is not True:
        return None
    return ExitState(ExitStateKind.START, snap.tip.height)


def abandoned_children(e: LiveExit, txid: str, txs: Mapping[str, TrackedTx]) -> list[ChildRecord]:
    """The children in flight of the conflicted tx and of every level after it, now abandoned."""
    level = e.txids.index(txid)
    dropped = []
    for t in e.txids[level:]:
        for child in txs[t].children.values():
            if child.status.in_flight:
                child.status = ChildStatus.ABANDONED
                dropped.append(child)
    return dropped


async def find_conflicts(
    rpc: BitcoinRpc, found: list[Suspect], snap: ChainSnapshot, txs: Mapping[str, TrackedTx]
) -> list[tuple[Suspect, ChainSpend]]:
    """The conflicting tx of each suspect, read from the blocks (once per outpoint). A suspect whose spend
    is its own tx (it confirmed between two reads of one snapshot) is no conflict; one whose spender is
    not found within the search is logged and looked for again next cycle."""
    spends: dict[OutPoint, ChainSpend | None] = {}
    conflicts = []
    for s in found:
        if s.spent not in spends:
            made = snap.location(txs[s.txid].input_txid).block
            lowest = made.height if made is not None else 0
            spends[s.spent] = await find_chain_spend(rpc, s.spent, snap.tip.height, lowest)
        spend = spends[s.spent]
        if spend is None:
            event(log, logging.WARNING, "conflict_spender_not_found", vtxo=s.exit.vtxo_id, txid=s.txid)
        elif spend.txid != s.txid:
            conflicts.append((s, spend))
    return conflicts


async def find_claim_spends(
    rpc: BitcoinRpc, found: list[ClaimSuspect], snap: ChainSnapshot, ours: Container[str]
) -> tuple[list[tuple[ClaimSuspect, ChainSpend]], list[tuple[ClaimSuspect, ChainSpend]]]:
    """The tx that spent each suspect's VTXO output, read from the blocks: (conflicts, claims), the spends
    by a tx that is none of its claims nor any claim tx exitd signed (`ours`), and those by one that is (a
    candidate the snapshot did not place: mined while nothing watched it, its output spent since; the
    cycle places it, so the exit is claimed and not searched for again). A spender not found within the
    search is logged and looked for again next cycle."""
    conflicts, claims = [], []
    for s in found:
        spend = await find_chain_spend(rpc, s.exit.outpoint, snap.tip.height, s.lowest)
        if spend is None:
            event(log, logging.WARNING, "conflict_spender_not_found", vtxo=s.exit.vtxo_id)
        elif spend.txid in s.claims or spend.txid in ours:
            claims.append((s, spend))
        else:
            conflicts.append((s, spend))
    return conflicts, claims


def unjudged_spends(
    exits: Iterable[LiveExit], snap: ChainSnapshot, ours: Container[str], judged: Container[str]
) -> dict[str, LiveExit]:
    """The mempool txs spending a watched exit's VTXO output (by txid) whose witness is still to be read:
    not a claim exitd signed, not the claim the exit's state already follows, not judged before."""
    found = {}
    for e in exits:
        spender = snap.spenders.get(e.outpoint)
        if spender is None or e.claim_leaf is None or spender == e.state.claim_txid:
            continue
        if spender in ours or spender in judged:
            continue
        found[spender] = e
    return found


async def set_aside_rival_spends(
    rpc: BitcoinRpc,
    exits: Sequence[LiveExit],
    snap: ChainSnapshot,
    ours: Container[str],
    is_claim: dict[str, bool],
) -> None:
    """Take out of `snap.spenders` the mempool spends of VTXO outputs that are not claims (their witness
    does not go through the user's claim leaf), so that no exit takes one for its claim in progress.
    `is_claim` keeps the verdict on each spender still there across cycles: its witness is read once (one
    round trip)."""
    spenders = {snap.spenders[e.outpoint] for e in exits if e.outpoint in snap.spenders}
    for gone in [txid for txid in is_claim if txid not in spenders]:
        del is_claim[gone]
    unjudged = unjudged_spends(exits, snap, ours, is_claim)
    if unjudged:
        witnesses = await mempool_witnesses(rpc, {txid: e.outpoint for txid, e in unjudged.items()})
        for txid, witness in witnesses.items():
            e = unjudged[txid]
            assert e.claim_leaf is not None
            is_claim[txid] = spends_through(witness, e.claim_leaf)
            if not is_claim[txid]:
                event(log, logging.WARNING, "vtxo_output_spent_in_mempool", vtxo=e.vtxo_id, by=txid)
    drop_rival_spends(exits, snap, is_claim)


def drop_rival_spends(exits: Iterable[LiveExit], snap: ChainSnapshot, is_claim: Mapping[str, bool]) -> None:
    """Take out of `snap.spenders` the spenders of the exits' VTXO outputs judged no claim."""
    for e in exits:
        spender = snap.spenders.get(e.outpoint)
        if spender is not None and is_claim.get(spender) is False:
            del snap.spenders[e.outpoint]
