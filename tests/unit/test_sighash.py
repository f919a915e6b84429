from typing import Any

import pytest
from bitcoin.core import CMutableTransaction, CTransaction, lx

from exitd.ark.hashes import sha256
from exitd.ark.key import schnorr_sign, schnorr_verify
from exitd.ark.sighash import (
    SIGHASH_ALL,
    SIGHASH_ANYONECANPAY,
    SIGHASH_DEFAULT,
    SIGHASH_NONE,
    SIGHASH_SINGLE,
    sha_amounts,
    sha_outputs,
    sha_prevouts,
    sha_scriptpubkeys,
    sha_sequences,
    taproot_sighash,
    taproot_signature_msg,
)
from exitd.ark.taproot import tap_leaf_hash
from tests.support.vectors import V2_VECTORS, bip341_wallet_vectors

# bark's round1 VTXO (vtxo-vectors.json): its hArk leaf exit tx, spending the round tree's leaf
# output by the script path with a MuSig2(user, server) signature over the hash_and_sign leaf.
HARK_LEAF_TX = (
    "03000000000101385b67bdcc02cdd1442e53c370f43c71167cb6d49476b09883305de651b07ec500000000000000000002"
    "1027000000000000225120135059248406f5dc83bacde4590147b8ada8c1dae2704d74ed6729296b65277c0000000000000000"
    "0451024e730440045d1595725c9560b4021bc0ad4cf7f828d5ba3fd700a87b9b6f7adf9993b1a5e820e4979b37c40acc35fd56"
    "119caacbb3342b68e993b128a49004c8e985227520c05bc2f82c8c64e470cd4d87aca42989b46879ca32320cd035db124bb78c"
    "4e743d82012088a9148827f796c6f8c55a2bf1c6a38f721d896b1a97a48820b9e7af67ddef019aefd8482c2eb54b91dad9ae20"
    "5f9b5f6fb8ebcb6744c2a54fac41c1b9e7af67ddef019aefd8482c2eb54b91dad9ae205f9b5f6fb8ebcb6744c2a54f666734dc"
    "4c3982bbe1da618bc8e5356395151d2cf859d3e894081c864c1ef40800000000"
)
HARK_LEAF_PREVOUT = (
    10000,
    bytes.fromhex("51200aabaa2768f0d46559b0f333c3c5eb5cfc716c4e59be2b2fe0dd7da39fd962c5"),
)


def key_path_spending() -> tuple[CTransaction, list[tuple[int, bytes]], Any]:
    case = bip341_wallet_vectors()["keyPathSpending"][0]
    tx = CTransaction.deserialize(bytes.fromhex(case["given"]["rawUnsignedTx"]))
    prevouts = [(u["amountSats"], bytes.fromhex(u["scriptPubKey"])) for u in case["given"]["utxosSpent"]]
    return tx, prevouts, case


def test_bip341_key_path_intermediary_hashes() -> None:
    tx, prevouts, case = key_path_spending()
    expected = case["intermediary"]
    assert sha_prevouts(tx).hex() == expected["hashPrevouts"]
    assert sha_amounts(prevouts).hex() == expected["hashAmounts"]
    assert sha_scriptpubkeys(prevouts).hex() == expected["hashScriptPubkeys"]
    assert sha_sequences(tx).hex() == expected["hashSequences"]
    assert sha_outputs(tx).hex() == expected["hashOutputs"]


def test_bip341_key_path_sighashes() -> None:
    tx, prevouts, case = key_path_spending()
    hash_types = set()
    for spend in case["inputSpending"]:
        index, hash_type = spend["given"]["txinIndex"], spend["given"]["hashType"]
        msg = taproot_signature_msg(tx, index, prevouts, hash_type)
        assert msg.hex() == spend["intermediary"]["sigMsg"], index
        sighash = taproot_sighash(tx, index, prevouts, hash_type)
        assert sighash.hex() == spend["intermediary"]["sigHash"], index
        # The witness: a 64-byte signature, plus the hash type byte unless it is SIGHASH_DEFAULT.
        tweaked = bytes.fromhex(spend["intermediary"]["tweakedPrivkey"])
        sig = schnorr_sign(tweaked, sighash, bytes(32))
        witness_sig = sig if hash_type == SIGHASH_DEFAULT else sig + bytes([hash_type])
        assert [witness_sig.hex()] == spend["expected"]["witness"], index
        hash_types.add(hash_type)
    assert hash_types == {0x00, 0x01, 0x02, 0x03, 0x81, 0x82, 0x83}


