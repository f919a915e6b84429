"""Resting exits (exitd/engine/rest.py): which exits a cycle decides, and that deciding only those gives
every exit the state deciding them all would, over random chains with blocks, reorgs and claims."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pytest

from exitd.chain.view import BlockRef, ChainSnapshot, TxLocation, TxState
from exitd.engine.decisions import advance, is_watched, tx_facts
from exitd.engine.model import ExitBook, LiveExit, TrackedTx
from exitd.engine.rest import Rest, RestIndex, rest_of
from exitd.engine.states import ExitState, ExitStateKind, ExitTxStatus
from exitd.engine.transitions import next_tx_status
from tests.support.exit_book import FUNDING, live, tracked


def txid(name: str) -> str:
    return name.encode().hex().ljust(64, "0")


def awaiting(confirmed: int, claimable: int) -> ExitState:
    return ExitState(
        ExitStateKind.AWAITING_DELTA,
        confirmed,
        confirmed_block=BlockRef(confirmed, "ab" * 32),
        claimable_height=claimable,
    )


def test_rest_of_each_state() -> None:
    assert rest_of(awaiting(500, 512)) == Rest(512, 500)
    claimed = ExitState(
        ExitStateKind.CLAIMED,
        530,
        claimable_since=BlockRef(512, "cd" * 32),
        txid=txid("claim"),
        block=BlockRef(520, "ef" * 32),
    )
    assert rest_of(claimed) == Rest(None, 520)
    assert rest_of(ExitState(ExitStateKind.CANCELED, 500)) == Rest(None, None)
    for kind in (ExitStateKind.START, ExitStateKind.PROCESSING, ExitStateKind.CLAIM_IN_PROGRESS):
        assert rest_of(ExitState(kind, 500)) is None
    claimable = ExitState(ExitStateKind.CLAIMABLE, 512, claimable_since=BlockRef(512, "cd" * 32))
    assert rest_of(claimable) is None  # its claim may appear in the mempool any time


def test_an_untouched_exit_is_not_decided_until_its_height_or_a_reorg_below_its_block() -> None:
    index = RestIndex()
    index.reset([("a:0", Rest(600, 500), ["t1", "t2"]), ("b:0", None, ["t3"]), ("c:0", Rest(None, 450), [])])
    assert list(index.awake) == ["b:0"]
    assert index.kept == {"t1": 1, "t2": 1}  # the locator keeps watching what a resting exit waits on
    assert index.due(599) == []
    assert index.reorged(500) == []  # a reorg that kept block 500 changes nothing they stand on
    assert list(index.awake) == ["b:0"]
    assert index.due(600) == ["a:0"]
    assert index.kept == {}
    assert index.due(700) == []  # woken once
    assert index.reorged(449) == ["c:0"]
    assert list(index.awake) == ["b:0", "a:0", "c:0"]
    kept = index.kept
    index.reset([("a:0", Rest(600, 500), ["t1"])])
    assert index.kept is kept and kept == {"t1": 1}  # the locator's reference stays good across loads


def test_a_new_rest_replaces_the_old_wake_height() -> None:
    index = RestIndex()
    index.rest("a:0", Rest(600, 500), ["t1"])
    index.rest("a:0", Rest(700, 510), ["t1"])
    assert index.kept == {"t1": 1}
    assert index.due(650) == []
    assert index.due(700) == ["a:0"]


def test_refcounts_of_some_txs_match_the_whole_book() -> None:
    book = ExitBook()
    a, b, c = txid("a"), txid("b"), txid("c")
    book.txs = {a: tracked(a, FUNDING), b: tracked(b, a), c: tracked(c, a)}
    exits = [live(txid("v1"), [a, b]), live(txid("v2"), [a, c]), live(txid("v3"), [a, c])]
    exits[2].state = ExitState(ExitStateKind.CANCELED, 500)
    for e in exits:
        book.add(e)
    whole = book.refcounts()
    assert book.refcounts([a, c]) == {a: whole[a], c: whole[c]} == {a: 2, c: 1}


# The equivalence over random chains.


@dataclass
class Chain:
    """A toy regtest chain: block hashes by height (a reorg changes those above its fork), where each tx
    is confirmed, the claims in the mempool, and the reorgs since the last cycle."""

    tip: int = 500
    version: dict[int, int] = field(default_factory=dict)
    confirmed: dict[str, int] = field(default_factory=dict)
    mempool: set[str] = field(default_factory=set)
    forks: list[int] = field(default_factory=list)

    def hash_at(self, height: int) -> str:
        return f"{height:032x}{self.version.get(height, 0):032x}"

    def block(self, height: int) -> BlockRef:
        return BlockRef(height, self.hash_at(height))


@dataclass
class Scenario:
    txs: dict[str, TrackedTx]
    chains: list[list[str]]  # each exit's txids, root first; the VTXO is the leaf's output 0


def scenario() -> Scenario:
    """Two trees sharing roots, and a lone one-level exit: shared txs, depths 1 to 3."""
    r1, r2, a, b, c, lone = (txid(n) for n in ("r1", "r2", "a", "b", "c", "lone"))
    la, lb, lc, ld = (txid(n) for n in ("la", "lb", "lc", "ld"))
    parents = {r1: FUNDING, a: r1, b: r1, la: a, lb: a, lc: b, r2: FUNDING, c: r2, ld: c, lone: FUNDING}
    return Scenario(
        {t: tracked(t, p) for t, p in parents.items()},
        [[r1, a, la], [r1, a, lb], [r1, b, lc], [r2, c, ld], [lone]],
    )


def claim_of(e: LiveExit) -> str:
    return txid("claim-" + e.txids[-1][:6])


def snapshot_of(chain: Chain, scene: Scenario, exits: Sequence[LiveExit]) -> ChainSnapshot:
    """Everything the toy chain knows, as one snapshot (deciding an exit reads only its own part)."""
    snap = ChainSnapshot(chain.block(chain.tip))
    snap.block_hashes = {h: chain.hash_at(h) for h in range(400, chain.tip + 1)}
    snap.txs[FUNDING] = TxLocation(TxState.CONFIRMED, chain.block(400))
    for t in list(scene.txs) + [claim_of(e) for e in exits]:
        if t in chain.confirmed:
            snap.txs[t] = TxLocation(TxState.CONFIRMED, chain.block(chain.confirmed[t]))
        elif t in chain.mempool:
            snap.txs[t] = TxLocation(TxState.MEMPOOL)
    for e in exits:
        claim = claim_of(e)
        snap.unspent[e.outpoint] = claim not in chain.confirmed
        if claim in chain.mempool:
            snap.spenders[e.outpoint] = claim
    return snap


def step(chain: Chain, rng: random.Random, scene: Scenario, exits: Sequence[LiveExit]) -> None:
    """Move the chain on: a block confirming some txs whose input is confirmed, a reorg, claims entering
    the mempool (of claimable exits), or nothing."""
    roll = rng.random()
    if roll < 0.15 and chain.tip > 503:
        fork = chain.tip - rng.randint(1, 3)
        for h in range(fork + 1, chain.tip + 1):
            chain.version[h] = chain.version.get(h, 0) + 1
        for t, h in list(chain.confirmed.items()):
            if h > fork:
                del chain.confirmed[t]
                chain.mempool.add(t)
        chain.tip = fork + rng.randint(0, 2)
        for h in range(fork + 1, chain.tip + 1):
            chain.version[h] = chain.version.get(h, 0) + 1
        chain.forks.append(fork)
    elif roll < 0.8:
        chain.tip += rng.randint(1, 4)
        for t, tx in scene.txs.items():
            parent_in = tx.input_txid == FUNDING or tx.input_txid in chain.confirmed
            if t not in chain.confirmed and parent_in and rng.random() < 0.5:
                chain.confirmed[t] = chain.tip
                chain.mempool.discard(t)
        for claim in list(chain.mempool):
            if claim not in scene.txs and rng.random() < 0.5:
                chain.confirmed[claim] = chain.tip
                chain.mempool.discard(claim)
    for e in exits:
        claim = claim_of(e)
        if e.state.kind is ExitStateKind.CLAIMABLE and claim not in chain.confirmed and rng.random() < 0.3:
            chain.mempool.add(claim)
    assert not chain.mempool & chain.confirmed.keys()


def decide(
    exits: Iterable[LiveExit], snap: ChainSnapshot, txs: dict[str, TrackedTx], last: BlockRef | None
) -> list[str]:
    """A cycle's decisions, as ProgressCycle makes them (no packages: statuses as the txs stand); the
    exits it decided."""
    exits = list(exits)
    statuses: dict[str, ExitTxStatus] = {
        t: next_tx_status(tx_facts(tx, snap), 1000)[0] for t, tx in txs.items()
    }
    for e in exits:
        if is_watched(e, last):
            new = advance(e, snap, statuses)
            if not new.same_as(e.state):
                e.state = new
    return [e.vtxo_id for e in exits]


def fresh_exits(scene: Scenario) -> list[LiveExit]:
    exits = [live(chain[-1], chain, ExitState(ExitStateKind.START, 500)) for chain in scene.chains]
    for e, delay in zip(exits, (2, 3, 5, 4, 2), strict=True):
        e.claim_delay = delay
    return exits


@pytest.mark.parametrize("seed", range(60))
def test_deciding_the_awake_exits_gives_the_states_of_deciding_all(seed: int) -> None:
    rng = random.Random(seed)
    scene = scenario()
    full, incremental = fresh_exits(scene), fresh_exits(scene)
    index = RestIndex()
    index.reset((e.vtxo_id, None, e.txids) for e in incremental)
    by_id = {e.vtxo_id: e for e in incremental}
    chain = Chain()
    last: BlockRef | None = None
    rested = decided_total = 0
    for _ in range(40):
        step(chain, rng, scene, full)
        snap = snapshot_of(chain, scene, full)
        decide(full, snap, scene.txs, last)
        woken = index.due(chain.tip) + (index.reorged(min(chain.forks)) if chain.forks else [])
        chain.forks.clear()
        decided = decide([by_id[i] for i in list(index.awake)], snap, scene.txs, last)
        decided_total += len(decided)
        assert set(woken) <= set(decided)
        for vtxo_id in decided:
            e = by_id[vtxo_id]
            until = rest_of(e.state)
            if until is not None:
                index.rest(vtxo_id, until, e.txids)
        rested += len(index.resting)
        last = snap.tip
        assert [e.state for e in incremental] == [e.state for e in full]
    assert decided_total < 40 * len(full) or rested == 0  # resting exits were left out
