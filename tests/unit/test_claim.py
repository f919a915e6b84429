"""Claim inputs: timelocks, witnesses and BIP340 script-path signatures for the user's leaf (and the
server's refund leaf of an HTLC receive, signed the same way); telling a claim's witness from others."""

from __future__ import annotations

import pytest
from bitcoin.core import CMutableTransaction, CMutableTxIn, CMutableTxOut, COutPoint, CScript, CTransaction

from exitd.ark.claim import ClaimError, ClaimSigner, claim_input_weight, sign_claim_inputs, spends_through
from exitd.ark.encoding import TxOut
from exitd.ark.exit_tx import validate_vtxo
from exitd.ark.hashes import sha256
from exitd.ark.key import pubkey_from_seckey, schnorr_verify, tweak_xonly, xonly
from exitd.ark.policy import ClaimClause, ServerHtlcRecvPolicy, UserPolicy
from exitd.ark.script import p2tr_script
from exitd.ark.sighash import taproot_sighash
from exitd.ark.taproot import tap_branch_hash, tap_leaf_hash, tap_tweak_hash
from exitd.ark.vtxo import Vtxo
from tests.support.vectors import GENERATOR_INPUTS, vector

ARKOOR3_KEY = bytes.fromhex(GENERATOR_INPUTS["arkoor3"]["user_key_secret"])
HTLC_SEND_KEY = bytes.fromhex(GENERATOR_INPUTS["arkoor1_htlc_send"]["user_key_secret"])
ROUND2_KEY = bytes.fromhex(GENERATOR_INPUTS["round"]["round2"]["user_key_secret"])
SERVER_KEY = bytes.fromhex(GENERATOR_INPUTS["server_key_secret"])
DESTINATION = p2tr_script(xonly(pubkey_from_seckey(b"\x01" * 32)))


def exited(name: str) -> tuple[Vtxo, ClaimClause, TxOut]:
    vtxo, chain = validate_vtxo(vector(name).data)
    assert isinstance(vtxo.policy, UserPolicy)
    clause = vtxo.claim_clause
    return vtxo, clause, chain.txs[-1].chain_output


def claim_tx(vtxo: Vtxo, n_inputs: int = 1, locktime: int = 0) -> CMutableTransaction:
    vin = [CMutableTxIn(COutPoint(vtxo.point.txid, vtxo.point.vout + i)) for i in range(n_inputs)]
    vout = [CMutableTxOut(vtxo.amount - 500, CScript(DESTINATION))]
    return CMutableTransaction(vin, vout, nLockTime=locktime, nVersion=2)


def check_script_path(prevout: TxOut, leaf_script: bytes, control_block: bytes) -> None:
    """What BIP341 script-path validation does with the control block (one or two leaf trees)."""
    internal = control_block[1:33]
    node = tap_leaf_hash(leaf_script)
    for i in range(33, len(control_block), 32):
        node = tap_branch_hash(node, control_block[i : i + 32])
    output_key, parity = tweak_xonly(internal, tap_tweak_hash(internal, node))
    assert (output_key, parity) == (prevout.script_pubkey[2:], control_block[0] & 1)


def test_sign_a_claim_for_arkoor3() -> None:
    vtxo, clause, prevout = exited("arkoor3_vtxo")
    tx = claim_tx(vtxo, locktime=101_000)
    sign_claim_inputs(tx, [prevout], {0: ClaimSigner(clause, ARKOOR3_KEY)})

    assert tx.vin[0].nSequence == vtxo.exit_delta == 2016
    sig, script, control_block = tx.wit.vtxinwit[0].scriptWitness.stack
    assert (script, control_block) == (clause.leaf_script, clause.control_block)
    msg = taproot_sighash(tx, 0, [prevout], leaf_script=script)
    assert schnorr_verify(xonly(clause.user_pubkey), msg, sig)
    check_script_path(prevout, script, control_block)

    signed = CTransaction.deserialize(tx.serialize())
    assert list(signed.wit.vtxinwit[0].scriptWitness.stack) == [sig, script, control_block]
    assert signed.GetTxid() == tx.GetTxid()