def test_bip341_key_path_sighash_inline() -> None:
    # BIP341 keyPathSpending input 1: SIGHASH_ANYONECANPAY|SINGLE, which needs only this input's
    # prevout and the output at the same index; the other inputs' prevouts are placeholders.
    tx = CMutableTransaction.deserialize(
        bytes.fromhex(
            "02000000097de20cbff686da83a54981d2b9bab3586f4ca7e48f57f5b55963115f3b334e9c010000000000000000d7b7cab5"
            "7b1393ace2d064f4d4a2cb8af6def61273e127517d44759b6dafdd990000000000fffffffff8e1f583384333689228c5d28e"
            "ac13366be082dc57441760d957275419a418420000000000fffffffff0689180aa63b30cb162a73c6d2a38b7eeda2a83ece7"
            "4310fda0843ad604853b0100000000feffffffaa5202bdf6d8ccd2ee0f0202afbbb7461d9264a25e5bfd3c5a52ee1239e0ba"
            "6c0000000000feffffff956149bdc66faa968eb2be2d2faa29718acbfe3941215893a2a3446d32acd050000000000000000000"
            "e664b9773b88c09c32cb70a2a3e4da0ced63b7ba3b22f848531bbb1d5d5f4c94010000000000000000e9aa6b8e6c9de67619e6"
            "a3924ae25696bb7b694bb677a632a74ef7eadfd4eabf0000000000ffffffffa778eb6a263dc090464cd125c466b5a9966772"
            "0b1c110468831d058aa1b82af10100000000ffffffff0200ca9a3b000000001976a91406afd46bcdfd22ef94ac122aa11f24"
            "1244a37ecc88ac807840cb0000000020ac9a87f5594be208f8532db38cff670c450ed2fea8fcdefcc9a663f78bab962b0065"
            "cd1d"
        )
    )
    prevouts = [(0, b"")] * 9
    prevouts[1] = (
        462000000,
        bytes.fromhex("5120147c9c57132f6e7ecddba9800bb0c4449251c92a1e60371ee77557b6620f3ea3"),
    )
    sighash = taproot_sighash(tx, 1, prevouts, SIGHASH_ANYONECANPAY | SIGHASH_SINGLE)
    assert sighash.hex() == "325a644af47e8a5a2591cda0ab0723978537318f10e6a63d4eed783b96a71a4d"


def test_script_path_sighash_verifies_bark_hark_leaf_signature() -> None:
    tx = CTransaction.deserialize(bytes.fromhex(HARK_LEAF_TX))
    sig, _preimage, leaf_script, control_block = tx.wit.vtxinwit[0].scriptWitness.stack
    sighash = taproot_sighash(tx, 0, [HARK_LEAF_PREVOUT], SIGHASH_DEFAULT, leaf_script=leaf_script)
    internal_key = control_block[1:33]
    assert schnorr_verify(internal_key, sighash, sig)
    # The same signature does not verify as a key-path one, nor over another leaf.
    assert not schnorr_verify(internal_key, taproot_sighash(tx, 0, [HARK_LEAF_PREVOUT]), sig)
    other_leaf = taproot_sighash(tx, 0, [HARK_LEAF_PREVOUT], leaf_script=leaf_script + b"\x51")
    assert not schnorr_verify(internal_key, other_leaf, sig)


def test_every_bark_exit_signature_verifies() -> None:
    """Every stored signature of bark's VTXO vectors: key path (Cosigned, Arkoor) against the spent
    output key, script path (hArk leaves) against the internal key of the control block."""
    checked = {"key": 0, "script": 0}
    for vector in V2_VECTORS:
        derived, anchor_tx = vector.derived, vector.anchor_tx
        anchor_vout = int(derived["chain_anchor"].split(":")[1])
        spent = anchor_tx.vout[anchor_vout]
        prevout = (spent.nValue, bytes(spent.scriptPubKey))
        for exit_tx in derived["exit_txs"]:
            tx = CTransaction.deserialize(bytes.fromhex(exit_tx["signed_tx_hex"]))
            stack = tx.wit.vtxinwit[0].scriptWitness.stack
            if len(stack) == 1:
                sighash = taproot_sighash(tx, 0, [prevout])
                assert schnorr_verify(prevout[1][2:], sighash, stack[0]), exit_tx["txid"]
                checked["key"] += 1
            else:
                sig, _preimage, leaf_script, control_block = stack
                sighash = taproot_sighash(tx, 0, [prevout], leaf_script=leaf_script)
                assert schnorr_verify(control_block[1:33], sighash, sig), exit_tx["txid"]
                checked["script"] += 1
            amount, spk_hex = exit_tx["outputs"][exit_tx["output_idx"]]
            prevout = (amount, bytes.fromhex(spk_hex))
    assert checked == {"key": 17, "script": 3}


