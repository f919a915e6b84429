"""The pure half of following barkd: what a sync changes, decided from exitd's VTXOs and barkd's list."""

from __future__ import annotations

import pytest

from exitd.source.barkd import (
    MISSING,
    BarkdState,
    BarkdUnavailable,
    BarkdVtxo,
    SyncPlan,
    parse_vtxo_list,
    reconcile,
)
from exitd.store.vtxos import KnownVtxo

A, B, C, D = (f"{c * 64}:0" for c in "abcd")


def known(
    vtxo_id: str, state: str = "spendable", source: str = "barkd", seen: str | None = "spendable"
) -> KnownVtxo:
    return KnownVtxo(vtxo_id, state, source, seen)


def listed(vtxo_id: str, state: str) -> BarkdVtxo:
    return BarkdVtxo(vtxo_id, BarkdState(state))


def test_new_vtxos_are_imported_unless_barkd_already_spent_them() -> None:
    plan = reconcile(
        {}, [listed(A, "spendable"), listed(B, "locked"), listed(C, "spent"), listed(D, "exited")]
    )
    assert plan.imports == (A, B)
    assert plan == SyncPlan(imports=(A, B))


def test_nothing_changes_when_barkd_says_what_it_said_before() -> None:
    assert reconcile({A: known(A)}, [listed(A, "spendable")]) == SyncPlan()


def test_spent_or_exited_in_barkd_is_spent_for_exitd() -> None:
    plan = reconcile({A: known(A), B: known(B)}, [listed(A, "spent"), listed(B, "exited")])
    assert plan.spent == (A, B)
    assert dict(plan.seen) == {A: "spent", B: "exited"}
    assert plan.spent_while_exiting == ()


def test_a_vtxo_exitd_is_exiting_and_barkd_spent_is_told_once() -> None:
    exiting = known(A, state="locked")
    plan = reconcile({A: exiting}, [listed(A, "spent")])
    assert (plan.spent, plan.spent_while_exiting) == ((), (A,))
    told = known(A, state="locked", seen="spent")
    assert reconcile({A: told}, [listed(A, "spent")]).spent_while_exiting == ()


def test_an_import_barkd_lists_becomes_barkds() -> None:
    plan = reconcile({A: known(A, source="import", seen=None)}, [listed(A, "spendable")])
    assert dict(plan.seen) == {A: "spendable"}


def test_barkd_locked_is_only_recorded() -> None:
    plan = reconcile({A: known(A)}, [listed(A, "locked")])
    assert (plan.spent, dict(plan.seen)) == ((), {A: "locked"})


def test_a_vtxo_barkd_lists_no_more_is_missing_and_an_import_is_left_alone() -> None:
    plan = reconcile({A: known(A), B: known(B, source="import", seen=None)}, [])
    assert dict(plan.seen) == {A: MISSING}
    assert reconcile({A: known(A, seen=MISSING)}, []) == SyncPlan()


def test_barkds_list_is_parsed_strictly() -> None:
    body = [{"id": A.upper(), "state": {"type": "spendable"}}, {"id": B, "state": {"type": "locked"}}]
    assert parse_vtxo_list(body) == [listed(A, "spendable"), listed(B, "locked")]
    for bad in (
        {},
        [{"id": "nope", "state": {"type": "spent"}}],
        [{"id": A, "state": {"type": "lost"}}],
        [{}],
    ):
        with pytest.raises(BarkdUnavailable):
            parse_vtxo_list(bad)
