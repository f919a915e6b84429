"""Admission: before any fee is spent, an exit must be worth it and in time.

Other exit engines admitted sub-dust VTXOs that then failed at the claim and stranded in a state the user
could not leave, exited a VTXO at a loss from their expiry path, and started exits that could no longer
finish before the server's sweep (../shared/reference/exit-failure-modes.md). So a start, the user's or the
guard's, first computes for each VTXO:

- the CPFP fees of the levels still to broadcast (not in the mempool or the chain), one package each at the
  rate the fee policy aims for now (the market rate for its level's target, exitd/engine/fee_policy.py);
- the claim fee (a one-input claim to a P2TR output at the claim rate);
- the net recovered: amount - CPFP fees - claim fee.

It is refused when the net is below dust (330 sat, the claim output's limit) or below `fees.min_net_recovered`
(not worth it), or when the blocks left before `expiry_height` are fewer than the levels still unconfirmed
plus the VTXO's exit delta (too late: the claim must confirm before the server may sweep the output). A
user may force a start past both; the guard never does (it alerts vtxo-not-worth-exiting instead).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from bitcoin.core import b2lx

from exitd.ark.exit_tx import ExitChain
from exitd.ark.policy import UserPolicy
from exitd.ark.weight import tx_vsize
from exitd.chain.fees import Market, fee_at_rate
from exitd.chain.view import ChainSnapshot, ChainView, TxState
from exitd.engine.claims import CLAIM_DUST, claim_tx_vsize
from exitd.engine.fee_policy import (
    CHILD_VSIZE_ESTIMATE,
    REQUEST_CLAIM_TARGET,
    FeePolicy,
    claim_rate,
    deadline_rate,
    exit_fee_estimate,
    level_market,
    level_target,
)

# The claim an estimate weighs: one P2TR output, what exitd's own wallet receives to.
P2TR_DESTINATION = bytes.fromhex("5120") + bytes(32)


class Refusal(StrEnum):
    NOT_WORTH_IT = "not-worth-it"
    TOO_LATE = "too-late"


@dataclass(frozen=True)
class ExitCost:
    """What exiting one VTXO still costs and recovers, and the time it needs and has."""

    vtxo_id: str
    amount: int
    cpfp_fee: int  # sat, of the levels not yet broadcast
    claim_fee: int  # sat
    levels_left: int  # exit txs not yet confirmed
    exit_delta: int
    blocks_left: int  # expiry_height - tip
    first_level_fee: int = 0  # sat the wallet pays now: the package of its first level not broadcast

    @property
    def net(self) -> int:
        return self.amount - self.cpfp_fee - self.claim_fee

    @property
    def blocks_needed(self) -> int:
        return self.levels_left + self.exit_delta


def exit_cost(
    vtxo_id: str,
    amount: int,
    unbroadcast_vsizes: Iterable[int],
    levels_left: int,
    exit_delta: int,
    blocks_left: int,
    rate: int,
    claim_rate: int,
    claim_vsize: int,
) -> ExitCost:
    """The cost of one exit at `rate` (CPFP packages) and `claim_rate` (the claim), both sat/kvB."""
    cpfp = exit_fee_estimate(rate, unbroadcast_vsizes)
    return ExitCost(
        vtxo_id, amount, cpfp, fee_at_rate(claim_rate, claim_vsize), levels_left, exit_delta, blocks_left
    )


def refusal(cost: ExitCost, min_net: int) -> Refusal | None:
    """Why this exit should not start (None: it may). Too late first: a deadline already missed also
    prices every level at the ceiling, and the loss that follows is not the reason."""
    if cost.blocks_left < cost.blocks_needed:
        return Refusal.TOO_LATE
    if cost.net < max(CLAIM_DUST, min_net):
        return Refusal.NOT_WORTH_IT
    return None


def refusal_reason(cost: ExitCost, why: Refusal, min_net: int) -> str:
    """The refusal with its figures, for a 400, an alert and a fee verdict."""
    if why is Refusal.NOT_WORTH_IT:
        floor = max(CLAIM_DUST, min_net)
        return (
            f"VTXO {cost.vtxo_id} is not worth exiting: {cost.amount} sat minus {cost.cpfp_fee} sat of CPFP "
            f"fees and {cost.claim_fee} sat of claim fee leaves {cost.net} sat, below the floor of "
            f"{floor} sat"
        )
    return (
        f"VTXO {cost.vtxo_id} is too late to exit: {cost.blocks_left} blocks are left before its expiry, "
        f"its {cost.levels_left} unconfirmed levels and exit delta of {cost.exit_delta} need "
        f"{cost.blocks_needed}"
    )


@dataclass(frozen=True)
class Candidate:
    """A VTXO a start would exit: its exit txs (txid, vsize; root first) and its claim's vsize."""

    vtxo_id: str
    amount: int
    expiry_height: int
    exit_delta: int
    txs: tuple[tuple[str, int], ...]
    claim_vsize: int