def test_htlc_send_claim_needs_the_htlc_expiry_as_locktime() -> None:
    vtxo, clause, prevout = exited("arkoor_htlc_out_vtxo")
    signer = ClaimSigner(clause, HTLC_SEND_KEY)
    htlc_expiry = GENERATOR_INPUTS["arkoor1_htlc_send"]["htlc_expiry"]
    assert clause.cltv_height == htlc_expiry
    for locktime in (0, htlc_expiry - 1, 500_000_000):
        with pytest.raises(ClaimError, match="nLockTime"):
            sign_claim_inputs(claim_tx(vtxo, locktime=locktime), [prevout], {0: signer})
    tx = claim_tx(vtxo, locktime=htlc_expiry)
    sign_claim_inputs(tx, [prevout], {0: signer})
    assert tx.vin[0].nSequence == 2 * vtxo.exit_delta
    sig, script, control_block = tx.wit.vtxinwit[0].scriptWitness.stack
    assert schnorr_verify(
        xonly(clause.user_pubkey), taproot_sighash(tx, 0, [prevout], leaf_script=script), sig
    )
    check_script_path(prevout, script, control_block)


def test_htlc_receive_claim_reveals_the_preimage() -> None:
    vtxo, vector_clause, _ = exited("round2_vtxo")
    # The vector's payment hash is sha256(b"round2"), whose preimage is not the 32 bytes the v1 script
    # demands; a policy with a real preimage shows the witness.
    with pytest.raises(ClaimError, match="32-byte preimage"):
        sign_claim_inputs(claim_tx(vtxo), [(vtxo.amount, vector_clause.script_pubkey)],
                          {0: ClaimSigner(vector_clause, ROUND2_KEY, b"round2")})  # fmt: skip
    preimage = bytes(range(32))
    assert isinstance(vtxo.policy, ServerHtlcRecvPolicy)
    policy = ServerHtlcRecvPolicy(vtxo.policy.user_pubkey, sha256(preimage), 99_010, 40)
    clause = policy.user_claim_clause(vtxo.server_pubkey, vtxo.exit_delta, vtxo.expiry_height)
    prevout = TxOut(vtxo.amount, clause.script_pubkey)
    tx = claim_tx(vtxo)
    with pytest.raises(ClaimError, match="preimage of the payment hash is required"):
        sign_claim_inputs(tx, [prevout], {0: ClaimSigner(clause, ROUND2_KEY)})
    sign_claim_inputs(tx, [prevout], {0: ClaimSigner(clause, ROUND2_KEY, preimage)})
    assert tx.vin[0].nSequence == vtxo.exit_delta + 40
    sig, revealed, script, control_block = tx.wit.vtxinwit[0].scriptWitness.stack
    assert revealed == preimage
    assert schnorr_verify(
        xonly(clause.user_pubkey), taproot_sighash(tx, 0, [prevout], leaf_script=script), sig
    )
    check_script_path(prevout, script, control_block)


def test_the_servers_refund_of_an_htlc_receive_is_signed_through_its_refund_leaf() -> None:
    vtxo, claim, prevout = exited("round2_vtxo")
    assert isinstance(vtxo.policy, ServerHtlcRecvPolicy)
    refund = vtxo.policy.refund_clause(vtxo.server_pubkey, vtxo.exit_delta, vtxo.expiry_height)
    signer = ClaimSigner(refund, SERVER_KEY)
    with pytest.raises(ClaimError, match="nLockTime"):  # the leaf's CLTV: not before htlc_expiry
        sign_claim_inputs(claim_tx(vtxo, locktime=vtxo.policy.htlc_expiry - 1), [prevout], {0: signer})
    tx = claim_tx(vtxo, locktime=vtxo.policy.htlc_expiry)
    sign_claim_inputs(tx, [prevout], {0: signer})
    assert tx.vin[0].nSequence == vtxo.exit_delta  # the leaf's CSV
    witness = tx.wit.vtxinwit[0].scriptWitness.stack
    sig, script, control_block = witness
    assert schnorr_verify(
        xonly(vtxo.server_pubkey), taproot_sighash(tx, 0, [prevout], leaf_script=script), sig
    )
    check_script_path(prevout, script, control_block)
    # A spend through the refund leaf is no claim of the user's; one through the claim leaf is, with or
    # without an annex; a key-path spend (one signature) is not.
    assert not spends_through(witness, claim.leaf_script)
    assert spends_through(witness, refund.leaf_script)
    claim_witness = [sig, bytes(32), claim.leaf_script, claim.control_block]
    assert spends_through(claim_witness, claim.leaf_script)
    assert spends_through([*claim_witness, b"\x50annex"], claim.leaf_script)
    assert not spends_through([sig], claim.leaf_script)


