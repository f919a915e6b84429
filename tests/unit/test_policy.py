"""Policies: tapscript leaves from first principles, taproot data against the reference, encodings."""

from __future__ import annotations

import pytest

from exitd.ark.encoding import ByteReader
from exitd.ark.hashes import ripemd160, sha256
from exitd.ark.key import xonly
from exitd.ark.policy import (
    CheckpointPolicy,
    ExpiryPolicy,
    HarkForfeitPolicy,
    HarkLeafPolicy,
    HashLockVersion,
    Policy,
    PolicyType,
    PubkeyPolicy,
    RivalClause,
    ServerHtlcRecvPolicy,
    ServerHtlcSendPolicy,
    ServerOwnedPolicy,
    UserPolicy,
    decode_policy,
    delay_timelock_sign,
    delayed_sign,
    hash_and_sign,
    hash_and_sign_v0,
    hash_delay_sign,
    hash_delay_sign_v0,
    timelock_sign,
    user_server_key,
)
from exitd.ark.taproot import tap_tweak_hash, taproot_from_leaves
from exitd.ark.transition import ArkoorTransition, HashLockedCosignedTransition
from exitd.ark.vtxo import decode_vtxo
from tests.support.vectors import GENERATOR_INPUTS, V2_VECTORS, VtxoVector, vector

SERVER = bytes.fromhex(GENERATOR_INPUTS["server_pubkey"])
USER = bytes.fromhex(GENERATOR_INPUTS["board"]["user_pubkey"])
EXIT_DELTA = GENERATOR_INPUTS["exit_delta"]
EXPIRY = GENERATOR_INPUTS["expiry_height"]
PARAMS = (SERVER, EXIT_DELTA, EXPIRY)
H = sha256(b"a preimage")

EVERY_POLICY: list[Policy] = [
    PubkeyPolicy(USER),
    ServerHtlcSendPolicy(USER, H, 100_010, HashLockVersion.V0),
    ServerHtlcRecvPolicy(USER, H, 99_010, 40, HashLockVersion.V0),
    CheckpointPolicy(USER),
    ExpiryPolicy(xonly(USER)),
    HarkLeafPolicy(USER, H, HashLockVersion.V0),
    HarkForfeitPolicy(USER, H, HashLockVersion.V0),
    ServerOwnedPolicy(),
    ServerHtlcRecvPolicy(USER, H, 99_010, 40),
    ServerHtlcSendPolicy(USER, H, 100_010),
    HarkLeafPolicy(USER, H),
    HarkForfeitPolicy(USER, H),
]


def test_leaf_scripts_follow_the_spec() -> None:
    k = xonly(USER)
    push_k = b"\x20" + k
    h160 = b"\x14" + ripemd160(H)
    assert delayed_sign(2016, k) == bytes.fromhex("02e007b275") + push_k + b"\xac"
    assert timelock_sign(101_010, k) == bytes.fromhex("03928a01b175") + push_k + b"\xac"
    assert delay_timelock_sign(4032, 100_010, k) == bytes.fromhex("03aa8601b17502c00fb275") + push_k + b"\xac"
    hash_lock_v0 = b"\xa9" + h160 + b"\x88"
    hash_lock_v1 = bytes.fromhex("82012088") + hash_lock_v0
    assert hash_and_sign_v0(H, k) == hash_lock_v0 + push_k + b"\xac"
    assert hash_and_sign(H, k) == hash_lock_v1 + push_k + b"\xac"
    assert (len(hash_and_sign(H, k)), len(hash_and_sign_v0(H, k))) == (61, 57)
    assert hash_delay_sign(H, 2056, k) == bytes.fromhex("020808b275") + hash_lock_v1 + push_k + b"\xac"
    assert hash_delay_sign_v0(H, 2056, k) == bytes.fromhex("020808b275") + hash_lock_v0 + push_k + b"\xac"
    assert delayed_sign(16, k)[:1] == b"\x60"  # small numbers are OP_N


@pytest.mark.parametrize("vec", V2_VECTORS, ids=str)
def test_final_output_taproot_matches_the_reference(vec: VtxoVector) -> None:
    vtxo = decode_vtxo(vec.data)
    expected = vec.derived["final_output_taproot"]
    info = vtxo.policy.taproot(vtxo.server_pubkey, vtxo.exit_delta, vtxo.expiry_height)
    assert info.internal_key.hex() == expected["internal_key_xonly"]
    assert info.merkle_root is not None and info.merkle_root.hex() == expected["merkle_root"]
    assert info.tweak.hex() == expected["tap_tweak"]
    assert info.output_key.hex() == expected["output_key_xonly"]
    assert bool(info.output_parity) == expected["output_key_parity_odd"]
    assert info.script_pubkey.hex() == vec.derived["final_output_spk"]
    leaves = {leaf.script.hex(): leaf.leaf_hash.hex() for leaf, _ in info.leaves}
    assert leaves == {leaf["script_hex"]: leaf["leaf_hash"] for leaf in expected["leaves"]}
    for leaf in expected["leaves"]:
        assert info.control_block(bytes.fromhex(leaf["script_hex"])).hex() == leaf["control_block_hex"]


