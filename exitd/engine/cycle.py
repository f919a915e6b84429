"""One progress cycle: one chain snapshot, and every awake exit moved on from what it shows.

Resting exits (exitd/engine/rest.py) are left out unless the snapshot's tip reached their height or a
reorg since the last cycle took out a block their state names: those wake, and the snapshot is taken
again with them. The steps: take the snapshot (the guard's txids included, so watching costs no round
trip of its own);
learn what it says about the children; give every exit tx one target rate and let the wallet plan its
coins ahead; give every exit tx one status (once per tx, however many exits share it) and pay for or
broadcast the packages that status asks for; then give every exit its next state, persist the ones that
really changed, and let the guard look at the result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from exitd.chain.fees import FeeEstimator, RelayPolicy
from exitd.chain.rpc import RpcError
from exitd.chain.view import BlockRef, ChainSnapshot, ChainView
from exitd.engine.children import ChildLearner, Sharers
from exitd.engine.claim_desk import ClaimDesk
from exitd.engine.conflicts import (
    abandoned_children,
    claim_suspects,
    conflict_error,
    conflicted_state,
    find_claim_spends,
    find_conflicts,
    resumed,
    set_aside_rival_spends,
    suspects,
)
from exitd.engine.decisions import (
    ExitClaims,
    advance,
    budget_rate,
    claim_standing,
    exit_claims,
    is_watched,
    level_targets,
    next_block_room,
    planned_txs,
    sharers_of,
    snapshot_request,
    tx_facts,
    tx_targets,
)
from exitd.engine.errors import FeeBudgetExceeded
from exitd.engine.fee_policy import FeePolicy, RaisedRate
from exitd.engine.model import (
    CLAIM_KINDS,
    CLAIM_WATCHED,
    ClaimCandidate,
    EngineCounters,
    ExitBook,
    LiveExit,
    PackageWork,
    set_error,
)
from exitd.engine.packages import ChildTerms, PackageDesk
from exitd.engine.persist import persist_states, save_children
from exitd.engine.replacement import ClaimPlace
from exitd.engine.rest import rest_of
from exitd.engine.states import ExitStateKind, ExitTxStatus
from exitd.engine.transitions import ActionKind, next_tx_status
from exitd.log import event, get_logger
from exitd.store.db import Store
from exitd.store.vtxos import VtxoState, set_vtxos_state
from exitd.wallet.errors import NoWallet
from exitd.wallet.onchain import OnchainBalance
from exitd.wallet.planner import FundingOutlook, FundingPlan, PlannedTx, children_soon
from exitd.wallet.vtxos import VtxoBook

log = get_logger("engine")

# Snapshots a cycle takes again at most when the one it took woke resting exits (the tip may move meanwhile
# and wake more; those left are woken by the next cycle).
WAKE_ROUNDS = 3


class Funding(Protocol):
    """The on-chain wallet's funding plan (exitd.wallet.planner) as the cycle drives it."""

    async def ensure_funding(self, txs: Sequence[PlannedTx]) -> FundingPlan: ...

    async def prepare_change(self, n: int) -> int: ...

    async def balance(self) -> OnchainBalance: ...

    async def next_address(self) -> str: ...


class CycleGuard(Protocol):
    """Guard mode (exitd.engine.guard) as the cycle sees it: more txids for the snapshot, and a look at
    the snapshot and the exits once the cycle is done."""

    async def watched_txids(self) -> Mapping[str, int]: ...

    async def after_cycle(self, snap: ChainSnapshot, decided: Sequence[LiveExit]) -> None: ...


