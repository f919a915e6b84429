"""What a cycle decides from its snapshot and the book, without a node: what is watched and asked for,
each tx's facts and target, what the budget allows, what the wallet funds ahead, each exit's next state,
and how the records of children follow the chain."""

from __future__ import annotations

from exitd.ark.encoding import OutPoint
from exitd.chain.fees import Market, RelayPolicy
from exitd.chain.view import BlockRef, ChainSnapshot, MempoolPackage, TxLocation, TxState
from exitd.engine.children import update_known
from exitd.engine.decisions import (
    FINAL_DEPTH,
    ExitClaims,
    advance,
    budget_rate,
    claim_standing,
    exit_claims,
    is_watched,
    level_targets,
    planned_txs,
    sharers_of,
    snapshot_request,
    tx_facts,
    tx_targets,
)
from exitd.engine.fee_policy import CHILD_VSIZE_ESTIMATE, FeePolicy
from exitd.engine.model import ChildStatus, ClaimCandidate
from exitd.engine.replacement import ClaimPlace, claim_place
from exitd.engine.states import ExitState, ExitStateKind, ExitTxStatus, TxStatusKind
from exitd.wallet.planner import PlannedTx
from tests.support.exit_book import (
    FUNDING,
    LEAF,
    NODE,
    ROOT,
    TIP,
    book_of_one_chain,
    child,
    confirmed_at,
    live,
    tracked,
)

POLICY = FeePolicy()
TIP_SNAP = ChainSnapshot(TIP)


def where(locations: dict[str, TxLocation]) -> ChainSnapshot:
    return ChainSnapshot(TIP, txs=dict(locations))


def test_canceled_and_long_claimed_exits_are_not_watched() -> None:
    assert is_watched(live("01" * 32, [ROOT]), TIP)
    assert not is_watched(live("01" * 32, [ROOT], ExitState(ExitStateKind.CANCELED, 1)), TIP)
    recent = ExitState(ExitStateKind.CLAIMED, 1, block=BlockRef(TIP.height - FINAL_DEPTH + 1, "66" * 32))
    final = ExitState(ExitStateKind.CLAIMED, 1, block=BlockRef(TIP.height - FINAL_DEPTH, "66" * 32))
    assert is_watched(live("01" * 32, [ROOT], recent), TIP)
    assert not is_watched(live("01" * 32, [ROOT], final), TIP)


def test_snapshot_asks_for_the_txs_their_inputs_children_in_flight_and_anchors() -> None:
    book = book_of_one_chain()
    book.txs[ROOT].children = {
        "01" * 32: child("01" * 32, ROOT, ChildStatus.BROADCAST),
        "02" * 32: child("02" * 32, ROOT, ChildStatus.REPLACED),
    }
    e = live("0e" * 32, [ROOT, NODE, LEAF])
    request = snapshot_request([e], book.txs, guarded={"99" * 32: 3})
    assert request.txids[0] == "99" * 32
    assert set(request.txids) == {"99" * 32, ROOT, NODE, LEAF, FUNDING, "01" * 32}
    # The output each tx's next level spends (the VTXO's own for the leaf) places a tx mined unwatched.
    assert request.outputs == {"99" * 32: 3, FUNDING: 2, ROOT: 2, NODE: 2, LEAF: 0}
    assert request.spends == [OutPoint.of(ROOT, 1), OutPoint.of(NODE, 1), OutPoint.of(LEAF, 1)]
    assert request.heights == []
    # Each tx's input, to see a conflict spend it in the chain.
    assert request.utxos == [OutPoint.of(FUNDING, 2), OutPoint.of(ROOT, 2), OutPoint.of(NODE, 2)]
    # What each spends, so that a tx whose outputs are all spent is confirmed through its spender.
    assert request.inputs == {ROOT: {FUNDING}, NODE: {ROOT}, LEAF: {NODE}, "01" * 32: {ROOT}}


def test_snapshot_of_a_claimed_exit_places_its_claim_through_its_output_and_the_leaf_through_it() -> None:
    state = ExitState(ExitStateKind.CLAIMED, 490, claimable_since=TIP, txid="c1" * 32, block=TIP)
    e = live("0e" * 32, [ROOT, NODE, LEAF], state)
    request = snapshot_request([e], book_of_one_chain().txs)
    assert request.outputs["c1" * 32] == 0 and request.inputs == {"c1" * 32: {LEAF}}
    assert {LEAF, "c1" * 32} <= set(request.txids)


