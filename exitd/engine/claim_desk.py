"""Claim candidates kept and sent: the I/O of exitd/engine/replacement.py's decisions.

Every claim tx exitd signs is stored before it is broadcast, so that after a restart each candidate is
still watched, and whichever confirms completes the exits. A candidate the node refuses for its fee is
recorded as such and never sent again; the cycle (`step`) reprices it on a later block, sends again one
that left the mempool, and replaces one that waited too long below the market.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace

from bitcoin.core import b2lx

from exitd.ark.weight import tx_vsize
from exitd.chain.blocks import tip_height
from exitd.chain.broadcast import send_raw_transaction
from exitd.chain.fees import PACKAGE_ROOM, FeeEstimator
from exitd.chain.rpc import BitcoinRpc, RpcError
from exitd.chain.view import MEMPOOL, ChainSnapshot, TxState
from exitd.engine.claims import ClaimInput, claim_deadline, claim_input, claim_paying
from exitd.engine.errors import ClaimMarketUnknown, ExitError
from exitd.engine.fee_policy import CLAIM_TARGET, FeePolicy, batch_claim_rate, claim_targets, refused_for_fee
from exitd.engine.model import CLAIM_WATCHED, ClaimCandidate, EngineCounters, ExitBook
from exitd.engine.replacement import ClaimMove, ClaimPlace, ClaimPolicy, claim_place, claim_step, needs_step
from exitd.log import event, get_logger
from exitd.store.claims import StoredClaim, insert_claim, load_claims, set_claim_refused
from exitd.store.db import Store
from exitd.wallet.vtxos import VtxoBook

log = get_logger("engine")

# An HTLC-receive claim input's witness: signature, preimage, leaf script, control block.
_HTLC_WITNESS_ITEMS = 4


class ClaimDesk:
    def __init__(
        self,
        store: Store,
        rpc: BitcoinRpc,
        fees: FeeEstimator,
        vtxos: VtxoBook,
        book: ExitBook,
        counters: EngineCounters,
        policy: ClaimPolicy,
        fee_policy: FeePolicy,
    ) -> None:
        self.store = store
        self.rpc = rpc
        self.fees = fees
        self.vtxos = vtxos
        self.book = book
        self.counters = counters
        self.policy = policy
        self.fee_policy = fee_policy
        # A claim with a deadline (an HTLC receive's) is not left below the market for blocks: replaced at
        # the first block that finds it so.
        self.urgent = replace(policy, replace_after_blocks=1)
        # The fee /metrics counted for each claim (by its first txid): the most one of its candidates the
        # node took pays; a candidate sent again, or one a replacement outbid, adds nothing more.
        self._counted: dict[str, int] = {}

    async def load(self) -> None:
        """Every candidate of the claims the exits claimable, being claimed or claimed name or were signed
        for, into the book."""
        named = [
            t
            for e in self.book.exits.values()
            if e.state.kind in CLAIM_WATCHED
            for t in (e.state.claim_txid, e.state.txid, *e.state.signed_claims)
            if t
        ]
        async with self.store.session() as session:
            stored = await load_claims(session, named)
        self.book.claims, self.book.claim_of = {}, {}
        for s in stored:
            self.book.keep_candidate(
                ClaimCandidate(
                    s.txid,
                    s.first_txid,
                    s.seq,
                    s.raw,
                    s.fee,
                    s.vsize,
                    s.fee_rate,
                    s.signed_height,
                    s.refused_height,
                )
            )

    async def keep(self, c: ClaimCandidate) -> None:
        """Store a new candidate (before it is ever broadcast), fenced: a deposed leader's claim would race
        the new leader's."""
        async with self.store.session(fenced=True) as session:
            await insert_claim(
                session,
                StoredClaim(
                    c.txid, c.first_txid, c.seq, c.raw, c.fee, c.vsize, c.rate, c.signed_height, None
                ),
            )
        self.book.keep_candidate(c)

    async def send(self, c: ClaimCandidate, tip: int) -> str | None:
        """Broadcast `c`: None when the node took it, else the node's fee refusal, recorded so that the
        candidate is never sent again as it is (a later block reprices it). Other refusals raise."""
        try:
            await send_raw_transaction(self.rpc, c.raw)
        except RpcError as e:
            if not refused_for_fee(e.message):
                raise
            async with self.store.session() as session:
                await set_claim_refused(session, c.txid, tip)
            self.book.keep_candidate(replace(c, refused_height=tip))
            event(log, logging.WARNING, "claim_refused", txid=c.txid, fee=c.fee, rate=c.rate, error=e.message)
            return e.message
        counted = self._counted.get(c.first_txid, 0)
        self.counters.claim_fees_paid += max(0, c.fee - counted)
        self._counted[c.first_txid] = max(counted, c.fee)
        return None

    def places(
        self, claims: Mapping[str, list[ClaimCandidate]], snap: ChainSnapshot
    ) -> dict[str, ClaimPlace]:
        """Where each claim (by its first txid) stands in the snapshot."""
        return {
            first: claim_place(group, [snap.location(c.txid) for c in group])
            for first, group in claims.items()
        }

    async def step(self, places: dict[str, ClaimPlace], tip: int) -> None:
        """Send again, reprice or replace the claims that call for it (replacement.py); `places` is
        updated to where each claim stands once done. A claim spending an HTLC receive is priced toward
        its deadline, as the guard's first price of it was (fee_policy.batch_claim_rate). A failure is
        logged and leaves the claim as it was."""
        open_claims = {f: p for f, p in places.items() if p.location.state is not TxState.CONFIRMED}
        if not open_claims:
            return
        try:
            deadlines = await self._deadlines(open_claims)
        except ExitError as e:
            event(log, logging.WARNING, "claim_step_failed", claims=len(open_claims), error=str(e))
            return
        policies = {f: self.urgent if deadlines[f] else self.policy for f in open_claims}
        due = [f for f, place in open_claims.items() if needs_step(place, tip, policies[f])]
        if not due:
            return
        targets = claim_targets(CLAIM_TARGET, tip, [d for f in due for d in deadlines[f]], self.fee_policy)
        try:
            market = await self.fees.market(targets, next_block=PACKAGE_ROOM)
        except RpcError as e:
            event(log, logging.WARNING, "claim_step_failed", claims=len(due), error=str(e))
            return
        relay = market.relay
        for first in due:
            place = places[first]
            rate = batch_claim_rate(
                market, CLAIM_TARGET, self.policy.max_rate, tip, deadlines[first], self.fee_policy
            )
            target = None if rate is None else relay.raised(rate)
            step = claim_step(place, tip, target, relay, policies[first])
            if step.move is ClaimMove.WAIT:
                continue
            try:
                sent = place.candidate
                if step.move is ClaimMove.REPLACE:
                    sent = await self._replacement(place, step.fee, step.rate, tip)
                refusal = await self.send(sent, tip)
            except (RpcError, ExitError) as e:
                event(log, logging.WARNING, "claim_step_failed", txid=place.candidate.txid, error=str(e))
                continue
            if refusal is None:
                event(log, logging.INFO, "claim_sent", txid=sent.txid, move=step.move.value, fee=sent.fee)
                places[first] = ClaimPlace(sent, MEMPOOL, sent)
            else:
                newest = self.book.candidates(sent.txid)[-1]
                places[first] = replace(place, newest=newest)

    async def _deadlines(self, places: Mapping[str, ClaimPlace]) -> dict[str, list[int]]:
        """The deadlines of each claim's inputs (by its first txid)."""
        ids = sorted({i for place in places.values() for i in place.newest.vtxo_ids})
        of = dict(zip(ids, await self.deadlines(ids), strict=True))
        return {
            first: [d for i in place.newest.vtxo_ids if (d := of[i]) is not None]
            for first, place in places.items()
        }

    async def deadlines(self, vtxo_ids: Sequence[str]) -> list[int | None]:
        """Each exit's claim deadline, in the order asked: the height at which an HTLC receive's rival
        leaf opens; None for the other clauses, and for an exit not (or no longer) claimable."""
        rows = await self.vtxos.get_many(vtxo_ids)
        found: list[int | None] = []
        for vtxo_id, row in zip(vtxo_ids, rows, strict=True):
            e = self.book.exits.get(vtxo_id)
            since = e.state.claimable_since if e is not None else None
            found.append(None if since is None else claim_deadline(row.claim_clause, since.height))
        return found

    async def price(self, vtxo_ids: Sequence[str], target: int, max_rate: int) -> int:
        """The market's rate for one claim of these claimable exits (fee_policy.batch_claim_rate): for
        `target` blocks and at most `max_rate`, or what an HTLC receive's deadline asks. Raises
        ClaimMarketUnknown when nobody can price it. Reads only."""
        deadlines = [d for d in await self.deadlines(vtxo_ids) if d is not None]
        tip = await tip_height(self.rpc)
        policy = self.fee_policy
        market = await self.fees.market(
            claim_targets(target, tip, deadlines, policy), next_block=PACKAGE_ROOM
        )
        rate = batch_claim_rate(market, target, max_rate, tip, deadlines, policy)
        if rate is None:
            raise ClaimMarketUnknown(target, market.next_block)
        return rate

    async def _replacement(self, place: ClaimPlace, fee: int, rate: int, tip: int) -> ClaimCandidate:
        """A new candidate of the claim: its newest's inputs, destination and locktime, paying `fee`."""
        old = place.newest.tx
        inputs: list[ClaimInput] = []
        for vtxo_id, witness in zip(place.newest.vtxo_ids, old.wit.vtxinwit, strict=True):
            stack = witness.scriptWitness.stack
            preimage = stack[1] if len(stack) == _HTLC_WITNESS_ITEMS else None
            inputs.append(await claim_input(self.vtxos, vtxo_id, preimage))
        tx = claim_paying(inputs, bytes(old.vout[0].scriptPubKey), fee, old.nLockTime)
        c = ClaimCandidate(
            b2lx(tx.GetTxid()),
            place.newest.first_txid,
            place.newest.seq + 1,
            tx.serialize(),
            fee,
            tx_vsize(tx),
            rate,
            tip,
        )
        await self.keep(c)
        event(
            log,
            logging.INFO,
            "claim_replacement",
            txid=c.txid,
            replaces=place.candidate.txid,
            fee=fee,
            rate=rate,
        )
        return c