def candidate(vtxo_id: str, amount: int, chain: ExitChain) -> Candidate:
    vtxo = chain.vtxo
    policy = vtxo.policy
    assert isinstance(policy, UserPolicy)
    clause = policy.user_claim_clause(vtxo.server_pubkey, vtxo.exit_delta, vtxo.expiry_height)
    return Candidate(
        vtxo_id,
        amount,
        vtxo.expiry_height,
        vtxo.exit_delta,
        tuple((b2lx(t.tx.GetTxid()), tx_vsize(t.tx)) for t in chain.txs),
        claim_tx_vsize([clause], P2TR_DESTINATION),
    )


@dataclass(frozen=True)
class Admissions:
    """The cost of each candidate, and the fees the first level still to broadcast of each needs from the
    wallet now (by exit txid: a tx shared by several candidates is paid once)."""

    costs: tuple[ExitCost, ...]
    first_levels: dict[str, int]
    # VTXOs that cannot be exited at all (unfinished, unrelayable), and why.
    unexitable: dict[str, str] = field(default_factory=dict)


def levels_left(c: Candidate, snap: ChainSnapshot) -> int:
    return sum(1 for txid, _ in c.txs if not snap.is_confirmed(txid))


def admission_targets(snap: ChainSnapshot, candidates: Sequence[Candidate], policy: FeePolicy) -> set[int]:
    """The confirmation targets the candidates' levels in flight would aim for now, and the claim's."""
    tip = snap.tip.height
    targets = {level_target(tip, c.expiry_height, levels_left(c, snap), policy) for c in candidates}
    return targets | {REQUEST_CLAIM_TARGET}


def admissions(
    snap: ChainSnapshot, market: Market, candidates: Sequence[Candidate], policy: FeePolicy
) -> Admissions:
    """Every candidate's cost at the rate the fee policy would pay for its levels now (deadline_rate, from
    the market rate for its level's target and the next block's reading, as a cycle prices it) and the
    claim at the ~3-block claim rate, from where its txs are in `snap`. `market` was read for
    admission_targets, with the next block's reading. A claim nobody can price yet (no estimate and a
    backlog) is weighed at the estimate's stand-in, bitcoind's fallback: a cost, not a rate paid."""
    tip = snap.tip.height
    claim_at = claim_rate(market, REQUEST_CLAIM_TARGET, policy.max_rate)
    claim_at = market.rate(REQUEST_CLAIM_TARGET) if claim_at is None else claim_at
    costs = []
    first_levels: dict[str, int] = {}
    for c in candidates:
        unbroadcast = [(txid, v) for txid, v in c.txs if snap.location(txid).state is TxState.NOT_FOUND]
        levels = levels_left(c, snap)
        target = market.rate(level_target(tip, c.expiry_height, levels, policy))
        rate = deadline_rate(level_market(market, target), tip, c.expiry_height, levels, policy)
        cost = exit_cost(
            c.vtxo_id,
            c.amount,
            [vsize for _, vsize in unbroadcast],
            levels,
            c.exit_delta,
            c.expiry_height - tip,
            rate,
            claim_at,
            c.claim_vsize,
        )
        if unbroadcast:
            txid, vsize = unbroadcast[0]
            first_levels[txid] = fee_at_rate(rate, vsize + CHILD_VSIZE_ESTIMATE)
            cost = replace(cost, first_level_fee=first_levels[txid])
        costs.append(cost)
    return Admissions(tuple(costs), first_levels)


async def chain_snapshot(view: ChainView, candidates: Sequence[Candidate]) -> ChainSnapshot:
    """Where the candidates' exit txs are: the one read admission needs."""
    return await view.snapshot(txid for c in candidates for txid, _ in c.txs)