def test_snapshot_of_a_claimable_exit_watches_its_output_and_the_block_it_became_claimable_in() -> None:
    since = BlockRef(480, "77" * 32)
    e = live("0e" * 32, [ROOT, NODE, LEAF], ExitState(ExitStateKind.CLAIMABLE, 490, claimable_since=since))
    request = snapshot_request([e], book_of_one_chain().txs)
    assert request.spends == [e.outpoint] and request.utxos == [e.outpoint]
    assert request.txids == [LEAF] and request.heights == [480]


def test_a_shared_tx_has_every_exit_in_progress_as_sharer() -> None:
    a, b = live("0a" * 32, [ROOT, NODE]), live("0b" * 32, [ROOT, LEAF])
    done = live("0c" * 32, [ROOT], ExitState(ExitStateKind.CLAIMABLE, 1, claimable_since=TIP))
    sharers = sharers_of([a, b, done])
    assert sharers == {ROOT: [a, b], NODE: [a], LEAF: [b]}


def test_tx_facts_tell_the_confirmed_child_and_ours_in_flight() -> None:
    book = book_of_one_chain()
    block = confirmed_at(490)
    mined = child("01" * 32, ROOT, ChildStatus.CONFIRMED)
    mined.block = block.block
    book.txs[ROOT].children = {mined.txid: mined}
    facts = tx_facts(book.txs[ROOT], where({ROOT: block, FUNDING: confirmed_at(480)}))
    assert facts.confirmed_child is not None and facts.confirmed_child.txid == mined.txid
    assert facts.input_confirmed

    stored = child("02" * 32, NODE, ChildStatus.STORED)
    theirs = child("03" * 32, NODE, ChildStatus.BROADCAST, ours=False)
    book.txs[NODE].children = {stored.txid: stored, theirs.txid: theirs}
    package = MempoolPackage(theirs.txid, 900, 300)
    snapshot = ChainSnapshot(
        TIP, spenders={OutPoint.of(NODE, 1): theirs.txid}, packages={theirs.txid: package}
    )
    facts = tx_facts(book.txs[NODE], snapshot)
    assert [c.txid for c in facts.pending_children] == [stored.txid]
    assert facts.spender == package and not facts.input_confirmed and facts.confirmed_child is None


def test_every_tx_confirmed_makes_the_exit_await_its_delta() -> None:
    e = live("0e" * 32, [ROOT, NODE])
    block = BlockRef(495, "88" * 32)
    statuses = {
        txid: ExitTxStatus(TxStatusKind.CONFIRMED, child_txid="", block=block) for txid in (ROOT, NODE)
    }
    new = advance(e, ChainSnapshot(TIP), statuses)
    assert new.kind is ExitStateKind.AWAITING_DELTA and new.claimable_height == 495 + 12
    unknown = advance(e, ChainSnapshot(TIP), {ROOT: statuses[ROOT]})
    assert unknown.kind is ExitStateKind.PROCESSING
    assert [tx.status.kind for tx in unknown.transactions] == [
        TxStatusKind.CONFIRMED,
        TxStatusKind.VERIFY_INPUTS,
    ]


def test_a_claimable_exit_whose_block_was_reorged_out_starts_over() -> None:
    since = BlockRef(480, "77" * 32)
    e = live("0e" * 32, [ROOT, LEAF], ExitState(ExitStateKind.CLAIMABLE, 490, claimable_since=since))
    kept = ChainSnapshot(TIP, txs={LEAF: confirmed_at(470)}, block_hashes={480: since.hash})
    assert advance(e, kept, {}).kind is ExitStateKind.CLAIMABLE
    reorged = ChainSnapshot(TIP, txs={LEAF: confirmed_at(470)}, block_hashes={480: "99" * 32})
    again = advance(e, reorged, {})
    assert again.kind is ExitStateKind.PROCESSING
    assert [tx.txid for tx in again.transactions] == [ROOT, LEAF]
    leaf_gone = ChainSnapshot(TIP, block_hashes={480: since.hash})
    assert advance(e, leaf_gone, {}).kind is ExitStateKind.PROCESSING


