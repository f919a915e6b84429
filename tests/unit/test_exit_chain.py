"""Exit-chain rebuild and signature checks against bark's vectors."""

from __future__ import annotations

from dataclasses import replace

import pytest
from bitcoin.core import b2lx

from exitd.ark.encoding import OutPoint, TxOut, VtxoError
from exitd.ark.exit_tx import (
    EXIT_TX_VERSION,
    ExitChain,
    InvalidSignature,
    UnfinishedVtxo,
    VtxoIdMismatch,
    build_exit_chain,
    validate_vtxo,
    verify_signatures,
)
from exitd.ark.policy import HashLockVersion, ServerHtlcRecvPolicy, ServerHtlcSendPolicy
from exitd.ark.script import P2A_SCRIPT
from exitd.ark.transition import HashLockedCosignedTransition
from exitd.ark.vtxo import Vtxo, VtxoId, decode_vtxo
from tests.support.vectors import ALL_VECTORS, V1_VECTORS, V2_VECTORS, VtxoVector, replace_transition, vector


def chain_of(name: str, version: int = 2) -> ExitChain:
    return build_exit_chain(decode_vtxo(vector(name, version).data))


@pytest.mark.parametrize("vec", V2_VECTORS, ids=str)
def test_exit_txs_match_the_reference(vec: VtxoVector) -> None:
    chain = build_exit_chain(decode_vtxo(vec.data))
    expected = vec.derived["exit_txs"]
    assert len(chain.txs) == len(expected) == vec.exit_depth
    for exit_tx, exp in zip(chain.txs, expected, strict=True):
        assert b2lx(exit_tx.txid) == exp["txid"]
        assert exit_tx.tx.serialize().hex() == exp["signed_tx_hex"]
        assert exit_tx.output_idx == exp["output_idx"]
        assert exit_tx.item.transition.kind == exp["transition"]
        assert [[out.nValue, bytes(out.scriptPubKey).hex()] for out in exit_tx.tx.vout] == exp["outputs"]
        assert exit_tx.tx.vout[exit_tx.fee_anchor_index].nValue == exp["fee_anchor_sat"]
        assert exit_tx.item.transition.is_complete == exp["fully_signed"]


@pytest.mark.parametrize("vec", ALL_VECTORS, ids=str)
def test_exit_chain_is_self_consistent(vec: VtxoVector) -> None:
    vtxo = decode_vtxo(vec.data)
    chain = build_exit_chain(vtxo)
    assert chain.chain_anchor_txout == vec.anchor_txout
    assert chain.txs[0].prevout == chain.chain_anchor_txout
    assert chain.txs[0].tx.vin[0].prevout.hash == vtxo.anchor_point.txid
    for parent, child in zip(chain.txs, chain.txs[1:], strict=False):
        assert child.prevout == parent.chain_output
        assert OutPoint(child.tx.vin[0].prevout.hash, child.tx.vin[0].prevout.n) == parent.outpoint
    for exit_tx in chain.txs:
        tx = exit_tx.tx
        assert (tx.nVersion, tx.nLockTime, tx.vin[0].nSequence) == (EXIT_TX_VERSION, 0, 0)
        assert bytes(tx.vout[-1].scriptPubKey) == P2A_SCRIPT
        assert len(tx.vout) == exit_tx.item.nb_outputs + 1
        assert sum(out.nValue for out in tx.vout) == exit_tx.prevout.value
    last = chain.txs[-1]
    assert last.outpoint == vtxo.id
    assert last.chain_output == TxOut(vtxo.amount, vtxo.policy.script_pubkey(
        vtxo.server_pubkey, vtxo.exit_delta, vtxo.expiry_height))  # fmt: skip
    assert verify_signatures(chain) == vec.exit_depth


