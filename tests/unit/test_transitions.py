"""The pure state machine: every per-tx status and every top-level step, from facts alone."""

from exitd.chain.view import NOT_FOUND, BlockRef, MempoolPackage, TxLocation, TxState
from exitd.engine.states import (
    ExitState,
    ExitStateKind,
    ExitTx,
    ExitTxStatus,
    MempoolOrigin,
    TxStatusKind,
    WalletOrigin,
)
from exitd.engine.transitions import (
    ActionKind,
    Child,
    ExitFacts,
    TxFacts,
    claim_next,
    claimable_height,
    claimable_next,
    next_tx_status,
    processing_or_done,
)

TIP = BlockRef(200, "11" * 32)
BLOCK = BlockRef(199, "22" * 32)
MEMPOOL = TxLocation(TxState.MEMPOOL)
CONFIRMED = TxLocation(TxState.CONFIRMED, BLOCK)
OURS = Child("aa" * 32, fee=500, package_rate=2000, ours=True)


def facts(location: TxLocation = NOT_FOUND, input_confirmed: bool = True, **kw: object) -> TxFacts:
    base: dict[str, object] = dict(
        txid="ee" * 32,
        location=location,
        input_txid="ff" * 32,
        input_confirmed=input_confirmed,
        spender=None,
        pending_children=(),
        confirmed_child=None,
    )
    base.update(kw)
    return TxFacts(**base)  # type: ignore[arg-type]


def test_unconfirmed_input_waits() -> None:
    status, action = next_tx_status(facts(input_confirmed=False), 2000)
    assert status.kind is TxStatusKind.AWAITING_INPUT_CONFIRMATION and status.txids == ("ff" * 32,)
    assert action is None


def test_nothing_anywhere_builds() -> None:
    status, action = next_tx_status(facts(), 2000)
    assert status.kind is TxStatusKind.NEEDS_SIGNED_PACKAGE
    assert action is not None and action.kind is ActionKind.BUILD


def test_stored_child_is_broadcast_not_rebuilt() -> None:
    status, action = next_tx_status(facts(pending_children=(OURS,)), 2000)
    assert status.kind is TxStatusKind.NEEDS_BROADCASTING and status.child_txid == OURS.txid
    assert action is not None and action.kind is ActionKind.BROADCAST and action.child_txid == OURS.txid


def test_stored_child_paying_less_than_the_target_is_sent_again_before_any_replacement() -> None:
    """Re-sending is not spending: a package that left the mempool goes back as it was (its child is built
    and paid already, whatever the budget says now); RBF follows the curve from the mempool."""
    status, action = next_tx_status(facts(pending_children=(OURS,)), 5000)
    assert status.kind is TxStatusKind.NEEDS_BROADCASTING and status.child_txid == OURS.txid
    assert action is not None and action.kind is ActionKind.BROADCAST


def test_our_package_in_mempool_at_target() -> None:
    package = MempoolPackage(OURS.txid, fee=500, vsize=250)  # exactly 2000 sat/kvB
    status, action = next_tx_status(facts(MEMPOOL, spender=package, pending_children=(OURS,)), 2000)
    assert status.kind is TxStatusKind.BROADCAST_WITH_CPFP and status.origin == WalletOrigin()
    assert action is None


def test_foreign_low_package_is_replaced_from_its_fee() -> None:
    package = MempoolPackage("bb" * 32, fee=250, vsize=250)  # 1000 sat/kvB
    status, action = next_tx_status(facts(MEMPOOL, spender=package), 2000)
    assert status.kind is TxStatusKind.NEEDS_REPLACEMENT_PACKAGE
    assert (status.min_fee_rate, status.min_fee) == (1000, 250)
    assert action is not None and action.kind is ActionKind.REPLACE and action.min_package_fee == 250


def test_foreign_package_paying_enough_is_adopted() -> None:
    package = MempoolPackage("bb" * 32, fee=1000, vsize=250)
    status, _ = next_tx_status(facts(MEMPOOL, spender=package), 2000)
    assert status.kind is TxStatusKind.BROADCAST_WITH_CPFP and status.origin is not None
    assert status.origin == MempoolOrigin(4000, 1000)