def test_other_inputs_are_left_to_their_own_signer() -> None:
    vtxo, clause, prevout = exited("arkoor3_vtxo")
    tx = claim_tx(vtxo, n_inputs=2)
    wallet_prevout = (5000, DESTINATION)
    sign_claim_inputs(tx, [wallet_prevout, prevout], {1: ClaimSigner(clause, ARKOOR3_KEY)})
    assert tx.vin[0].nSequence == 0xFFFFFFFF
    assert tx.wit.vtxinwit[0].scriptWitness.stack == []
    sig = tx.wit.vtxinwit[1].scriptWitness.stack[0]
    msg = taproot_sighash(tx, 1, [wallet_prevout, prevout], leaf_script=clause.leaf_script)
    assert schnorr_verify(xonly(clause.user_pubkey), msg, sig)


def test_claim_refuses_what_cannot_be_a_valid_spend() -> None:
    vtxo, clause, prevout = exited("arkoor3_vtxo")
    signer = ClaimSigner(clause, ARKOOR3_KEY)
    v1_tx = claim_tx(vtxo)
    v1_tx.nVersion = 1
    cases: list[tuple[CMutableTransaction, list[tuple[int, bytes]], dict[int, ClaimSigner], str]] = [
        (v1_tx, [prevout], {0: signer}, "relative timelocks"),
        (claim_tx(vtxo), [], {0: signer}, "0 prevouts given for 1 inputs"),
        (claim_tx(vtxo), [prevout], {1: signer}, "no input 1"),
        (claim_tx(vtxo), [(prevout.value, DESTINATION)], {0: signer}, "prevout script"),
        (claim_tx(vtxo), [prevout], {0: ClaimSigner(clause, HTLC_SEND_KEY)}, "secret key does not belong"),
        (claim_tx(vtxo), [prevout], {0: ClaimSigner(clause, ARKOOR3_KEY, bytes(32))}, "takes no preimage"),
    ]
    for tx, prevouts, signers, message in cases:
        with pytest.raises(ClaimError, match=message):
            sign_claim_inputs(tx, prevouts, signers)


@pytest.mark.parametrize("name", ["arkoor3_vtxo", "arkoor_htlc_out_vtxo"])
def test_claim_input_weight_matches_the_signed_tx(name: str) -> None:
    vtxo, clause, prevout = exited(name)
    key = ARKOOR3_KEY if name == "arkoor3_vtxo" else HTLC_SEND_KEY
    tx = claim_tx(vtxo, locktime=clause.cltv_height or 0)
    sign_claim_inputs(tx, [prevout], {0: ClaimSigner(clause, key)})
    stripped = len(tx.serialize({"include_witness": False}))
    weight = 3 * stripped + len(tx.serialize())
    tx_overhead = 4 + 1 + 1 + 4  # version, input count, output count, locktime
    outputs = 8 + 1 + len(DESTINATION)
    marker_and_flag = 2
    assert weight == 4 * (tx_overhead + outputs) + marker_and_flag + claim_input_weight(clause)


def test_claim_input_weight_counts_the_preimage() -> None:
    _, clause, _ = exited("round2_vtxo")
    assert clause.needs_preimage
    without = ClaimClause(**{**clause.__dict__, "payment_hash": None})
    assert claim_input_weight(clause) - claim_input_weight(without) == 1 + 32