@pytest.mark.parametrize("vec", V2_VECTORS, ids=str)
def test_ancestor_ids_and_final_output(vec: VtxoVector) -> None:
    vtxo, chain = validate_vtxo(vec.data)
    assert [str(a) for a in chain.ancestor_ids] == vec.derived["ancestor_ids"]
    assert len(chain.ancestor_ids) == vtxo.exit_depth - 1
    assert vtxo.id not in chain.ancestor_ids
    assert chain.txs[-1].chain_output.script_pubkey.hex() == vec.derived["final_output_spk"]
    assert verify_signatures(chain) == vec.derived["self_checks"]["nb_signatures"]


def test_ancestor_relations_bark_asserts() -> None:
    ids = {v.name: decode_vtxo(v.data).id for v in V2_VECTORS}
    ancestors = {v.name: build_exit_chain(decode_vtxo(v.data)).ancestor_ids for v in V2_VECTORS}
    assert ancestors["board_vtxo"] == []
    assert ids["board_vtxo"] in ancestors["arkoor_htlc_out_vtxo"]
    htlc_out_line = [*ancestors["arkoor_htlc_out_vtxo"], ids["arkoor_htlc_out_vtxo"]]
    assert ancestors["arkoor2_vtxo"][: len(htlc_out_line)] == htlc_out_line
    assert ids["round2_vtxo"] in ancestors["arkoor3_vtxo"]


def test_forfeit_vector_names_arkoor3_by_its_36_byte_id() -> None:
    """bark's forfeit test hard-codes arkoor3's id: the one literal id in bark's own tests."""
    arkoor3 = decode_vtxo(vector("arkoor3_vtxo").data)
    assert (
        arkoor3.id.encode().hex()
        == "67754b5920d282ad276e8c80e1088f09238698bb674906fe47a0bfe2e985591200000000"
    )


def test_a_wrong_point_fails_the_id_checksum() -> None:
    vtxo = decode_vtxo(vector("arkoor2_vtxo").data)
    wrong = replace(vtxo, point=replace(vtxo.point, vout=1))
    with pytest.raises(VtxoIdMismatch, match=f"ends at {vtxo.id}, but the VTXO id is {wrong.id}"):
        build_exit_chain(wrong)


def test_a_changed_sibling_changes_the_txids() -> None:
    vtxo = decode_vtxo(vector("round1_vtxo").data)
    genesis = list(vtxo.genesis)
    sibling = genesis[0].other_outputs[0]
    genesis[0] = replace(genesis[0], other_outputs=(sibling._replace(value=sibling.value + 1),
                                                     *genesis[0].other_outputs[1:]))  # fmt: skip
    with pytest.raises(VtxoIdMismatch):
        build_exit_chain(replace(vtxo, genesis=tuple(genesis)))


@pytest.mark.parametrize("tx_index", range(5))
def test_a_bad_signature_is_reported_with_its_tx_index(tx_index: int) -> None:
    vtxo = decode_vtxo(vector("arkoor3_vtxo").data)
    sig = vtxo.genesis[tx_index].transition.signature
    assert sig is not None
    tampered = replace_transition(vtxo, tx_index, signature=sig[:-1] + bytes([sig[-1] ^ 1]))
    chain = build_exit_chain(tampered)  # the signature is witness data: txids do not change
    assert chain.txs[-1].outpoint == vtxo.id
    kind = vtxo.genesis[tx_index].transition.kind
    with pytest.raises(
        InvalidSignature, match=f"^exit tx {tx_index}: {kind} signature does not verify$"
    ) as e:
        verify_signatures(chain)
    assert e.value.tx_index == tx_index
    with pytest.raises(InvalidSignature):
        validate_vtxo(tampered.encode())


def test_a_signature_from_another_tx_does_not_verify() -> None:
    """round1 and round2 share their tree node txs, but each leaf tx signs its own prevout and outputs."""
    round1 = decode_vtxo(vector("round1_vtxo").data)
    round2 = decode_vtxo(vector("round2_vtxo").data)
    assert [i.transition for i in round1.genesis[:2]] == [i.transition for i in round2.genesis[:2]]
    moved = replace_transition(round1, 2, signature=round2.genesis[2].transition.signature)
    with pytest.raises(InvalidSignature, match=r"^exit tx 2: "):
        verify_signatures(build_exit_chain(moved))


