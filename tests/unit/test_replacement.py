"""When a claim in flight is sent again, repriced or replaced, and what the new candidate pays."""

from __future__ import annotations

from dataclasses import replace

from bitcoin.core import CMutableTransaction, CMutableTxIn, CMutableTxOut, COutPoint, CScript, CTransaction

from exitd.chain.fees import RelayPolicy, fee_at_rate
from exitd.chain.view import MEMPOOL, NOT_FOUND, BlockRef, TxLocation, TxState
from exitd.engine.claims import CLAIM_DUST
from exitd.engine.model import ClaimCandidate
from exitd.engine.replacement import (
    WAIT,
    ClaimMove,
    ClaimPlace,
    ClaimPolicy,
    ClaimStep,
    claim_place,
    claim_step,
    needs_step,
    replacement_fee,
)

RELAY = RelayPolicy(min_relay=1000, incremental=1000, mempool_min=1000)
POLICY = ClaimPolicy(replace_after_blocks=3, max_rate=20_000)
VSIZE = 150
AMOUNT = 50_000
CONFIRMED = TxLocation(TxState.CONFIRMED, BlockRef(130, "11" * 32))


def candidate(seq: int, fee: int, signed_height: int = 100, refused: int | None = None) -> ClaimCandidate:
    """A candidate claiming AMOUNT (its output is the amount less its fee), signed at `signed_height`."""
    tx = CMutableTransaction(
        [CMutableTxIn(COutPoint(b"\x01" * 32, 0))],
        [CMutableTxOut(AMOUNT - fee, CScript(b"\x51\x20" + b"\x02" * 32))],
    )
    raw = CTransaction.from_tx(tx).serialize()
    return ClaimCandidate(
        f"{seq:064x}", f"{0:064x}", seq, raw, fee, VSIZE, fee * 1000 // VSIZE, signed_height, refused
    )


def at(c: ClaimCandidate, location: TxLocation, newest: ClaimCandidate | None = None) -> ClaimPlace:
    return ClaimPlace(c, location, newest or c)


def test_the_place_is_the_confirmed_candidate_else_the_one_in_the_mempool_else_the_newest() -> None:
    old, new = candidate(0, 150), candidate(1, 450)
    assert claim_place([old, new], [CONFIRMED, NOT_FOUND]) == ClaimPlace(old, CONFIRMED, new)
    assert claim_place([old, new], [MEMPOOL, NOT_FOUND]) == ClaimPlace(old, MEMPOOL, new)
    assert claim_place([old, new], [NOT_FOUND, MEMPOOL]) == ClaimPlace(new, MEMPOOL, new)
    assert claim_place([old, new], [NOT_FOUND, NOT_FOUND]) == ClaimPlace(new, NOT_FOUND, new)


def test_a_confirmed_claim_is_left_alone_whichever_candidate_it_is() -> None:
    old, new = candidate(0, 150), candidate(1, 450)
    place = ClaimPlace(old, CONFIRMED, new)
    assert not needs_step(place, 200, POLICY)
    assert claim_step(place, 200, 10_000, RELAY, POLICY) == WAIT


def test_a_claim_below_target_is_replaced_only_after_the_configured_blocks() -> None:
    live = candidate(0, fee_at_rate(1000, VSIZE), signed_height=100)  # 1 sat/vB; the target is 2 sat/vB
    for tip in (100, 101, 102):
        assert not needs_step(at(live, MEMPOOL), tip, POLICY)
        assert claim_step(at(live, MEMPOOL), tip, 2000, RELAY, POLICY) == WAIT
    assert needs_step(at(live, MEMPOOL), 103, POLICY)
    step = claim_step(at(live, MEMPOOL), 103, 2000, RELAY, POLICY)
    # BIP125 rules 3 and 4: the old fee plus the incremental relay fee for its size (150 + 150 = 300),
    # which is also the target's fee here.
    assert step == ClaimStep(ClaimMove.REPLACE, 300, 2000)


def test_a_claim_at_or_above_target_is_never_replaced() -> None:
    live = candidate(0, fee_at_rate(2000, VSIZE))
    assert claim_step(at(live, MEMPOOL), 150, 2000, RELAY, POLICY) == WAIT
    assert claim_step(at(live, MEMPOOL), 150, 1000, RELAY, POLICY) == WAIT


