"""Claims asked for, by the API or the guard: which exits, at what rate, and the exits it moves on.

The engine holds its lock around each of these; the claim tx is kept and sent by the claim desk
(exitd/engine/claim_desk.py), which also replaces it in later cycles when the market moves.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bitcoin.core import b2lx

from exitd.ark.weight import tx_vsize
from exitd.chain.blocks import tip_height
from exitd.engine.claim_desk import ClaimDesk
from exitd.engine.claims import ClaimInput, build_claim_tx, claim_input, claimable_exits
from exitd.engine.errors import ClaimHeld, ClaimMissingSignableClause
from exitd.engine.fee_policy import REQUEST_CLAIM_TARGET, RaisedRate
from exitd.engine.model import ClaimCandidate, LiveExit
from exitd.engine.outcomes import ClaimBroadcast
from exitd.engine.packages import PackageDesk
from exitd.engine.persist import persist_states
from exitd.engine.states import ExitState, ExitStateKind
from exitd.log import event, get_logger

log = get_logger("engine")


class ClaimRequests:
    def __init__(self, claim_desk: ClaimDesk, desk: PackageDesk) -> None:
        """`claim_desk` keeps and sends each claim tx, over the same store, node and books as these
        requests; `desk`: the package desk, whose crash points (test-only) a claim's broadcast passes too."""
        self.claim_desk = claim_desk
        self.desk = desk
        self.store, self.rpc, self.fees = claim_desk.store, claim_desk.rpc, claim_desk.fees
        self.vtxos, self.book, self.policy = claim_desk.vtxos, claim_desk.book, claim_desk.fee_policy

    async def price(self, vtxo_ids: Sequence[str], target: int, max_rate: int | None = None) -> int:
        """The market's rate for one claim of these claimable exits (ClaimDesk.price), at most `max_rate`
        (None: the fee policy's ceiling). Reads only: no lock."""
        ceiling = self.policy.max_rate if max_rate is None else max_rate
        return await self.claim_desk.price(vtxo_ids, target, ceiling)

    async def hold(self, vtxo_ids: Sequence[str], error: ClaimHeld) -> None:
        """Keep on these exits, while claimable, why automatic claims leave them alone (stored, so that a
        status and a restart see it)."""
        exits = self.book.exits
        held = [exits[i] for i in vtxo_ids if exits[i].state.kind is ExitStateKind.CLAIMABLE]
        for e in held:
            e.error = error
        await persist_states(self.store, [(e, e.state) for e in held])

    async def claim(
        self,
        vtxo_ids: Sequence[str] | None,
        destination: bytes,
        fee_rate: int | None,
        preimages: dict[str, bytes] | None,
    ) -> ClaimBroadcast:
        """Broadcast one claim tx for the given (or all) claimable exits, as ExitEngine.claim says."""
        chosen = claimable_exits(self.book.exits, vtxo_ids)
        tip = await tip_height(self.rpc)
        inputs, skipped = await self._inputs(chosen, vtxo_ids is not None, preimages or {})
        relay = await self.fees.relay()
        if fee_rate is None:
            rate = await self.price([e.vtxo_id for e in chosen], REQUEST_CLAIM_TARGET)
        else:
            rate = relay.raised(fee_rate)
            for e in chosen:
                e.raised_rate = RaisedRate.of(fee_rate, relay)
        tx, fee = build_claim_tx(inputs, destination, rate, tip, relay.floor)
        txid = b2lx(tx.GetTxid())
        candidate = ClaimCandidate(txid, txid, 0, tx.serialize(), fee, tx_vsize(tx), rate, tip)
        refused = await self._send(candidate, tip)
        if refused is None:
            event(log, logging.INFO, "claim_broadcast", txid=txid, exits=len(chosen), fee=fee, rate=rate)
        await self._in_progress(chosen, tip, txid, fee)
        amount = sum(i.amount for i in inputs)
        return ClaimBroadcast(txid, tuple(e.vtxo_id for e in chosen), amount, fee, tuple(skipped), refused)

    async def _inputs(
        self, chosen: list[LiveExit], named: bool, preimages: dict[str, bytes]
    ) -> tuple[list[ClaimInput], list[ClaimMissingSignableClause]]:
        """The claim inputs of `chosen`. Exits `named` by the caller are claimed all or none; of all, one
        whose claim cannot be signed here is left out of `chosen` and named, unless none is left."""
        inputs = []
        skipped: list[ClaimMissingSignableClause] = []
        for e in list(chosen):
            try:
                inputs.append(await claim_input(self.vtxos, e.vtxo_id, preimages.get(e.vtxo_id)))
            except ClaimMissingSignableClause as error:
                if named or len(skipped) + 1 == len(chosen):
                    raise
                skipped.append(error)
                chosen.remove(e)
                event(log, logging.WARNING, "claim_skipped", vtxo=e.vtxo_id, error=str(error))
        return inputs, skipped

    async def _send(self, candidate: ClaimCandidate, tip: int) -> str | None:
        """Store the claim tx before it is ever broadcast (a restart still watches it), then broadcast it;
        the node's fee refusal, if it refused."""
        await self.claim_desk.keep(candidate)
        await self.desk.crash_point("before_claim_broadcast")
        refused = await self.claim_desk.send(candidate, tip)
        await self.desk.crash_point("after_claim_broadcast")
        return refused

    async def _in_progress(self, chosen: Sequence[LiveExit], tip: int, txid: str, fee: int) -> None:
        """Move the claimed exits to claim-in-progress; a claim held before is on its way now."""
        in_progress = [
            (
                e,
                ExitState(
                    ExitStateKind.CLAIM_IN_PROGRESS,
                    tip,
                    claimable_since=e.state.claimable_since,
                    claim_txid=txid,
                    claim_fee=fee,
                    signed_claims=(*e.state.signed_claims, txid),
                ),
            )
            for e in chosen
        ]
        for e in chosen:
            e.error = None
        await persist_states(self.store, in_progress)