def test_a_shared_tx_aims_at_its_most_urgent_exit() -> None:
    relaxed = live("0a" * 32, [ROOT, NODE], expiry_height=100_000)
    late = live("0b" * 32, [ROOT, LEAF], expiry_height=TIP.height + 2)  # no slack left: the ceiling
    sharers = sharers_of([relaxed, late])
    market = Market(
        RelayPolicy(1000, 1000, 1000), dict.fromkeys(level_targets(sharers, TIP_SNAP, POLICY), 2000), True
    )
    targets = tx_targets(sharers, TIP_SNAP, market, None, POLICY)
    assert targets[NODE] == 2000  # the relaxed exit's alone: the market rate for its blocks
    assert targets[ROOT] == targets[LEAF] == POLICY.max_rate
    # A request's rate stands for the market's, raised to the node's floor.
    floored = tx_targets({NODE: [relaxed]}, TIP_SNAP, market, 300, POLICY)
    assert floored == {NODE: 1000}


def test_budget_rate_is_each_sharers_share_of_what_its_budget_has_left() -> None:
    e = live("0a" * 32, [ROOT, NODE], amount=10_000)  # budget 5,000 over two levels: 2,500 now
    package = 150 + CHILD_VSIZE_ESTIMATE
    assert budget_rate([e], [0], ChainSnapshot(TIP), 150, 1_000_000, POLICY) == 2_500 * 1000 // package
    assert budget_rate([e], [4_000], ChainSnapshot(TIP), 150, 1_000_000, POLICY) == 500 * 1000 // package
    assert budget_rate([e], [0], ChainSnapshot(TIP), 150, 2_000, POLICY) == 2_000  # under the cap
    two = budget_rate(
        [e, live("0b" * 32, [ROOT], amount=10_000)], [0, 0], ChainSnapshot(TIP), 150, 10**9, POLICY
    )
    assert two == (2_500 + 5_000) * 1000 // package


def test_planned_txs_leave_out_confirmed_ones_and_know_which_are_paid_for() -> None:
    book = book_of_one_chain()
    book.txs[LEAF].children = {"01" * 32: child("01" * 32, LEAF, ChildStatus.STORED)}
    snapshot = where({ROOT: confirmed_at(490), NODE: TxLocation(TxState.MEMPOOL)})
    planned = list(planned_txs(book.txs, snapshot, {ROOT: 2000, NODE: 3000, LEAF: 4000}))
    assert planned == [PlannedTx(NODE, ROOT, 150, 3000, True), PlannedTx(LEAF, NODE, 150, 4000, True)]
    nothing = list(planned_txs(book.txs, ChainSnapshot(TIP), {NODE: 3000}))
    assert nothing == [PlannedTx(NODE, ROOT, 150, 3000, False)]


def test_children_follow_the_chain_confirmed_broadcast_or_beaten() -> None:
    tx = tracked(NODE, ROOT)
    mined, sent, beaten, old = (
        child("01" * 32, NODE, ChildStatus.BROADCAST),
        child("02" * 32, NODE, ChildStatus.STORED),
        child("03" * 32, NODE, ChildStatus.STORED),
        child("04" * 32, NODE, ChildStatus.REPLACED),
    )
    tx.children = {c.txid: c for c in (mined, old)}
    assert update_known(tx, where({mined.txid: confirmed_at(499)})) == [mined]
    assert mined.status is ChildStatus.CONFIRMED and mined.block == BlockRef(499, f"{499:064x}")

    tx.children = {c.txid: c for c in (sent, beaten)}
    snapshot = ChainSnapshot(
        TIP, txs={sent.txid: TxLocation(TxState.MEMPOOL)}, spenders={OutPoint.of(NODE, 1): sent.txid}
    )
    assert update_known(tx, snapshot) == [sent, beaten]
    assert (sent.status, beaten.status) == (ChildStatus.BROADCAST, ChildStatus.REPLACED)
    assert update_known(tx, snapshot) == []