def test_a_replacement_pays_the_target_or_the_bip125_minimum_whichever_is_more() -> None:
    live = candidate(0, 150)
    assert replacement_fee(live, 10_000, RELAY, AMOUNT) == fee_at_rate(10_000, VSIZE)  # the target's fee
    assert replacement_fee(live, 1500, RELAY, AMOUNT) == 150 + fee_at_rate(1000, VSIZE)  # rule 4 wins
    bigger_increment = RelayPolicy(min_relay=1000, incremental=5000, mempool_min=1000)
    assert replacement_fee(live, 2000, bigger_increment, AMOUNT) == 150 + 750


def test_a_replacement_stays_within_the_claimed_amount() -> None:
    live = candidate(0, 150)
    budget = AMOUNT - CLAIM_DUST
    # The target would take more than the output: the replacement pays what keeps a non-dust output.
    assert replacement_fee(live, 1_000_000, RELAY, budget) == budget
    # Not even the least a replacement must pay fits: none is made, the claim stays as it is.
    assert replacement_fee(live, 2000, RELAY, 299) is None
    poor = candidate(0, AMOUNT - CLAIM_DUST - 100)
    assert claim_step(at(poor, MEMPOOL), 200, 500_000, RELAY, POLICY) == WAIT


def test_a_claim_that_left_the_mempool_is_sent_again_as_it_is() -> None:
    gone = candidate(0, 300)
    assert needs_step(at(gone, NOT_FOUND), 100, POLICY)
    assert claim_step(at(gone, NOT_FOUND), 100, 5000, RELAY, POLICY) == ClaimStep(ClaimMove.SEND)


def test_a_claim_refused_for_its_fee_is_repriced_on_a_later_block_never_sent_again() -> None:
    refused = candidate(0, fee_at_rate(1000, VSIZE), signed_height=100, refused=100)
    assert claim_step(at(refused, NOT_FOUND), 100, 1000, RELAY, POLICY) == WAIT  # the same block
    step = claim_step(at(refused, NOT_FOUND), 101, 1000, RELAY, POLICY)
    # Above the refused rate by the incremental relay fee, although the market did not move.
    assert step == ClaimStep(ClaimMove.REPLACE, fee_at_rate(2000, VSIZE), 2000)
    full = RelayPolicy(min_relay=1000, incremental=1000, mempool_min=7000)
    step = claim_step(at(refused, NOT_FOUND), 101, full.raised(1000), full, POLICY)
    assert step == ClaimStep(ClaimMove.REPLACE, fee_at_rate(7000, VSIZE), 7000)  # the mempool floor now


def test_a_refused_replacement_of_a_claim_in_the_mempool_is_outbid_on_a_later_block() -> None:
    live = candidate(0, 150, signed_height=100)
    refused = candidate(1, 300, signed_height=103, refused=103)
    place = ClaimPlace(live, MEMPOOL, refused)
    assert claim_step(place, 103, 2000, RELAY, POLICY) == WAIT
    # Priced above the refused candidate's rate (2000 + 1000), not its refused fee again.
    assert claim_step(place, 104, 2000, RELAY, POLICY) == ClaimStep(ClaimMove.REPLACE, 450, 3000)


def test_a_refused_claim_too_dear_for_its_output_waits() -> None:
    refused = replace(candidate(0, AMOUNT - CLAIM_DUST - 10), refused_height=100)
    assert claim_step(at(refused, NOT_FOUND), 101, 1000, RELAY, POLICY) == WAIT


def test_with_no_market_reading_a_claim_is_neither_repriced_nor_replaced_only_sent_again() -> None:
    """fee_policy.claim_rate gives no target when bitcoind has no estimate and a backlog hides the market."""
    stuck = candidate(0, fee_at_rate(1000, VSIZE), signed_height=100)
    assert claim_step(at(stuck, MEMPOOL), 110, None, RELAY, POLICY) == WAIT
    refused = candidate(0, fee_at_rate(1000, VSIZE), signed_height=100, refused=100)
    assert claim_step(at(refused, NOT_FOUND), 110, None, RELAY, POLICY) == WAIT
    assert claim_step(at(stuck, NOT_FOUND), 110, None, RELAY, POLICY) == ClaimStep(ClaimMove.SEND)