def test_annex_and_codeseparator_are_committed() -> None:
    tx = CTransaction.deserialize(bytes.fromhex(HARK_LEAF_TX))
    leaf_script = tx.wit.vtxinwit[0].scriptWitness.stack[2]
    plain = taproot_signature_msg(tx, 0, [HARK_LEAF_PREVOUT], leaf_script=leaf_script)
    annex = bytes.fromhex("50aa")
    with_annex = taproot_signature_msg(tx, 0, [HARK_LEAF_PREVOUT], leaf_script=leaf_script, annex=annex)
    # epoch, hash_type, nVersion, nLockTime and five sha_* hashes come before spend_type; the
    # annex sets its low bit and adds sha256(compact_size(len) || annex) after the input index.
    spend_type_at = 1 + 1 + 4 + 4 + 5 * 32
    assert plain[spend_type_at] == 2
    assert with_annex[spend_type_at] == 3
    after_index = spend_type_at + 1 + 4
    assert with_annex[after_index : after_index + 32] == sha256(bytes([len(annex)]) + annex)
    assert with_annex[after_index + 32 :] == plain[after_index:]
    # The BIP342 extension: leaf hash, key version 0, then codesep_pos.
    assert plain[-37:] == tap_leaf_hash(leaf_script) + b"\x00" + b"\xff\xff\xff\xff"
    at_3 = taproot_signature_msg(tx, 0, [HARK_LEAF_PREVOUT], leaf_script=leaf_script, codesep_pos=3)
    assert at_3[-4:] == (3).to_bytes(4, "little")


def test_hash_type_shapes() -> None:
    tx, prevouts, _ = key_path_spending()
    all_msg = taproot_signature_msg(tx, 0, prevouts, SIGHASH_ALL)
    none_msg = taproot_signature_msg(tx, 0, prevouts, SIGHASH_NONE)
    assert len(all_msg) - len(none_msg) == 32  # no sha_outputs
    acp_msg = taproot_signature_msg(tx, 0, prevouts, SIGHASH_ANYONECANPAY | SIGHASH_ALL)
    assert sha_prevouts(tx) not in acp_msg
    assert taproot_sighash(tx, 0, prevouts) != taproot_sighash(tx, 0, prevouts, SIGHASH_ALL)


def test_rejects_invalid_requests() -> None:
    tx = CTransaction.deserialize(bytes.fromhex(HARK_LEAF_TX))
    prevouts = [HARK_LEAF_PREVOUT]
    for bad_type in (0x04, 0x80, 0x84, 0xFF):
        with pytest.raises(ValueError, match="sighash type"):
            taproot_sighash(tx, 0, prevouts, bad_type)
    with pytest.raises(ValueError, match="input index"):
        taproot_sighash(tx, 1, prevouts)
    with pytest.raises(ValueError, match="one prevout per input"):
        taproot_sighash(tx, 0, [])
    with pytest.raises(ValueError, match="annex"):
        taproot_sighash(tx, 0, prevouts, annex=b"\x51")
    with pytest.raises(ValueError, match="leaf version"):
        taproot_sighash(tx, 0, prevouts, leaf_script=b"\x51", leaf_version=0xC1)
    no_outputs = CMutableTransaction.from_tx(tx)
    no_outputs.vout = []
    with pytest.raises(ValueError, match="SIGHASH_SINGLE"):
        taproot_sighash(no_outputs, 0, prevouts, SIGHASH_SINGLE)


def test_prevout_hash_is_internal_byte_order() -> None:
    tx = CTransaction.deserialize(bytes.fromhex(HARK_LEAF_TX))
    # The spent txid as displayed by explorers is the reverse of the bytes in the transaction.
    assert tx.vin[0].prevout.hash == lx("c57eb051e65d308398b07694d4b67c16713cf470c3532e44d1cd02ccbd675b38")
