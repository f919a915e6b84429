"""Admission's I/O: the chain and the fee market read for exitd/engine/admission.py's verdicts.

A start (the user's or the guard's) asks here which of its exits are worth it and in time, and the fee
estimate what exiting each VTXO would cost and recover now. The verdicts themselves are admission.py's
pure functions; this reads what they are made from.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from exitd.chain.fees import PACKAGE_ROOM, FeeEstimator
from exitd.chain.view import ChainView
from exitd.engine.admission import (
    Admissions,
    Candidate,
    admission_targets,
    admissions,
    candidate,
    chain_snapshot,
    refusal,
    refusal_reason,
)
from exitd.engine.cycle import Funding
from exitd.engine.errors import DustLimit, InvalidWalletState, StartRefused, WalletCannotFund
from exitd.engine.fee_policy import FeePolicy
from exitd.engine.starts import Starts, exit_chain_of
from exitd.log import event, get_logger
from exitd.store.vtxos import StoredVtxo

log = get_logger("engine")


class AdmissionDesk:
    def __init__(
        self, view: ChainView, fees: FeeEstimator, policy: FeePolicy, funding: Funding | None
    ) -> None:
        """`funding`: the wallet a user's start must be able to pay its first levels from (None: no wallet,
        nothing to check)."""
        self.view = view
        self.fees = fees
        self.policy = policy
        self.funding = funding

    async def admit_starts(self, starts: Starts, strict: bool) -> list[StartRefused]:
        """Leave out of `starts` the exits not worth it or too late (`strict`: refuse them all instead),
        and with `strict` refuse a start whose first levels the wallet cannot pay for."""
        found = await self._admissions(starts.candidates)
        floor = self.policy.min_net_recovered
        refused = []
        for cost in found.costs:
            why = refusal(cost, floor)
            if why is None:
                continue
            error = StartRefused(cost.vtxo_id, why.value, refusal_reason(cost, why, floor))
            if strict:
                raise error
            event(log, logging.WARNING, "exit_refused", vtxo=cost.vtxo_id, reason=why.value, net=cost.net)
            refused.append(error)
        starts.refuse(refused)
        if strict and self.funding is not None and starts.exits:
            kept = {t for e in starts.exits for t in e.txids}
            needed = sum(fee for txid, fee in found.first_levels.items() if txid in kept)
            available = (await self.funding.balance()).confirmed
            if needed > available:
                raise WalletCannotFund(needed, available, await self.funding.next_address())
        return refused

    async def admit(self, rows: Sequence[StoredVtxo]) -> Admissions:
        """What exiting each of `rows` would cost and recover now, for the fee estimate's verdicts."""
        candidates = []
        unexitable = {}
        for row in rows:
            try:
                candidates.append(candidate(row.vtxo_id, row.amount_sat, exit_chain_of(row)))
            except (DustLimit, InvalidWalletState) as e:
                unexitable[row.vtxo_id] = str(e)
        return replace(await self._admissions(candidates), unexitable=unexitable)

    async def _admissions(self, candidates: Sequence[Candidate]) -> Admissions:
        snap = await chain_snapshot(self.view, candidates)
        targets = admission_targets(snap, candidates, self.policy)
        market = await self.fees.market(targets, next_block=PACKAGE_ROOM)
        return admissions(snap, market, candidates, self.policy)
