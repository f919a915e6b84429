"""The claim tx builder: fee from the exact signed size, out of the claimed amount, refused when too poor."""

import pytest
from bitcoin.core import CTransaction

from exitd.ark.claim import ClaimSigner
from exitd.ark.exit_tx import build_exit_chain
from exitd.ark.key import schnorr_verify, xonly
from exitd.ark.policy import UserPolicy
from exitd.ark.sighash import taproot_sighash
from exitd.ark.vtxo import decode_vtxo
from exitd.engine.claims import CLAIM_TX_VERSION, ClaimInput, build_claim_tx, claim_tx_vsize, tx_vsize
from exitd.engine.errors import ClaimFeeExceedsOutput
from tests.support.vectors import GENERATOR_INPUTS, vector

KEY = bytes.fromhex(GENERATOR_INPUTS["arkoor3"]["user_key_secret"])
DESTINATION = bytes.fromhex("5120") + bytes(range(32))


def arkoor3_input() -> ClaimInput:
    vtxo = decode_vtxo(vector("arkoor3_vtxo").data)
    assert isinstance(vtxo.policy, UserPolicy)
    clause = vtxo.claim_clause
    assert build_exit_chain(vtxo).txs[-1].chain_output.script_pubkey == clause.script_pubkey
    return ClaimInput(vtxo.point, vtxo.amount, clause.script_pubkey, ClaimSigner(clause, KEY))


def test_fee_is_rate_times_signed_vsize_and_signature_verifies() -> None:
    claim = arkoor3_input()
    tx, fee = build_claim_tx([claim], DESTINATION, fee_rate=2500, tip_height=800, floor=100)
    assert tx.nVersion == CLAIM_TX_VERSION and tx.nLockTime == 800
    assert tx.vin[0].nSequence == claim.signer.clause.csv_blocks
    assert fee == -(-2500 * tx_vsize(tx) // 1000)
    assert tx.vout[0].nValue == claim.amount - fee and bytes(tx.vout[0].scriptPubKey) == DESTINATION
    sig = tx.wit.vtxinwit[0].scriptWitness.stack[0]
    msg = taproot_sighash(
        tx, 0, [(claim.amount, claim.script_pubkey)], leaf_script=claim.signer.clause.leaf_script
    )
    assert schnorr_verify(xonly(claim.signer.clause.user_pubkey), msg, sig)
    assert CTransaction.deserialize(tx.serialize()).GetTxid() == tx.GetTxid()


def test_fee_exceeding_the_output_is_refused_naming_the_highest_rate_that_claims_it() -> None:
    claim = arkoor3_input()
    with pytest.raises(ClaimFeeExceedsOutput) as info:
        build_claim_tx([claim], DESTINATION, fee_rate=100_000_000, tip_height=800, floor=1000)
    error = info.value
    assert error.fields["output"] == 10_000 and error.rate == 100_000_000
    assert f"a fee_rate of at most {error.fitting_rate} sat/kvB claims it" in str(error)
    # The highest rate it names claims it; one more sat/kvB does not.
    build_claim_tx([claim], DESTINATION, error.fitting_rate, 800, floor=1000)
    with pytest.raises(ClaimFeeExceedsOutput):
        build_claim_tx([claim], DESTINATION, error.fitting_rate + 1, 800, floor=1000)


def test_an_output_no_relayed_rate_can_claim_says_so() -> None:
    with pytest.raises(ClaimFeeExceedsOutput) as info:
        build_claim_tx([arkoor3_input()], DESTINATION, fee_rate=200_000, tip_height=800, floor=100_000)
    assert info.value.fitting_rate < 100_000
    assert "no rate the node relays now (its floor is 100000 sat/kvB)" in str(info.value)


def test_claim_vsize_estimate_matches_the_signed_tx() -> None:
    claim = arkoor3_input()
    tx, _ = build_claim_tx([claim, claim], DESTINATION, fee_rate=2000, tip_height=800, floor=100)
    assert claim_tx_vsize([claim.signer.clause] * 2, DESTINATION) == tx_vsize(tx)