class ProgressCycle:
    def __init__(
        self,
        store: Store,
        view: ChainView,
        fees: FeeEstimator,
        vtxos: VtxoBook,
        policy: FeePolicy,
        book: ExitBook,
        learner: ChildLearner,
        desk: PackageDesk,
        claims: ClaimDesk,
        counters: EngineCounters,
        guard: CycleGuard | None,
        funding: Funding | None,
    ) -> None:
        self.store = store
        self.view = view
        self.fees = fees
        self.vtxos = vtxos
        self.policy = policy
        self.book = book
        self.learner = learner
        self.desk = desk
        self.claims = claims
        self.counters = counters
        # None: the cycle only advances exits.
        self.guard = guard
        # None: children take whatever coins there are.
        self.funding = funding
        self.last_tip: BlockRef | None = None
        # The exit txs in flight, as the last cycle planned their funding, and the wallet's outlook for them.
        self.planned: tuple[PlannedTx, ...] = ()
        self.funding_outlook: FundingOutlook | None = None
        # The coin the last funding plan meant for each exit tx: its child's coin is chosen by it.
        self.floors: Mapping[str, int] = {}
        # Every exit decided every cycle, resting or not (the benchmarks compare; tests/unit/test_rest.py
        # shows both give the same states).
        self.full = False
        # How many of the chain locator's reorgs the cycles took into account.
        self.forks_seen = 0
        # Whether each mempool spender of a VTXO output the cycles read is a claim (conflicts.py).
        self.spend_is_claim: dict[str, bool] = {}
        view.locator.kept = book.rest.kept

    async def run(self, override: int | None) -> None:
        """One cycle; `override`: a rate the request chose, used as given (no deadline, no budget)."""
        started = time.monotonic()
        book = self.book
        decided = list(book.exits.values()) if self.full else book.awake()
        watched = [e for e in decided if is_watched(e, self.last_tip)]
        guarded = await self.guard.watched_txids() if self.guard is not None else {}
        if not watched and not guarded and not book.rest.resting:
            self._rest(decided)
            self.counters.cycles += 1
            return
        forks = self.view.locator.forks
        claims = self._claims(watched)
        snap = await self._snapshot(watched, guarded, claims)
        # The reorgs taken into account: one found by the last snapshot taken wakes exits next cycle.
        forks_seen = self.forks_seen
        for _ in range(0 if self.full else WAKE_ROUNDS):
            woken = self._woken(snap.tip, forks[self.forks_seen :])
            forks_seen = len(forks)
            if not woken:
                break
            decided += woken
            watched += [e for e in woken if is_watched(e, self.last_tip)]
            claims = self._claims(watched)
            snap = await self._snapshot(watched, guarded, claims)
        quiet = snap.tip == self.last_tip
        self.last_tip = snap.tip
        for e in watched:
            if e.held_claim is None:  # a claim's error outlives cycles until a claim goes out
                e.error = None
        claims = await self._end_conflicts(watched, snap, claims)
        for e in watched:
            if e.state.kind is ExitStateKind.VTXO_ALREADY_SPENT:
                e.error = conflict_error(e.vtxo_id, e.state)
        sharers = sharers_of(watched)
        await self.learner.learn(snap, sharers)
        if override is not None:
            market = await self.fees.market(())
        else:
            room = next_block_room(sharers, book.txs, snap)
            market = await self.fees.market(level_targets(sharers, snap, self.policy), next_block=room)
        if override is not None:
            raised = RaisedRate.of(override, market.relay)
            for e in watched:
                e.raised_rate = raised
        targets = tx_targets(sharers, snap, market, override, self.policy)
        await self._fund_ahead(snap, targets)
        statuses = await self._tx_statuses(sharers, snap, targets, override is not None, market.relay)
        await self._learn_claim_timelocks(watched)
        await set_aside_rival_spends(self.view.rpc, watched, snap, self.book.claim_of, self.spend_is_claim)
        claim_of = await self._step_claims(claims, snap)
        changes = [(e, advance(e, snap, statuses, claim_of.get(e.vtxo_id))) for e in watched]
        back = [e.vtxo_id for e, new in changes if resumed(e, snap) is not None]
        if back:
            for e, _ in changes:
                if e.vtxo_id in back:
                    e.error = None
            event(log, logging.INFO, "conflict_reorged_out", exits=len(back))
            await self._set_vtxo_states(back, VtxoState.LOCKED)
        await persist_states(self.store, changes)
        if self.guard is not None:
            await self.guard.after_cycle(snap, decided)
        if quiet:
            await self._prepare_change()
        self._rest(decided)
        self.forks_seen = forks_seen
        self.counters.cycles += 1
        ms = int((time.monotonic() - started) * 1000)
        event(log, logging.DEBUG, "cycle", exits=len(watched), tip=snap.tip.height, ms=ms)

    def _claims(self, watched: Iterable[LiveExit]) -> dict[str, ExitClaims]:
        """The claims exitd signed for each watched exit that has any (by VTXO id)."""
        claim_of = self.book.claim_of
        return {e.vtxo_id: c for e in watched if (c := exit_claims(e, claim_of)) is not None}

    def _candidates(self, claims: Mapping[str, ExitClaims]) -> dict[str, list[ClaimCandidate]]:
        """Every candidate of those claims, by VTXO id."""
        book = self.book
        return {v: [c for first in ec.firsts for c in book.claims[first]] for v, ec in claims.items()}

    async def _step_claims(
        self, claims: Mapping[str, ExitClaims], snap: ChainSnapshot
    ) -> dict[str, ClaimPlace]:
        """Where each exit's claim stands (decisions.claim_standing), once the claim desk sent again,
        repriced or replaced the claims of the exits being claimed or claimed that call for it; a claim
        of a claimable exit (one dropped, kept only in case it is mined) is watched, never sent."""
        book = self.book
        places = self.claims.places({f: book.claims[f] for ec in claims.values() for f in ec.firsts}, snap)
        standing = {v: p for v, ec in claims.items() if (p := claim_standing(ec, places)) is not None}
        stepped = {
            p.newest.first_txid: p for v, p in standing.items() if book.exits[v].state.kind in CLAIM_KINDS
        }
        await self.claims.step(stepped, snap.tip.height)
        return {v: stepped.get(p.newest.first_txid, p) for v, p in standing.items()}

    async def _snapshot(
        self,
        watched: Sequence[LiveExit],
        guarded: Mapping[str, int],
        claims: Mapping[str, ExitClaims],
    ) -> ChainSnapshot:
        request = snapshot_request(watched, self.book.txs, guarded, self._candidates(claims))
        return await self.view.snapshot(
            request.txids, request.spends, request.heights, request.utxos, request.outputs, request.inputs
        )

    def _woken(self, tip: BlockRef, forks: Sequence[int]) -> list[LiveExit]:
        """The resting exits that the tip (their height reached) or a reorg since the last cycle woke."""
        rest = self.book.rest
        woken = rest.due(tip.height)
        if forks:
            woken += rest.reorged(min(forks))
        return [self.book.exits[vtxo_id] for vtxo_id in woken]

    def _rest(self, decided: Iterable[LiveExit]) -> None:
        """Put to rest the decided exits that may (exitd/engine/rest.py): none carrying an error."""
        rest = self.book.rest
        for e in decided:
            until = rest_of(e.state) if e.error is None else None
            if until is not None:
                rest.rest(e.vtxo_id, until, e.txids)

    async def _end_conflicts(
        self, watched: Sequence[LiveExit], snap: ChainSnapshot, claims: Mapping[str, ExitClaims]
    ) -> dict[str, ExitClaims]:
        """End the exits whose input a tx not of theirs spent in the chain, and those whose VTXO output a tx
        that is none of their claims spent (exitd/engine/conflicts.py); a claim the block search found
        mined instead is placed in `snap` (and in the chain locator from now on). Returns the claims of the
        exits still claimable or being claimed, those found included."""
        rpc, book, txs = self.view.rpc, self.book, self.book.txs
        lost = await find_conflicts(rpc, suspects(watched, txs, snap), snap, txs)
        found = claim_suspects(watched, self._candidates(claims), snap)
        taken, mined = await find_claim_spends(rpc, found, snap, book.claim_of)
        claims = dict(claims)
        for s, spend in mined:
            await self.view.place(snap, spend.txid, spend.block)
            if (c := exit_claims(s.exit, book.claim_of, spend.txid)) is not None:
                claims[s.exit.vtxo_id] = c
        dropped = [c for s, _ in lost for c in abandoned_children(s.exit, s.txid, txs)]
        ended = [(s.exit, spend, s.spent) for s, spend in lost]
        ended += [(s.exit, spend, s.exit.outpoint) for s, spend in taken]
        changes = []
        for e, spend, spent in ended:
            state = conflicted_state(snap.tip.height, spend, spent)
            e.error = conflict_error(e.vtxo_id, state)
            changes.append((e, state))
            event(
                log,
                logging.WARNING,
                "exit_conflicted",
                vtxo=e.vtxo_id,
                spent=state.spent_input,
                by=spend.txid,
                block=spend.block.height,
            )
        if changes:
            await save_children(self.store, self.learner.wallet, dropped, release=dropped)
            await self._set_vtxo_states([e.vtxo_id for e, _ in changes], VtxoState.SPENT)
            await persist_states(self.store, changes)
        # A claim whose exit just ended is not stepped again.
        return {v: c for v, c in claims.items() if book.exits[v].state.kind in CLAIM_WATCHED}

    async def _set_vtxo_states(self, vtxo_ids: Sequence[str], state: VtxoState) -> None:
        async with self.store.session(fenced=True) as session:
            await set_vtxos_state(session, vtxo_ids, state)

    async def _prepare_change(self) -> None:
        """Between blocks, the change scripts of the children the next block's cycle may build are fetched
        ahead (OnchainWallet.prepare_change), off the path from a block to its packages. Like funding, a
        failure costs speed only."""
        if self.funding is None:
            return
        try:
            await self.funding.prepare_change(children_soon(self.planned))
        except (RpcError, NoWallet) as e:
            event(log, logging.WARNING, "change_prepare_failed", error=str(e))

    async def _fund_ahead(self, snap: ChainSnapshot, targets: Mapping[str, int]) -> None:
        """The funding hook: before this cycle's children choose their coins, the wallet plans the coins
        of the levels left and splits one ahead of need (exitd/wallet/planner.py). A failure there costs
        speed, never correctness: it is logged and the cycle goes on."""
        self.planned = tuple(planned_txs(self.book.txs, snap, targets))
        self.funding_outlook = None
        if self.funding is None:
            return
        try:
            plan = await self.funding.ensure_funding(self.planned)
        except (RpcError, NoWallet) as e:
            event(log, logging.WARNING, "funding_failed", error=str(e))
            return
        self.funding_outlook, self.floors = plan.outlook, plan.floors

    async def _tx_statuses(
        self,
        sharers: Sharers,
        snap: ChainSnapshot,
        targets: Mapping[str, int],
        explicit: bool,
        relay: RelayPolicy,
    ) -> dict[str, ExitTxStatus]:
        """Each exit tx's status this cycle, once the packages it called for were paid for or sent. A rate
        the request chose is used as given; else the fee budget may lower it (the exits are told)."""
        statuses: dict[str, ExitTxStatus] = {}
        work: list[PackageWork] = []
        refcount = self.book.refcounts({t for group in sharers.values() for e in group for t in e.txids})
        for txid, group in sharers.items():
            tracked = self.book.txs[txid]
            target = targets[txid]
            status, action = next_tx_status(tx_facts(tracked, snap), target)
            statuses[txid] = status
            if action is None:
                continue
            if action.kind is ActionKind.BROADCAST:
                # A stored package sent again costs nothing more: the budget held its child when built.
                work.append(PackageWork(tracked, action, target, list(group), status))
                continue
            rate = target
            if not explicit:
                paid = [self.book.fees_paid(e, refcount) for e in group]
                rate = budget_rate(group, paid, snap, tracked.vsize, target, self.policy)
            if rate < target:
                set_error(group, FeeBudgetExceeded(rate, target, self.policy.budget_ratio))
            if rate >= relay.floor:
                work.append(PackageWork(tracked, action, rate, list(group), status))
        await self.desk.act(work, ChildTerms(relay, self.floors, self.funding_outlook))
        statuses.update((w.tracked.txid, w.status) for w in work)
        return statuses

    async def _learn_claim_timelocks(self, exits: Iterable[LiveExit]) -> None:
        """The claim clause's timelocks of exits that lack them (first cycle after a start or a load), from
        one read of their VTXOs: decoding them every cycle, or one read per exit, costs O(N) round trips."""
        missing = [e for e in exits if e.claim_delay is None]
        if not missing:
            return
        rows = await self.vtxos.get_many([e.vtxo_id for e in missing])
        for e, row in zip(missing, rows, strict=True):
            clause = row.claim_clause
            e.claim_delay, e.claim_locktime = clause.csv_blocks, clause.cltv_height
            e.claim_leaf = clause.leaf_script