def test_a_shared_childs_fee_is_split_among_the_exits_that_need_its_tx() -> None:
    book = book_of_one_chain()
    a, b = live("0a" * 32, [ROOT, NODE]), live("0b" * 32, [ROOT, LEAF])
    book.exits = {a.vtxo_id: a, b.vtxo_id: b}
    book.txs[ROOT].children = {
        "01" * 32: child("01" * 32, ROOT, ChildStatus.CONFIRMED, fee=1000),
        "02" * 32: child("02" * 32, ROOT, ChildStatus.REPLACED, fee=700),
        "03" * 32: child("03" * 32, ROOT, ChildStatus.BROADCAST, fee=900, ours=False),
    }
    book.txs[NODE].children = {"04" * 32: child("04" * 32, NODE, ChildStatus.BROADCAST, fee=300)}
    assert book.fees_paid_each([a, b]) == {a.vtxo_id: 500 + 300, b.vtxo_id: 500}
    assert book.broadcast_by_exitd(ROOT) and book.broadcast_by_exitd(NODE)
    assert not book.broadcast_by_exitd(LEAF)


def claim_of(*txids: str) -> ClaimCandidate:
    return ClaimCandidate(txids[0], txids[0], len(txids) - 1, b"", 300, 110, 2_000, 480)


def test_every_claim_exitd_signed_for_an_exit_is_watched_while_it_may_be_claimed() -> None:
    first, replacement, older, unknown = "c1" * 32, "c2" * 32, "c0" * 32, "cf" * 32
    book = {first: first, replacement: first, older: older}
    since = BlockRef(480, "77" * 32)
    signed = (older, first, unknown)
    being_claimed = ExitState(
        ExitStateKind.CLAIM_IN_PROGRESS,
        490,
        claimable_since=since,
        claim_txid=replacement,
        signed_claims=signed,
    )
    e = live("0e" * 32, [ROOT, LEAF], being_claimed)
    assert exit_claims(e, book) == ExitClaims(first, (first, older))
    # Claimable again (its claim dropped): nothing named, the claims still watched.
    e.state = ExitState(ExitStateKind.CLAIMABLE, 490, claimable_since=since, signed_claims=(older,))
    assert exit_claims(e, book) == ExitClaims(None, (older,))
    # A candidate the block search found spending its output joins them.
    e.state = ExitState(ExitStateKind.CLAIMABLE, 490, claimable_since=since)
    assert exit_claims(e, book) is None
    assert exit_claims(e, book, found=replacement) == ExitClaims(None, (first,))
    e.state = ExitState(ExitStateKind.AWAITING_DELTA, 490, signed_claims=(older,))
    assert exit_claims(e, book) is None


def test_a_claim_stands_where_any_candidate_of_exitd_confirmed_else_in_the_mempool_else_as_named() -> None:
    first, older = "c1" * 32, "c0" * 32
    nowhere = {
        first: claim_place([claim_of(first)], [TxLocation(TxState.NOT_FOUND)]),
        older: claim_place([claim_of(older)], [TxLocation(TxState.NOT_FOUND)]),
    }
    assert claim_standing(ExitClaims(first, (first, older)), nowhere) is nowhere[first]
    assert claim_standing(ExitClaims(None, (older,)), nowhere) is None
    for where_older in (confirmed_at(495), TxLocation(TxState.MEMPOOL)):
        places = {**nowhere, older: claim_place([claim_of(older)], [where_older])}
        assert claim_standing(ExitClaims(first, (first, older)), places) is places[older]
        assert claim_standing(ExitClaims(None, (older,)), places) is places[older]


def test_a_claimable_exit_whose_older_claim_of_exitd_is_mined_is_claimed_with_its_fee() -> None:
    older = "c0" * 32
    since = BlockRef(480, "77" * 32)
    state = ExitState(ExitStateKind.CLAIMABLE, 490, claimable_since=since, signed_claims=(older,))
    e = live("0e" * 32, [ROOT, LEAF], state)
    e.claim_delay = 12
    snap = ChainSnapshot(
        TIP,
        txs={LEAF: confirmed_at(470), older: confirmed_at(495)},
        block_hashes={480: since.hash},
        unspent={e.outpoint: False},
    )
    place = ClaimPlace(claim_of(older), confirmed_at(495), claim_of(older))
    new = advance(e, snap, {}, place)
    assert (new.kind, new.txid, new.block, new.claim_fee) == (
        ExitStateKind.CLAIMED,
        older,
        confirmed_at(495).block,
        300,
    )
    # Without it, the exit stays claimable (the cycle's conflict search names what spent the output).
    assert advance(e, snap, {}).kind is ExitStateKind.CLAIMABLE
