"""The claim tx: one version-2 tx spending the exit outputs of claimable VTXOs to one destination.

The fee comes out of the claimed amount: sign once at the full amount to learn the exact weight, then take
rate x vsize from the output and sign again (the weight does not change: BIP340 signatures are fixed-size).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bitcoin.core import CMutableTransaction, CMutableTxIn, CMutableTxOut, COutPoint, CScript, CTransaction

from exitd.ark.claim import ClaimError, ClaimSigner, claim_input_weight, sign_claim_inputs
from exitd.ark.encoding import OutPoint
from exitd.ark.policy import ClaimClause
from exitd.ark.weight import WITNESS_SCALE_FACTOR, tx_vsize, vsize
from exitd.chain.fees import fee_at_rate
from exitd.engine.errors import (
    ClaimFeeExceedsOutput,
    ClaimMissingInputs,
    ClaimMissingSignableClause,
    ClaimSigningError,
    VtxoNotClaimable,
)
from exitd.engine.model import LiveExit
from exitd.engine.states import ExitStateKind
from exitd.wallet.vtxos import VtxoBook

CLAIM_TX_VERSION = 2
# The P2TR dust limit barkd applies to every claim output, whatever the destination type.
CLAIM_DUST = 330


@dataclass(frozen=True)
class ClaimInput:
    outpoint: OutPoint
    amount: int
    script_pubkey: bytes
    signer: ClaimSigner


def _signed(
    inputs: Sequence[ClaimInput], destination: bytes, value: int, locktime: int
) -> CMutableTransaction:
    tx = CMutableTransaction(
        [CMutableTxIn(COutPoint(i.outpoint.txid, i.outpoint.vout)) for i in inputs],
        [CMutableTxOut(value, CScript(destination))],
        nLockTime=locktime,
        nVersion=CLAIM_TX_VERSION,
    )
    try:
        sign_claim_inputs(
            tx, [(i.amount, i.script_pubkey) for i in inputs], {n: i.signer for n, i in enumerate(inputs)}
        )
    except ClaimError as e:
        raise ClaimSigningError(str(e)) from None
    return tx


def build_claim_tx(
    inputs: Sequence[ClaimInput], destination: bytes, fee_rate: int, tip_height: int, floor: int
) -> tuple[CTransaction, int]:
    """(signed tx, fee). nLockTime is the tip, as bark's drain (anti fee-sniping; meets any HTLC CLTV
    the caller already checked is reached). `floor`: the node's relay floor, named when the fee leaves no
    non-dust output."""
    total = sum(i.amount for i in inputs)
    draft = _signed(inputs, destination, total, tip_height)
    size = tx_vsize(draft)
    fee = fee_at_rate(fee_rate, size)
    if fee + CLAIM_DUST > total:
        fitting = max(0, total - CLAIM_DUST) * 1000 // size
        raise ClaimFeeExceedsOutput(fee + CLAIM_DUST, total, fee_rate, fitting, floor)
    return claim_paying(inputs, destination, fee, tip_height), fee


def claim_paying(inputs: Sequence[ClaimInput], destination: bytes, fee: int, locktime: int) -> CTransaction:
    """The claim tx paying exactly `fee` out of the claimed amount (a replacement's fee is decided before
    signing: its size is its predecessor's), which the caller keeps below the amount less dust."""
    total = sum(i.amount for i in inputs)
    if fee + CLAIM_DUST > total:
        raise ValueError(f"a claim fee of {fee} sat leaves no non-dust output of {total} sat")
    return CTransaction.from_tx(_signed(inputs, destination, total - fee, locktime))


def claim_tx_vsize(clauses: Sequence[ClaimClause], destination: bytes) -> int:
    """The vsize a claim of these clauses to `destination` will have, without signing it (for estimates)."""
    outputs = 1
    stripped = 4 + 1 + 1 + 4 + outputs * (8 + 1 + len(destination))  # version, counts, locktime, output
    weight = (
        stripped * WITNESS_SCALE_FACTOR + 2 + sum(claim_input_weight(c) for c in clauses)
    )  # + marker, flag
    return vsize(weight)


def claim_deadline(clause: ClaimClause, claimable_since: int) -> int | None:
    """The first height at which the clause's rival may take the output (None: it has none), for an exit
    claimable since `claimable_since`: its output confirmed `csv_blocks` before (exact for a clause
    without a CLTV of its own, as an HTLC receive's; the only clause with a rival)."""
    if clause.rival is None:
        return None
    return clause.rival.opens_at(claimable_since - clause.csv_blocks)


def claimable_exits(exits: Mapping[str, LiveExit], vtxo_ids: Sequence[str] | None) -> list[LiveExit]:
    """The exits a claim of `vtxo_ids` (None: every claimable one) spends; each given one must be
    claimable, and at least one exit must be."""
    if vtxo_ids is None:
        chosen = [e for e in exits.values() if e.state.kind is ExitStateKind.CLAIMABLE]
    else:
        chosen = []
        for vtxo_id in vtxo_ids:
            e = exits.get(vtxo_id)
            if e is None or e.state.kind is not ExitStateKind.CLAIMABLE:
                raise VtxoNotClaimable(vtxo_id, e.state.kind.value if e else "not exiting")
            chosen.append(e)
    if not chosen:
        raise ClaimMissingInputs()
    return chosen


async def claim_input(vtxos: VtxoBook, vtxo_id: str, preimage: bytes | None) -> ClaimInput:
    """The VTXO's claim input, signable with its user key (and the HTLC preimage, given or stored)."""
    row = await vtxos.get(vtxo_id)
    if row.key_index is None:
        raise ClaimMissingSignableClause(vtxo_id, "this wallet does not hold the VTXO's user key")
    clause = row.claim_clause
    preimage = preimage or row.preimage
    if clause.needs_preimage and preimage is None:
        raise ClaimMissingSignableClause(vtxo_id, "the HTLC-receive claim needs the payment preimage")
    secret = vtxos.keychain.seckey(row.key_index)
    signer = ClaimSigner(clause, secret, preimage if clause.needs_preimage else None)
    return ClaimInput(OutPoint.from_str(vtxo_id), row.amount_sat, clause.script_pubkey, signer)
