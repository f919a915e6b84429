"""Conflicts decided from a snapshot: which exit lost its input in the chain, what is abandoned, when a
reorg brings the exit back."""

from __future__ import annotations

from exitd.ark.encoding import OutPoint
from exitd.chain.spends import ChainSpend
from exitd.chain.view import BlockRef, ChainSnapshot
from exitd.engine.conflicts import (
    abandoned_children,
    claim_suspects,
    conflict_error,
    conflicted_state,
    drop_rival_spends,
    resumed,
    suspects,
    unjudged_spends,
)
from exitd.engine.model import ChildStatus, ClaimCandidate
from exitd.engine.states import ExitState, ExitStateKind
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
)

OTHER = "ee" * 32


def snapshot(confirmed: list[str], unspent: dict[OutPoint, bool]) -> ChainSnapshot:
    return ChainSnapshot(TIP, txs={t: confirmed_at(TIP.height - 1) for t in confirmed}, unspent=unspent)


def test_the_first_unconfirmed_tx_whose_input_is_spent_in_the_chain_is_suspect() -> None:
    book = book_of_one_chain()
    e = live("0e" * 32, [ROOT, NODE, LEAF])
    lost = snapshot(
        [FUNDING, ROOT],
        {OutPoint.of(FUNDING, 2): False, OutPoint.of(ROOT, 2): False, OutPoint.of(NODE, 2): True},
    )
    (found,) = suspects([e], book.txs, lost)
    assert (found.txid, found.spent) == (NODE, OutPoint.of(ROOT, 2))
    fine = snapshot([FUNDING, ROOT], {OutPoint.of(FUNDING, 2): False, OutPoint.of(ROOT, 2): True})
    assert suspects([e], book.txs, fine) == []
    unconfirmed_input = snapshot([FUNDING], {OutPoint.of(ROOT, 2): False})
    assert suspects([live("0f" * 32, [ROOT, NODE])], book.txs, unconfirmed_input) == []


def test_a_conflict_abandons_the_children_from_its_level_on_and_a_reorg_resumes_it() -> None:
    book = book_of_one_chain()
    book.txs[ROOT].children = {"01" * 32: child("01" * 32, ROOT, ChildStatus.CONFIRMED)}
    book.txs[NODE].children = {"02" * 32: child("02" * 32, NODE, ChildStatus.BROADCAST)}
    e = live("0e" * 32, [ROOT, NODE, LEAF])
    dropped = abandoned_children(e, NODE, book.txs)
    assert [c.txid for c in dropped] == ["02" * 32] and dropped[0].status is ChildStatus.ABANDONED
    assert book.txs[ROOT].children["01" * 32].status is ChildStatus.CONFIRMED

    e.state = conflicted_state(
        TIP.height, ChainSpend(OTHER, BlockRef(TIP.height, TIP.hash)), OutPoint.of(ROOT, 2)
    )
    assert (e.state.kind, e.state.txid, e.state.spent_input) == (
        ExitStateKind.VTXO_ALREADY_SPENT,
        OTHER,
        f"{ROOT}:2",
    )
    assert resumed(e, snapshot([], {OutPoint.of(ROOT, 2): False})) is None
    back = resumed(e, snapshot([], {OutPoint.of(ROOT, 2): True}))
    assert back is not None and back.kind is ExitStateKind.START


def claimable(state: ExitStateKind = ExitStateKind.CLAIMABLE, claim_txid: str | None = None) -> ExitState:
    return ExitState(
        state, TIP.height, claimable_since=BlockRef(TIP.height - 2, "22" * 32), claim_txid=claim_txid
    )


def candidate(txid: str) -> ClaimCandidate:
    return ClaimCandidate(txid, txid, 0, b"", 300, 110, 2_000, TIP.height - 1)


def test_a_claimable_exit_whose_output_is_spent_in_the_chain_by_no_claim_of_its_is_suspect() -> None:
    e = live("0e" * 32, [ROOT, NODE, LEAF], claimable())
    spent = ChainSnapshot(TIP, txs={LEAF: confirmed_at(TIP.height - 12)}, unspent={e.outpoint: False})
    (found,) = claim_suspects([e], {}, spent)
    assert (found.exit, found.claims, found.lowest) == (e, frozenset(), TIP.height - 12)
    # Unspent, or only spent in the mempool (the snapshot ignores it): the normal path.
    assert claim_suspects([e], {}, ChainSnapshot(TIP, unspent={e.outpoint: True})) == []
    # Not claimable yet: a lost exit tx input is suspects()' business.
    e.state = ExitState(ExitStateKind.PROCESSING, TIP.height)
    assert claim_suspects([e], {}, spent) == []