def unfinished_round1() -> Vtxo:
    """round1 as the server hands it out before the user forfeits: unlock hash only, no preimage."""
    vtxo = decode_vtxo(vector("round1_vtxo").data)
    return decode_vtxo(replace_transition(vtxo, 2, preimage=None).encode())


def test_unfinished_hark_leaf_has_the_same_txids_but_no_witness() -> None:
    finished = chain_of("round1_vtxo")
    unfinished = unfinished_round1()
    leaf = unfinished.genesis[-1].transition
    assert isinstance(leaf, HashLockedCosignedTransition)
    assert (leaf.preimage, leaf.version) == (None, HashLockVersion.V1)
    chain = build_exit_chain(unfinished)
    assert [t.txid for t in chain.txs] == [t.txid for t in finished.txs]
    assert chain.txs[-1].tx.wit.is_null()
    assert not chain.txs[-1].tx.has_witness()
    assert verify_signatures(chain) == 3  # the stored leaf signature is still checkable


def test_validate_refuses_unfinished_vtxos_unless_allowed() -> None:
    data = unfinished_round1().encode()
    with pytest.raises(UnfinishedVtxo, match=r"^exit tx 2: hash-locked-cosigned-v1 lacks") as e:
        validate_vtxo(data)
    assert e.value.tx_index == 2
    vtxo, chain = validate_vtxo(data, allow_unfinished=True)
    assert vtxo.is_unfinished and chain.txs[-1].outpoint == vtxo.id

    unsigned = replace_transition(decode_vtxo(vector("board_vtxo").data), 0, signature=None)
    with pytest.raises(UnfinishedVtxo, match=r"^exit tx 0: cosigned lacks"):
        validate_vtxo(unsigned.encode())
    assert verify_signatures(build_exit_chain(unsigned)) == 0


def test_v0_hark_leaf_witness_uses_the_v0_unlock_script() -> None:
    v1_chain, v2_chain = chain_of("round1_vtxo", 1), chain_of("round1_vtxo")
    v0_script, v1_script = (c.txs[-1].tx.wit.vtxinwit[0].scriptWitness.stack[2] for c in (v1_chain, v2_chain))
    assert (len(v0_script), len(v1_script)) == (57, 61)
    assert v1_script[:4] == bytes.fromhex("82012088")  # OP_SIZE <32> OP_EQUALVERIFY
    assert v0_script == v1_script[4:]


@pytest.mark.parametrize("vec", V1_VECTORS, ids=str)
def test_v1_vectors_validate_and_their_v2_form_too(vec: VtxoVector) -> None:
    vtxo, chain = validate_vtxo(vec.data)
    again, again_chain = validate_vtxo(vtxo.encode())
    assert again.id == vtxo.id
    assert [t.tx.serialize() for t in again_chain.txs] == [t.tx.serialize() for t in chain.txs]


def test_v0_htlc_vtxos_in_v2_encoding_validate() -> None:
    for name, policy_type in (
        ("arkoor_htlc_out_vtxo", ServerHtlcSendPolicy),
        ("round2_vtxo", ServerHtlcRecvPolicy),
    ):
        vtxo, chain = validate_vtxo(decode_vtxo(vector(name, 1).data).encode())
        assert isinstance(vtxo.policy, policy_type)
        assert vtxo.policy.version is HashLockVersion.V0
        assert vtxo.version == 2 and chain.txs[-1].outpoint == vtxo.id


def test_errors_share_one_root() -> None:
    assert issubclass(VtxoIdMismatch, VtxoError)
    assert issubclass(InvalidSignature, VtxoError)
    assert issubclass(UnfinishedVtxo, VtxoError)
    assert VtxoId is OutPoint