def test_rounding_is_not_a_reason_to_replace() -> None:
    package = MempoolPackage(OURS.txid, fee=4995, vsize=2500)  # 1998 vs 2000: within 0.5 %
    assert next_tx_status(facts(MEMPOOL, spender=package, pending_children=(OURS,)), 2000)[1] is None


def test_confirmed_with_our_child() -> None:
    child = Child(OURS.txid, 500, 2000, True, BLOCK)
    status, action = next_tx_status(facts(CONFIRMED, confirmed_child=child), 9999)
    assert status.kind is TxStatusKind.CONFIRMED and status.block == BLOCK and action is None
    assert status.origin == WalletOrigin(BLOCK)


def exit_facts(**kw: object) -> ExitFacts:
    base: dict[str, object] = dict(
        tip=TIP,
        claim_delay=6,
        claim_locktime=None,
        block_hashes={},
        vtxo_unspent=True,
        vtxo_mempool_spender=None,
        claim_location=None,
    )
    base.update(kw)
    return ExitFacts(**base)  # type: ignore[arg-type]


def confirmed_tx(block: BlockRef) -> ExitTx:
    return ExitTx(
        "ee" * 32,
        ExitTxStatus(TxStatusKind.CONFIRMED, child_txid="", origin=WalletOrigin(block), block=block),
    )


def test_all_confirmed_waits_for_the_delta() -> None:
    state = processing_or_done(
        200, [confirmed_tx(BlockRef(195, "33" * 32)), confirmed_tx(BLOCK)], exit_facts()
    )
    assert state.kind is ExitStateKind.AWAITING_DELTA
    assert state.confirmed_block == BLOCK and state.claimable_height == 205


def test_delta_passed_is_claimable_at_that_block() -> None:
    old = BlockRef(190, "44" * 32)
    state = processing_or_done(200, [confirmed_tx(old)], exit_facts(block_hashes={196: "55" * 32}))
    assert state.kind is ExitStateKind.CLAIMABLE
    assert state.claimable_since == BlockRef(196, "55" * 32) and state.last_scanned_block == TIP


def test_htlc_send_also_waits_for_its_cltv() -> None:
    assert claimable_height(BLOCK, 12, 300) == 300
    assert claimable_height(BLOCK, 12, None) == 211


def test_one_unconfirmed_tx_keeps_processing() -> None:
    txs = [confirmed_tx(BLOCK), ExitTx("ab" * 32, ExitTxStatus(TxStatusKind.NEEDS_SIGNED_PACKAGE))]
    assert processing_or_done(200, txs, exit_facts()).kind is ExitStateKind.PROCESSING


def test_claim_follows_its_tx_and_falls_back_when_dropped() -> None:
    state = ExitState(ExitStateKind.CLAIM_IN_PROGRESS, 200, claimable_since=BLOCK, claim_txid="cc" * 32)
    claimed = claim_next(
        state, exit_facts(claim_location=TxLocation(TxState.CONFIRMED, TIP), vtxo_unspent=False)
    )
    assert claimed.kind is ExitStateKind.CLAIMED and claimed.txid == "cc" * 32 and claimed.block == TIP
    # reorged out and gone from the mempool: claimable again
    back = claim_next(claimed, exit_facts(claim_location=NOT_FOUND))
    assert back.kind is ExitStateKind.CLAIMABLE and back.claimable_since == BLOCK


def test_a_claim_that_nothing_places_stays_claimed_while_the_vtxo_output_is_spent_in_the_chain() -> None:
    """A claim mined before exitd watched it whose output was spent since (an upgraded datadir)."""
    claimed = ExitState(ExitStateKind.CLAIMED, 200, claimable_since=BLOCK, txid="cc" * 32, block=TIP)
    assert claim_next(claimed, exit_facts(claim_location=NOT_FOUND, vtxo_unspent=False)) == claimed
    # A claim in progress that is nowhere is not taken for mined on that ground: a conflict's spend is.
    state = ExitState(ExitStateKind.CLAIM_IN_PROGRESS, 200, claimable_since=BLOCK, claim_txid="cc" * 32)
    back = claim_next(state, exit_facts(claim_location=NOT_FOUND, vtxo_unspent=False))
    assert back.kind is ExitStateKind.CLAIMABLE