def test_a_claim_in_progress_is_suspect_until_one_of_its_candidates_confirms() -> None:
    mine, replaced = "a1" * 32, "a2" * 32
    e = live("0e" * 32, [ROOT, NODE, LEAF], claimable(ExitStateKind.CLAIM_IN_PROGRESS, mine))
    candidates = {e.vtxo_id: [candidate(mine), candidate(replaced)]}
    pending = ChainSnapshot(TIP, unspent={e.outpoint: False})
    (found,) = claim_suspects([e], candidates, pending)
    # The leaf not placed by the snapshot: the search goes as deep as it may.
    assert (found.claims, found.lowest) == (frozenset({mine, replaced}), 0)
    confirmed = ChainSnapshot(TIP, txs={replaced: confirmed_at(TIP.height)}, unspent={e.outpoint: False})
    assert claim_suspects([e], candidates, confirmed) == []


def test_a_spent_output_names_the_tx_that_spent_it_and_a_reorg_brings_the_exit_back() -> None:
    e = live("0e" * 32, [ROOT, NODE, LEAF], claimable())
    e.state = conflicted_state(TIP.height, ChainSpend(OTHER, BlockRef(TIP.height, TIP.hash)), e.outpoint)
    assert (e.state.kind, e.state.txid, e.state.spent_input) == (
        ExitStateKind.VTXO_ALREADY_SPENT,
        OTHER,
        e.vtxo_id,
    )
    error = conflict_error(e.vtxo_id, e.state)
    assert f"output {e.vtxo_id} was spent by {OTHER} in block {TIP.height}" in str(error)
    # barkd's error shape carries the same: the tx, what it spent, and its block.
    assert error.fields == {
        "vtxo": e.vtxo_id,
        "spent_by": OTHER,
        "spent_input": e.vtxo_id,
        "spent_at_height": TIP.height,
    }
    message = str(error)
    assert "not by a claim exitd made" in message
    lost_input = conflicted_state(TIP.height, ChainSpend(OTHER, TIP), OutPoint.of(ROOT, 2))
    assert f"exit tx input {ROOT}:2 was spent by {OTHER}" in str(conflict_error(e.vtxo_id, lost_input))
    assert resumed(e, ChainSnapshot(TIP, unspent={e.outpoint: False})) is None
    back = resumed(e, ChainSnapshot(TIP, unspent={e.outpoint: True}))
    assert back is not None and back.kind is ExitStateKind.START


def test_a_mempool_spend_of_the_vtxo_output_is_judged_once_and_set_aside_unless_it_is_a_claim() -> None:
    ours, adopted, refund, claim_elsewhere = "a1" * 32, "a2" * 32, "a3" * 32, "a4" * 32
    mine = live("01" * 32, [ROOT, NODE, LEAF], claimable())
    following = live("02" * 32, [ROOT, NODE, LEAF], claimable(ExitStateKind.CLAIM_IN_PROGRESS, adopted))
    refunded = live("03" * 32, [ROOT, NODE, LEAF], claimable())
    claimed_elsewhere = live("04" * 32, [ROOT, NODE, LEAF], claimable())
    unlearned = live("05" * 32, [ROOT, NODE, LEAF], claimable())
    exits = [mine, following, refunded, claimed_elsewhere, unlearned]
    for e in exits[:-1]:
        e.claim_leaf = b"\x51"
    spenders = [ours, adopted, refund, claim_elsewhere, "a5" * 32]
    snap = ChainSnapshot(TIP, spenders={e.outpoint: txid for e, txid in zip(exits, spenders, strict=True)})
    # exitd's own claims, the claim a state follows already, and exits whose leaf is not learned are not
    # read; the others are, once.
    unjudged = unjudged_spends(exits, snap, {ours}, {})
    assert unjudged == {refund: refunded, claim_elsewhere: claimed_elsewhere}
    is_claim = {refund: False, claim_elsewhere: True}
    assert unjudged_spends(exits, snap, {ours}, is_claim) == {}
    drop_rival_spends(exits, snap, is_claim)
    assert refunded.outpoint not in snap.spenders  # no claim in progress: the exit stays claimable
    assert snap.spenders[claimed_elsewhere.outpoint] == claim_elsewhere
    assert (snap.spenders[mine.outpoint], snap.spenders[following.outpoint]) == (ours, adopted)
