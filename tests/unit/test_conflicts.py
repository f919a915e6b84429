"""Conflicts decided from a snapshot: which exit lost its input in the chain, what is abandoned, when a
reorg brings the exit back."""

from __future__ import annotations

from exitd.ark.encoding import OutPoint
from exitd.chain.spends import ChainSpend
from exitd.chain.view import BlockRef, ChainSnapshot
from exitd.engine.conflicts import abandoned_children, conflicted_state, resumed, suspects
from exitd.engine.model import ChildStatus
from exitd.engine.states import ExitStateKind
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