def test_a_claim_of_exitd_follows_whichever_candidate_places_it_with_that_candidates_fee() -> None:
    state = ExitState(
        ExitStateKind.CLAIM_IN_PROGRESS, 200, claimable_since=BLOCK, claim_txid="dd" * 32, claim_fee=450
    )
    # The older candidate (cc, 150 sat) confirmed although the newer one (dd) was the one in the mempool.
    older = exit_facts(
        claim_location=TxLocation(TxState.CONFIRMED, TIP),
        claim_txid="cc" * 32,
        claim_fee=150,
        vtxo_unspent=False,
    )
    claimed = claim_next(state, older)
    assert (claimed.kind, claimed.txid, claimed.claim_fee, claimed.block) == (
        ExitStateKind.CLAIMED,
        "cc" * 32,
        150,
        TIP,
    )
    # Refused for its fee or evicted: nowhere, but exitd has a candidate to send, so still in progress.
    pending = claim_next(
        state, exit_facts(claim_location=NOT_FOUND, claim_txid="dd" * 32, claim_fee=450, claim_pending=True)
    )
    assert pending.same_as(state)
    # ... unless something else spends the VTXO's output.
    taken = exit_facts(
        claim_location=NOT_FOUND, claim_txid="dd" * 32, claim_pending=True, vtxo_mempool_spender="ee" * 32
    )
    assert claim_next(state, taken).claim_txid == "ee" * 32


def test_parent_left_alone_in_the_mempool_gets_a_new_child() -> None:
    status, action = next_tx_status(facts(MEMPOOL, spender=None), 2000)
    assert status.kind is TxStatusKind.NEEDS_SIGNED_PACKAGE
    assert action is not None and action.kind is ActionKind.BUILD


def test_a_claimable_exit_is_claimed_by_a_dropped_claim_of_exitd_that_confirms_after_all() -> None:
    """A claim exitd signed, dropped from the mempool (the exit fell back to claimable), then mined."""
    mine = "cc" * 32
    state = ExitState(ExitStateKind.CLAIMABLE, 200, claimable_since=BLOCK, signed_claims=(mine,))
    mined = exit_facts(
        claim_location=TxLocation(TxState.CONFIRMED, TIP), claim_txid=mine, claim_fee=150, vtxo_unspent=False
    )
    claimed = claimable_next(state, mined)
    assert (claimed.kind, claimed.txid, claimed.block, claimed.claim_fee) == (
        ExitStateKind.CLAIMED,
        mine,
        TIP,
        150,
    )
    assert claimed.claimable_since == BLOCK and claimed.signed_claims == (mine,)
    # A reorg takes it back to the mempool: in progress again, its fee kept.
    back = claim_next(claimed, exit_facts(claim_location=MEMPOOL, claim_txid=mine, claim_fee=150))
    assert (back.kind, back.claim_txid, back.claim_fee) == (ExitStateKind.CLAIM_IN_PROGRESS, mine, 150)
    # Seen in the mempool first: in progress with its fee.
    sent = exit_facts(claim_location=MEMPOOL, claim_txid=mine, claim_fee=150, vtxo_mempool_spender=mine)
    in_progress = claimable_next(state, sent)
    assert (in_progress.kind, in_progress.claim_txid, in_progress.claim_fee) == (
        ExitStateKind.CLAIM_IN_PROGRESS,
        mine,
        150,
    )
    # The output spent in the chain by no claim of exitd's: left as it is (the cycle ends the conflict).
    assert claimable_next(state, exit_facts(vtxo_unspent=False)) == state


def test_a_claim_that_falls_back_to_claimable_keeps_the_claims_exitd_signed() -> None:
    mine, rival = "cc" * 32, "ee" * 32
    # exitd's claim was outbid in the mempool by another tool's, which is then dropped too.
    state = ExitState(
        ExitStateKind.CLAIM_IN_PROGRESS, 200, claimable_since=BLOCK, claim_txid=rival, signed_claims=(mine,)
    )
    back = claim_next(state, exit_facts(claim_location=NOT_FOUND))
    assert (back.kind, back.signed_claims) == (ExitStateKind.CLAIMABLE, (mine,))
    again = claim_next(state, exit_facts(claim_location=MEMPOOL))
    assert (again.kind, again.claim_txid, again.signed_claims) == (
        ExitStateKind.CLAIM_IN_PROGRESS,
        rival,
        (mine,),
    )
