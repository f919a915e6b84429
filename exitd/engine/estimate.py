"""What exiting some VTXOs still costs (barkd 0.6.0's fee estimate), and how the wallet would fund it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bitcoin.core import b2lx

from exitd.ark.exit_tx import build_exit_chain
from exitd.ark.policy import ClaimClause
from exitd.ark.weight import tx_vsize
from exitd.chain.fees import FeeEstimator, fee_at_rate
from exitd.chain.view import ChainView, TxState
from exitd.engine.claims import claim_tx_vsize
from exitd.engine.fee_policy import exit_fee_estimate
from exitd.store.vtxos import StoredVtxo
from exitd.wallet.planner import PlannedTx


@dataclass(frozen=True)
class FeeEstimate:
    """barkd 0.6.0's EmergencyExitFeeEstimateResponse, in sat."""

    exit_broadcast_fee: int
    claim_fee: int
    fee_rate: int  # sat/kvB of the broadcast leg
    txs_to_broadcast: int
    fundable: bool
    # The exit txs in flight and those of the estimate, as the wallet's funding plan sees them.
    planned: tuple[PlannedTx, ...] = ()


@dataclass(frozen=True)
class _ExitTxs:
    """The exit txs of some VTXOs (a tx shared by several counted once) and their claim clauses."""

    vsizes: dict[str, int]
    inputs: dict[str, str]  # txid -> the txid of the tx it spends
    clauses: list[ClaimClause]


def _exit_txs(rows: Sequence[StoredVtxo]) -> _ExitTxs:
    found = _ExitTxs({}, {}, [])
    for row in rows:
        vtxo = row.vtxo
        input_txid = vtxo.anchor_point.txid_hex
        for exit_tx in build_exit_chain(vtxo).txs:
            txid = b2lx(exit_tx.tx.GetTxid())
            found.vsizes[txid] = tx_vsize(exit_tx.tx)
            found.inputs[txid] = input_txid
            input_txid = txid
        found.clauses.append(row.claim_clause)
    return found


async def estimate_exit(
    view: ChainView,
    fees: FeeEstimator,
    in_flight: Sequence[PlannedTx],
    rows: Sequence[StoredVtxo],
    fee_rate: int | None,
    destination: bytes,
    confirmed_balance: int,
) -> FeeEstimate:
    """What exiting `rows` still costs: a CPFP package for every exit tx not yet in the chain or the
    mempool, and one batched claim. `in_flight`: the exit txs the engine already plans to fund."""
    if fee_rate is None:
        rates = await fees.rates()
        broadcast_rate, claim_rate = rates.fast, rates.regular
    else:
        broadcast_rate = claim_rate = (await fees.relay()).raised(fee_rate)
    txs = _exit_txs(rows)
    snap = await view.snapshot(txs.vsizes)
    pending = [v for txid, v in txs.vsizes.items() if snap.location(txid).state is TxState.NOT_FOUND]
    broadcast = exit_fee_estimate(broadcast_rate, pending)
    claim = fee_at_rate(claim_rate, claim_tx_vsize(txs.clauses, destination)) if txs.clauses else 0
    planned = {p.txid: p for p in in_flight}
    for txid, vsize in txs.vsizes.items():
        state = snap.location(txid).state
        if txid not in planned and state is not TxState.CONFIRMED:
            funded = state is TxState.MEMPOOL
            planned[txid] = PlannedTx(txid, txs.inputs[txid], vsize, broadcast_rate, funded)
    return FeeEstimate(
        broadcast,
        claim,
        broadcast_rate,
        len(pending),
        confirmed_balance >= broadcast,
        tuple(planned.values()),
    )
