"""Claims that never stick: where a claim's candidates are, and what its next candidate pays.

A claim has no deadline, but one left below the market may wait in the mempool for ever, and one the node
refused for its fee fails the same way each time it is sent again. So every candidate exitd signs is
stored before it is broadcast (exitd/engine/claim_desk.py), and each cycle looks at each claim whose exits
are in progress:
- a candidate confirmed: nothing to do; whichever it is completes the exits, with its own fee;
- one in the mempool that has waited `replace_after_blocks` blocks and pays less than the claim target
  now: replaced by RBF, same inputs and destination, paying at least the target and at least the old fee
  plus the node's incremental relay fee for its own size (BIP125 rules 3 and 4, as a CPFP child that
  replaces a package: exitd/wallet/builder.py's package_fee);
- none in the mempool or the chain: the newest is sent again as it is (a node restart, an eviction),
  unless the node refused it for its fee: then, on a later block, a new candidate priced from the market
  and above the refused rate (fee_policy.repriced_claim_rate), never the refused tx again.
The fee comes out of the claimed amount: a candidate that would leave less than a non-dust output is not
made (the claim stays with the candidate it has).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from exitd.chain.fees import RelayPolicy, fee_at_rate
from exitd.chain.view import TxLocation, TxState
from exitd.engine.claims import CLAIM_DUST
from exitd.engine.fee_policy import repriced_claim_rate
from exitd.engine.model import ClaimCandidate
from exitd.wallet.builder import Replacing, package_fee


@dataclass(frozen=True)
class ClaimPolicy:
    """`replace_after_blocks`: blocks a candidate below the target waits in the mempool before it is
    replaced; `max_rate`: the rate (sat/kvB) above which no claim is priced."""

    replace_after_blocks: int = 3
    max_rate: int = 20_000


class ClaimMove(Enum):
    WAIT = "wait"
    SEND = "send"  # the newest candidate again, as it is
    REPLACE = "replace"  # a new candidate paying `fee`


@dataclass(frozen=True)
class ClaimStep:
    move: ClaimMove
    fee: int = 0  # REPLACE: the new candidate's fee (sat)
    rate: int = 0  # and the rate it was priced at (sat/kvB)


WAIT = ClaimStep(ClaimMove.WAIT)


@dataclass(frozen=True)
class ClaimPlace:
    """Where a claim stands: the candidate that places it (confirmed, else in the mempool, else the newest,
    found nowhere) and its location, and the claim's newest candidate."""

    candidate: ClaimCandidate
    location: TxLocation
    newest: ClaimCandidate

    @property
    def found(self) -> bool:
        return self.location.state is not TxState.NOT_FOUND


def claim_place(candidates: Sequence[ClaimCandidate], locations: Sequence[TxLocation]) -> ClaimPlace:
    """The candidate confirmed, else the one in the mempool, else the newest (candidates oldest first,
    `locations` aligned with them; they conflict, so at most one is in the mempool or the chain)."""
    for state in (TxState.CONFIRMED, TxState.MEMPOOL):
        for c, location in zip(candidates, locations, strict=True):
            if location.state is state:
                return ClaimPlace(c, location, candidates[-1])
    return ClaimPlace(candidates[-1], locations[-1], candidates[-1])


def needs_step(place: ClaimPlace, tip: int, policy: ClaimPolicy) -> bool:
    """Whether the claim may need a move this cycle (the market is read only for those that may)."""
    if place.location.state is TxState.CONFIRMED:
        return False
    if place.found:
        return tip - place.candidate.signed_height >= policy.replace_after_blocks
    return True


def claim_step(
    place: ClaimPlace, tip: int, target: int | None, relay: RelayPolicy, policy: ClaimPolicy
) -> ClaimStep:
    """The claim's move this cycle; `target` is the claim's rate now (sat/kvB, fee_policy.claim_rate;
    None: nobody can price it now, so nothing is repriced or replaced, and one that left the mempool
    unrefused is sent again as it was)."""
    c, newest = place.candidate, place.newest
    if place.location.state is TxState.CONFIRMED:
        return WAIT
    refused = newest.refused_height
    if target is None:
        return ClaimStep(ClaimMove.SEND) if not place.found and refused is None else WAIT
    if refused is not None:
        if tip <= refused:
            return WAIT  # refused at this tip: repriced on a later block only
        target = repriced_claim_rate(target, relay, newest.rate)
    budget = c.amount - CLAIM_DUST
    if place.location.state is TxState.MEMPOOL:
        if tip - c.signed_height < policy.replace_after_blocks or c.fee >= fee_at_rate(target, c.vsize):
            return WAIT
        fee = replacement_fee(c, target, relay, budget)
        return WAIT if fee is None else ClaimStep(ClaimMove.REPLACE, fee, fee * 1000 // c.vsize)
    if refused is None:
        return ClaimStep(ClaimMove.SEND)
    fee = fee_at_rate(target, c.vsize)
    return WAIT if fee > budget else ClaimStep(ClaimMove.REPLACE, fee, target)


def replacement_fee(live: ClaimCandidate, target: int, relay: RelayPolicy, budget: int) -> int | None:
    """The fee of a candidate replacing `live` in the mempool: the target's, and at least what BIP125 asks
    (the replaced fee plus the incremental relay fee for its own size, which is `live`'s: same inputs and
    output, fixed-size signatures); at most `budget`. None when even the least a replacement pays is
    beyond it."""
    replacing = Replacing(live.fee, relay.incremental)
    least = package_fee(relay.floor, live.vsize, replacing)
    if least > budget:
        return None
    return min(package_fee(target, live.vsize, replacing), budget)
