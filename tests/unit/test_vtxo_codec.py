"""The VTXO codec against bark's vectors, and every way the decoder must refuse bytes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from exitd.ark.encoding import (
    MAX_BLOCK_DELTA,
    MAX_BLOCK_HEIGHT,
    MAX_MONEY,
    ByteReader,
    CountTooLarge,
    DisallowedPolicy,
    InvalidPoint,
    InvalidStructure,
    NonMinimalCompactSize,
    OutOfRange,
    OutPoint,
    TrailingBytes,
    TxOut,
    UnexpectedEnd,
    UnknownType,
    UnsupportedVersion,
    VtxoDecodeError,
    ser_compact_size,
    ser_u16,
    ser_u32,
    ser_u64,
)
from exitd.ark.key import SECP256K1_ORDER
from exitd.ark.policy import (
    CheckpointPolicy,
    ExpiryPolicy,
    HarkForfeitPolicy,
    HarkLeafPolicy,
    HashLockVersion,
    Policy,
    ServerHtlcRecvPolicy,
    ServerHtlcSendPolicy,
    ServerOwnedPolicy,
)
from exitd.ark.transition import (
    MAX_TRANSITION_KEYS,
    ArkoorTransition,
    HashLockedCosignedTransition,
)
from exitd.ark.vtxo import MAX_GENESIS_ITEMS, GenesisItem, Vtxo, VtxoId, decode_vtxo
from tests.support.vectors import (
    GENERATOR_INPUTS,
    V1_VECTORS,
    V2_VECTORS,
    VtxoVector,
    replace_item,
    replace_transition,
    vector,
)

# Offsets in the fixed-size header: version u16, amount u64, expiry u32, server pubkey, exit_delta u16,
# anchor outpoint; the genesis count follows.
AMOUNT_OFFSET = 2
EXPIRY_OFFSET = 10
SERVER_PUBKEY_OFFSET = 14
EXIT_DELTA_OFFSET = 47
GENESIS_OFFSET = 85


def board() -> Vtxo:
    return decode_vtxo(vector("board_vtxo").data)


@pytest.mark.parametrize("vec", V2_VECTORS, ids=str)
def test_v2_vector_decodes_to_the_derived_values(vec: VtxoVector) -> None:
    vtxo = decode_vtxo(vec.data)
    derived = vec.derived
    assert vtxo.version == 2
    assert vtxo.amount == derived["amount"]
    assert vtxo.expiry_height == derived["expiry_height"]
    assert vtxo.server_pubkey.hex() == derived["server_pubkey"]
    assert vtxo.exit_delta == derived["exit_delta"]
    assert str(vtxo.anchor_point) == derived["chain_anchor"]
    assert str(vtxo.id) == derived["vtxo_id"]
    assert vtxo.id.encode().hex() == derived["vtxo_id_bytes_hex"]
    assert vtxo.exit_depth == vec.exit_depth == derived["exit_depth"]
    assert vtxo.chain_anchor_amount == derived["chain_anchor_amount"]
    assert [item.transition.kind for item in vtxo.genesis] == derived["transitions"]
    assert not vtxo.is_unfinished

    expected_policy = derived["policy"]
    assert vtxo.policy.kind == expected_policy["type"]
    assert vtxo.policy.user_pubkey.hex() == expected_policy["user"]  # type: ignore[attr-defined]
    for field in ("payment_hash", "htlc_expiry", "htlc_expiry_delta"):
        if field in expected_policy:
            value = getattr(vtxo.policy, field)
            assert (value.hex() if isinstance(value, bytes) else value) == expected_policy[field]


@pytest.mark.parametrize("vec", V2_VECTORS, ids=str)
def test_v2_vector_reencodes_byte_identically(vec: VtxoVector) -> None:
    assert decode_vtxo(vec.data).encode() == vec.data


@pytest.mark.parametrize("vec", V1_VECTORS, ids=str)
def test_v1_vector_reencodes_as_an_equal_v2_vtxo(vec: VtxoVector) -> None:
    vtxo = decode_vtxo(vec.data)
    assert vtxo.version == 1
    assert vtxo.exit_depth == vec.exit_depth
    assert all(item.fee_amount == 0 for item in vtxo.genesis)

    v2_data = vtxo.encode()
    assert v2_data[:2] == ser_u16(2)
    assert len(v2_data) == len(vec.data) + 8 * vtxo.exit_depth
    reread = decode_vtxo(v2_data)
    assert reread.version == 2
    assert reread == vtxo
    assert reread.encode() == v2_data


def test_v1_vectors_carry_v0_scripts() -> None:
    assert decode_vtxo(vector("arkoor_htlc_out_vtxo", 1).data).policy.kind == "server-htlc-send"
    assert decode_vtxo(vector("round2_vtxo", 1).data).policy.kind == "server-htlc-receive"
    leaf = decode_vtxo(vector("round1_vtxo", 1).data).genesis[-1].transition
    assert leaf.kind == "hash-locked-cosigned"
    assert decode_vtxo(vector("round1_vtxo").data).genesis[-1].transition.kind == "hash-locked-cosigned-v1"


def test_v1_and_v2_board_differ_only_where_the_fee_does() -> None:
    v1, v2 = decode_vtxo(vector("board_vtxo", 1).data), board()
    assert v2.genesis[0].fee_amount == GENERATOR_INPUTS["board"]["board_fee_sat_v2"]
    assert v1.chain_anchor_amount == v1.amount == v2.amount
    assert v1.id != v2.id


def test_vtxo_id_string_form_roundtrips() -> None:
    vtxo_id = board().id
    text = "56315e0b35be9ae01700116df4a86ad359fee4e4119ba7ee908601d921a4e924:0"
    assert str(vtxo_id) == text
    assert VtxoId.from_str(text) == vtxo_id
    assert str(VtxoId.from_str(text[:-1] + "4294967295")).endswith(":4294967295")


@pytest.mark.parametrize(
    "text",
    ["", "56315e0b", "56315e0b35be9ae01700116df4a86ad359fee4e4119ba7ee908601d921a4e924",
     "56315e0b35be9ae01700116df4a86ad359fee4e4119ba7ee908601d921a4e924:-1",
     "56315e0b35be9ae01700116df4a86ad359fee4e4119ba7ee908601d921a4e924:4294967296",
     "zz315e0b35be9ae01700116df4a86ad359fee4e4119ba7ee908601d921a4e924:0",
     "56315e0b 5be9ae01700116df4a86ad359fee4e4119ba7ee908601d921a4e924:0",
     "56315e0b35be9ae01700116df4a86ad359fee4e4119ba7ee908601d921a4e924:٣"],
)  # fmt: skip
def test_vtxo_id_parse_rejects_malformed_text(text: str) -> None:
    with pytest.raises(ValueError):
        VtxoId.from_str(text)


# -- the failures bark's own tests assert ------------------------------------------------------------


def test_terminal_output_idx_pointing_at_the_fee_anchor_is_rejected() -> None:
    vtxo = board()
    data = replace_item(vtxo, 0, output_idx=vtxo.genesis[0].nb_outputs).encode()
    # header, count, cosigned type + key count + 2 keys + sig, nb_outputs: output_idx is next.
    output_idx_offset = GENESIS_OFFSET + 1 + (1 + 1 + 2 * 33 + 64) + 1
    with pytest.raises(OutOfRange, match=f"^at byte {output_idx_offset}: output_idx 1 is not below"):
        decode_vtxo(data)


def test_arkoor_tap_tweak_not_below_the_curve_order_is_rejected() -> None:
    vtxo = decode_vtxo(vector("arkoor2_vtxo").data)
    assert isinstance(vtxo.genesis[1].transition, ArkoorTransition)
    data = replace_transition(vtxo, 1, tap_tweak=SECP256K1_ORDER.to_bytes(32, "big")).encode()
    with pytest.raises(OutOfRange, match="arkoor tap_tweak is not below the secp256k1 curve order"):
        decode_vtxo(data)


def test_cosigned_transition_without_keys_is_rejected() -> None:
    data = replace_transition(board(), 0, pubkeys=()).encode()
    with pytest.raises(InvalidStructure, match=f"^at byte {GENESIS_OFFSET + 2}: cosigned .* empty key list"):
        decode_vtxo(data)


def test_bare_encoding_is_not_a_full_vtxo() -> None:
    data = replace(board(), genesis=()).encode()
    with pytest.raises(InvalidStructure, match="bare VTXO"):
        decode_vtxo(data)


# -- every other refusal ------------------------------------------------------------------------------


def test_vtxo_at_its_anchor_point_must_have_no_genesis() -> None:
    vtxo = board()
    with pytest.raises(InvalidStructure, match="empty genesis"):
        decode_vtxo(replace(vtxo, point=vtxo.anchor_point).encode())
    at_anchor = replace(vtxo, genesis=(), point=vtxo.anchor_point)
    assert decode_vtxo(at_anchor.encode()) == at_anchor


@pytest.mark.parametrize("version", [0, 3, 0xFFFF])
def test_unknown_versions_are_rejected(version: int) -> None:
    data = ser_u16(version) + vector("board_vtxo").data[2:]
    with pytest.raises(UnsupportedVersion, match=f"^at byte 0: unsupported VTXO encoding version {version}$"):
        decode_vtxo(data)


def test_trailing_bytes_are_rejected() -> None:
    data = vector("board_vtxo").data
    with pytest.raises(TrailingBytes, match=f"^at byte {len(data)}: 1 trailing bytes"):
        decode_vtxo(data + b"\x00")


def test_truncation_is_an_unexpected_end() -> None:
    data = vector("board_vtxo").data
    with pytest.raises(UnexpectedEnd, match=f"^at byte {len(data) - 36}: need 32 bytes for point txid"):
        decode_vtxo(data[:-5])


def test_non_minimal_compact_size_is_rejected() -> None:
    data = vector("board_vtxo").data
    padded = data[:GENESIS_OFFSET] + b"\xfd\x01\x00" + data[GENESIS_OFFSET + 1 :]
    with pytest.raises(NonMinimalCompactSize, match=f"^at byte {GENESIS_OFFSET}: non-minimal"):
        decode_vtxo(padded)


@pytest.mark.parametrize(
    ("count", "cap_offset"),
    [(MAX_GENESIS_ITEMS + 1, GENESIS_OFFSET), (2**64 - 1, GENESIS_OFFSET)],
)
def test_huge_genesis_counts_are_refused_before_reading_items(count: int, cap_offset: int) -> None:
    data = vector("board_vtxo").data
    data = data[:GENESIS_OFFSET] + ser_compact_size(count) + data[GENESIS_OFFSET + 1 :]
    with pytest.raises(CountTooLarge, match=f"^at byte {cap_offset}: genesis item count {count} exceeds"):
        decode_vtxo(data)


def test_huge_key_counts_are_refused() -> None:
    data = vector("board_vtxo").data
    key_count_offset = GENESIS_OFFSET + 2
    data = data[:key_count_offset] + ser_compact_size(MAX_TRANSITION_KEYS + 1) + data[key_count_offset + 1 :]
    with pytest.raises(CountTooLarge, match="cosigned pubkeys count"):
        decode_vtxo(data)


def test_invalid_server_pubkey_is_rejected() -> None:
    data = bytearray(vector("board_vtxo").data)
    data[SERVER_PUBKEY_OFFSET : SERVER_PUBKEY_OFFSET + 33] = b"\x02" + b"\xff" * 32
    with pytest.raises(InvalidPoint, match=f"^at byte {SERVER_PUBKEY_OFFSET}: server pubkey is not"):
        decode_vtxo(bytes(data))


def test_out_of_range_heights_deltas_and_amounts_are_rejected() -> None:
    data = vector("board_vtxo").data
    cases = [
        (EXPIRY_OFFSET, ser_u32(MAX_BLOCK_HEIGHT + 1), "expiry_height"),
        (EXIT_DELTA_OFFSET, ser_u16(MAX_BLOCK_DELTA + 1), "exit_delta"),
        (AMOUNT_OFFSET, ser_u64(MAX_MONEY + 1), "amount"),
    ]
    for offset, field, what in cases:
        with pytest.raises(OutOfRange, match=f"^at byte {offset}: {what}"):
            decode_vtxo(data[:offset] + field + data[offset + len(field) :])
    at_limits = [(EXPIRY_OFFSET, ser_u32(MAX_BLOCK_HEIGHT)), (EXIT_DELTA_OFFSET, ser_u16(MAX_BLOCK_DELTA))]
    for offset, field in at_limits:
        decode_vtxo(data[:offset] + field + data[offset + len(field) :])


def test_htlc_bounds_are_checked_like_the_vtxos() -> None:
    vtxo = decode_vtxo(vector("round2_vtxo").data)
    assert isinstance(vtxo.policy, ServerHtlcRecvPolicy)
    with pytest.raises(OutOfRange, match="htlc-receive htlc_expiry "):
        decode_vtxo(replace(vtxo, policy=replace(vtxo.policy, htlc_expiry=MAX_BLOCK_HEIGHT + 1)).encode())
    with pytest.raises(OutOfRange, match="htlc-receive htlc_expiry_delta"):
        decode_vtxo(
            replace(vtxo, policy=replace(vtxo.policy, htlc_expiry_delta=MAX_BLOCK_DELTA + 1)).encode()
        )


def test_genesis_adding_up_to_more_than_all_bitcoin_is_rejected() -> None:
    vtxo = board()
    rich = (TxOut(MAX_MONEY, b"\x51"),)
    data = replace_item(vtxo, 0, other_outputs=rich).encode()
    with pytest.raises(OutOfRange, match=f"^at byte {GENESIS_OFFSET}: genesis outputs add up"):
        decode_vtxo(data)


def test_long_sibling_scripts_and_zero_outputs_are_rejected() -> None:
    vtxo = board()
    with pytest.raises(CountTooLarge, match="sibling output #0 script of 101 bytes"):
        decode_vtxo(replace_item(vtxo, 0, other_outputs=(TxOut(1, b"\x00" * 101),)).encode())
    data = vtxo.encode()
    nb_outputs_offset = GENESIS_OFFSET + 1 + (1 + 1 + 2 * 33 + 64)
    zero = data[:nb_outputs_offset] + b"\x00" + data[nb_outputs_offset + 1 :]
    with pytest.raises(
        InvalidStructure, match=f"^at byte {nb_outputs_offset}: genesis item with zero outputs"
    ):
        decode_vtxo(zero)


def test_unknown_type_bytes_are_rejected() -> None:
    data = vector("board_vtxo").data
    bad_transition = data[: GENESIS_OFFSET + 1] + b"\x05" + data[GENESIS_OFFSET + 2 :]
    with pytest.raises(UnknownType, match=f"^at byte {GENESIS_OFFSET + 1}: unknown transition type 0x05"):
        decode_vtxo(bad_transition)
    policy_offset = len(data) - 36 - 34
    bad_policy = data[:policy_offset] + b"\x0c" + data[policy_offset + 1 :]
    with pytest.raises(UnknownType, match=f"^at byte {policy_offset}: unknown policy type 0x0c"):
        decode_vtxo(bad_policy)


def test_unknown_unlock_flag_is_rejected() -> None:
    vtxo = decode_vtxo(vector("round1_vtxo").data)
    leaf = vtxo.genesis[-1].transition
    assert isinstance(leaf, HashLockedCosignedTransition)
    good = leaf.encode()
    flag_at = 1 + 33 + 64
    assert good[flag_at] == 0
    data = vtxo.encode().replace(good, good[:flag_at] + b"\x02" + good[flag_at + 1 :])
    with pytest.raises(UnknownType, match="unknown hash-lock unlock flag 2"):
        decode_vtxo(data)


def test_error_hierarchy_is_rooted_in_value_error() -> None:
    for cls in (UnexpectedEnd, TrailingBytes, NonMinimalCompactSize, CountTooLarge, OutOfRange, InvalidPoint,
                UnsupportedVersion, UnknownType, InvalidStructure, DisallowedPolicy):  # fmt: skip
        assert issubclass(cls, VtxoDecodeError)
    assert issubclass(VtxoDecodeError, ValueError)
    err = OutOfRange(57, "something")
    assert (str(err), err.offset, err.what) == ("at byte 57: something", 57, "something")


# -- synthetic encodings for what the vectors do not cover ---------------------------------------------


SERVER_ONLY_POLICIES = [
    CheckpointPolicy(bytes.fromhex(GENERATOR_INPUTS["board"]["user_pubkey"])),
    ExpiryPolicy(bytes.fromhex(GENERATOR_INPUTS["server_pubkey"])[1:]),
    HarkLeafPolicy(bytes.fromhex(GENERATOR_INPUTS["board"]["user_pubkey"]), b"\x11" * 32, HashLockVersion.V0),
    HarkLeafPolicy(bytes.fromhex(GENERATOR_INPUTS["board"]["user_pubkey"]), b"\x11" * 32),
    HarkForfeitPolicy(
        bytes.fromhex(GENERATOR_INPUTS["board"]["user_pubkey"]), b"\x22" * 32, HashLockVersion.V0
    ),
    HarkForfeitPolicy(bytes.fromhex(GENERATOR_INPUTS["board"]["user_pubkey"]), b"\x22" * 32),
    ServerOwnedPolicy(),
]


@pytest.mark.parametrize("policy", SERVER_ONLY_POLICIES, ids=lambda p: p.kind)
def test_server_only_policies_need_the_flag(policy: Policy) -> None:
    vtxo = replace(board(), policy=policy)
    data = vtxo.encode()
    policy_offset = len(data) - 36 - len(vtxo.policy.encode())
    with pytest.raises(DisallowedPolicy, match=f"^at byte {policy_offset}: server-only policy"):
        decode_vtxo(data)
    decoded = decode_vtxo(data, allow_server_policy=True)
    assert decoded == vtxo
    assert decoded.encode() == data


def test_v0_htlc_policies_in_a_v2_encoding() -> None:
    """Old HTLC VTXOs re-encoded by a current bark: version 2 bytes, type bytes 01 and 02."""
    send = decode_vtxo(decode_vtxo(vector("arkoor_htlc_out_vtxo", 1).data).encode())
    recv = decode_vtxo(decode_vtxo(vector("round2_vtxo", 1).data).encode())
    assert isinstance(send.policy, ServerHtlcSendPolicy)
    assert isinstance(recv.policy, ServerHtlcRecvPolicy)
    assert (send.version, send.policy.version, send.policy.encode()[0]) == (2, HashLockVersion.V0, 0x01)
    assert (recv.version, recv.policy.version, recv.policy.encode()[0]) == (2, HashLockVersion.V0, 0x02)


def test_unfinished_hark_leaf_encodes_its_unlock_hash() -> None:
    vtxo = decode_vtxo(vector("round1_vtxo").data)
    leaf = vtxo.genesis[-1].transition
    assert isinstance(leaf, HashLockedCosignedTransition)
    unfinished = replace_transition(vtxo, 2, preimage=None)
    data = unfinished.encode()
    assert leaf.user_pubkey + leaf.signature + b"\x01" + leaf.unlock_hash in data  # type: ignore[operator]
    decoded = decode_vtxo(data)
    assert decoded == unfinished
    assert decoded.is_unfinished
    assert decoded.encode() == data
    assert leaf.unlock_hash.hex() == GENERATOR_INPUTS["round"]["round1"]["unlock_hash"]


def test_missing_signatures_are_encoded_as_zeros() -> None:
    vtxo = replace_transition(board(), 0, signature=None)
    data = vtxo.encode()
    assert bytes(64) in data
    decoded = decode_vtxo(data)
    assert decoded.genesis[0].transition.signature is None
    assert decoded.is_unfinished


def test_hash_locked_transition_refuses_a_wrong_preimage() -> None:
    leaf = decode_vtxo(vector("round1_vtxo").data).genesis[-1].transition
    assert isinstance(leaf, HashLockedCosignedTransition)
    with pytest.raises(ValueError, match="does not hash to the unlock hash"):
        replace(leaf, preimage=b"\x00" * 32)


def test_genesis_item_reads_version_1_without_fee() -> None:
    item = board().genesis[0]
    v2 = item.encode()
    assert GenesisItem.decode(ByteReader(v2), 2) == item
    assert GenesisItem.decode(ByteReader(v2[:-8]), 1) == replace(item, fee_amount=0)


def test_outpoint_encoding_is_txid_then_vout() -> None:
    point = OutPoint(bytes(range(32)), 7)
    assert point.encode() == bytes(range(32)) + b"\x07\x00\x00\x00"
    assert OutPoint.decode(ByteReader(point.encode()), "x") == point
    with pytest.raises(ValueError):
        OutPoint(bytes(31), 0)
    with pytest.raises(ValueError):
        OutPoint(bytes(32), 2**32)