@pytest.mark.parametrize("vec", V2_VECTORS, ids=str)
def test_user_claim_clause_is_the_users_leaf(vec: VtxoVector) -> None:
    vtxo = decode_vtxo(vec.data)
    assert isinstance(vtxo.policy, UserPolicy)
    clause = vtxo.claim_clause
    user_x = vtxo.policy.user_pubkey[1:]
    [user_leaf] = [leaf for leaf in vec.derived["final_output_taproot"]["leaves"]
                   if user_x.hex() in leaf["script_hex"]]  # fmt: skip
    assert clause.leaf_script.hex() == user_leaf["script_hex"]
    assert clause.control_block.hex() == user_leaf["control_block_hex"]
    assert clause.script_pubkey.hex() == vec.derived["final_output_spk"]
    assert clause.user_pubkey == vtxo.policy.user_pubkey
    policy = vec.derived["policy"]
    match policy["type"]:
        case "pubkey":
            assert (clause.csv_blocks, clause.cltv_height, clause.payment_hash) == (EXIT_DELTA, None, None)
            assert clause.rival is None
        case "server-htlc-send-v1":
            assert (clause.csv_blocks, clause.cltv_height) == (2 * EXIT_DELTA, policy["htlc_expiry"])
            assert not clause.needs_preimage and clause.rival is None
        case "server-htlc-receive-v1":
            assert (clause.csv_blocks, clause.cltv_height) == (EXIT_DELTA + policy["htlc_expiry_delta"], None)
            assert clause.needs_preimage and clause.payment_hash == bytes.fromhex(policy["payment_hash"])
            assert b"\x14" + ripemd160(clause.payment_hash) in clause.leaf_script
            # The server's refund leaf of the tree is the rival the claim must beat.
            assert clause.rival == RivalClause(EXIT_DELTA, policy["htlc_expiry"])
            server_leaf = delay_timelock_sign(EXIT_DELTA, policy["htlc_expiry"], xonly(SERVER))
            leaves = [leaf["script_hex"] for leaf in vec.derived["final_output_taproot"]["leaves"]]
            assert server_leaf.hex() in leaves


HTLC_RECEIVE_VECTORS = [v for v in V2_VECTORS if v.derived["policy"]["type"] == "server-htlc-receive-v1"]


@pytest.mark.parametrize("vec", HTLC_RECEIVE_VECTORS, ids=str)
def test_the_servers_refund_clause_is_the_references_server_leaf(vec: VtxoVector) -> None:
    vtxo = decode_vtxo(vec.data)
    policy = vtxo.policy
    assert isinstance(policy, ServerHtlcRecvPolicy)
    refund = policy.refund_clause(vtxo.server_pubkey, vtxo.exit_delta, vtxo.expiry_height)
    htlc_expiry = vec.derived["policy"]["htlc_expiry"]
    # push_int(htlc_expiry) CLTV DROP push_int(exit_delta) CSV DROP <x(server)> CHECKSIG, spelled out.
    expected_script = (
        bytes([3]) + htlc_expiry.to_bytes(3, "little") + bytes.fromhex("b175")
        + bytes([2]) + EXIT_DELTA.to_bytes(2, "little") + bytes.fromhex("b275")
        + b"\x20" + xonly(SERVER) + b"\xac"
    )  # fmt: skip
    assert refund.leaf_script == expected_script
    [server_leaf] = [leaf for leaf in vec.derived["final_output_taproot"]["leaves"]
                     if xonly(SERVER).hex() in leaf["script_hex"]]  # fmt: skip
    assert refund.leaf_script.hex() == server_leaf["script_hex"]
    assert refund.control_block.hex() == server_leaf["control_block_hex"]
    assert refund.script_pubkey.hex() == vec.derived["final_output_spk"]
    # The refund opens exactly where the user's claim's rival does, and only the server's key signs it.
    assert (refund.csv_blocks, refund.cltv_height) == (EXIT_DELTA, htlc_expiry)
    assert vtxo.claim_clause.rival == RivalClause(refund.csv_blocks, htlc_expiry)
    assert refund.user_pubkey == SERVER and not refund.needs_preimage and refund.rival is None


def test_a_rival_opens_at_its_cltv_and_csv_both() -> None:
    rival = RivalClause(csv_blocks=12, cltv_height=1000)
    assert rival.opens_at(900) == 1001  # a CLTV of 1000 lets a tx into block 1001
    assert rival.opens_at(995) == 1007  # a CSV of 12 after block 995


def test_two_leaf_trees_do_not_depend_on_leaf_order() -> None:
    """rust-bitcoin sorts the two depth-1 leaf hashes, so the server leaf may come first or last."""
    send = ServerHtlcSendPolicy(USER, H, 100_010)
    info = send.taproot(*PARAMS)
    server_leaf = hash_delay_sign(H, EXIT_DELTA, xonly(SERVER))
    user_leaf = delay_timelock_sign(2 * EXIT_DELTA, 100_010, xonly(USER))
    assert [leaf.script for leaf, _ in info.leaves] == [server_leaf, user_leaf]
    swapped = taproot_from_leaves(info.internal_key, [user_leaf, server_leaf])
    assert (swapped.output_key, swapped.control_block(user_leaf)) == (
        info.output_key,
        info.control_block(user_leaf),
    )
    assert info.internal_key == user_server_key(USER, SERVER) == user_server_key(SERVER, USER)


def test_checkpoint_policy_tweak_is_what_arkoor_transitions_store() -> None:
    """An arkoor tx spends a checkpoint output; its transition stores that output's TapTweak."""
    vtxo = decode_vtxo(vector("arkoor_htlc_out_vtxo").data)
    board = decode_vtxo(vector("board_vtxo").data)
    checkpoint_spend, arkoor_spend = vtxo.genesis[1].transition, vtxo.genesis[2].transition
    assert isinstance(checkpoint_spend, ArkoorTransition) and isinstance(arkoor_spend, ArkoorTransition)
    assert checkpoint_spend.tap_tweak == board.policy.taproot(*PARAMS).tweak
    assert arkoor_spend.tap_tweak == CheckpointPolicy(USER).taproot(*PARAMS).tweak
    checkpoint_spk = CheckpointPolicy(USER).script_pubkey(*PARAMS)
    assert arkoor_spend.input_script_pubkey(*PARAMS) == checkpoint_spk


def test_hark_leaf_unlock_leaf_is_what_the_leaf_tx_reveals() -> None:
    vtxo = decode_vtxo(vector("round2_vtxo").data)
    leaf = vtxo.genesis[-1].transition
    assert isinstance(leaf, HashLockedCosignedTransition)
    policy = leaf.leaf_policy()
    script = policy.unlock_leaf(SERVER)
    witness = leaf.witness(*PARAMS)
    assert witness[2] == script and len(script) == 61
    assert witness[3] == policy.taproot(*PARAMS).control_block(script)
    assert policy.unlock_hash.hex() == GENERATOR_INPUTS["round"]["round2"]["unlock_hash"]


def test_server_only_taproots() -> None:
    owned = ServerOwnedPolicy().taproot(*PARAMS)
    assert owned.merkle_root is None and owned.leaves == ()
    assert owned.tweak == tap_tweak_hash(xonly(SERVER), None)
    internal = xonly(USER)
    expiry = ExpiryPolicy(internal).taproot(*PARAMS)
    assert expiry.internal_key == internal
    assert [leaf.script for leaf, _ in expiry.leaves] == [timelock_sign(EXPIRY, xonly(SERVER))]
    forfeit = HarkForfeitPolicy(USER, H).taproot(*PARAMS)
    assert [leaf.script for leaf, _ in forfeit.leaves] == [
        hash_and_sign(H, xonly(SERVER)),
        delayed_sign(EXIT_DELTA, xonly(USER)),
    ]
    hark_v0 = HarkLeafPolicy(USER, H, HashLockVersion.V0)
    assert hark_v0.unlock_leaf(SERVER) == hash_and_sign_v0(H, user_server_key(USER, SERVER))


def test_v0_and_v1_policies_differ_only_in_their_hash_locks() -> None:
    v0 = ServerHtlcRecvPolicy(USER, H, 99_010, 40, HashLockVersion.V0)
    v1 = ServerHtlcRecvPolicy(USER, H, 99_010, 40)
    assert v0.encode()[1:] == v1.encode()[1:]
    assert v0.taproot(*PARAMS).output_key != v1.taproot(*PARAMS).output_key
    clause = v0.user_claim_clause(*PARAMS)
    assert clause.leaf_script == hash_delay_sign_v0(H, EXIT_DELTA + 40, xonly(USER))


@pytest.mark.parametrize("policy", EVERY_POLICY, ids=lambda p: p.kind)
def test_every_policy_roundtrips(policy: Policy) -> None:
    data = policy.encode()
    assert data[0] == policy.type
    r = ByteReader(data)
    assert decode_policy(r, allow_server_policy=True) == policy
    assert r.remaining == 0
    assert policy.taproot(*PARAMS).script_pubkey == policy.script_pubkey(*PARAMS)


def test_type_bytes_and_kinds() -> None:
    assert [p.type for p in EVERY_POLICY] == list(PolicyType)
    assert [p.kind for p in EVERY_POLICY] == [
        "pubkey", "server-htlc-send", "server-htlc-receive", "checkpoint", "expiry", "hark-leaf",
        "hark-forfeit", "server-owned", "server-htlc-receive-v1", "server-htlc-send-v1", "hark-leaf-v1",
        "hark-forfeit-v1",
    ]  # fmt: skip
    user_types = {p.type for p in EVERY_POLICY if p.is_user_policy}
    assert user_types == {0x00, 0x01, 0x02, 0x08, 0x09}
    assert all(isinstance(p, UserPolicy) == p.is_user_policy for p in EVERY_POLICY)
