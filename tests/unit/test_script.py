import pytest
from bitcoin.core.script import CScript

from exitd.ark.script import (
    OP_0,
    OP_1,
    OP_1NEGATE,
    OP_16,
    OP_CHECKLOCKTIMEVERIFY,
    OP_CHECKSEQUENCEVERIFY,
    OP_CHECKSIG,
    OP_DROP,
    OP_PUSHDATA1,
    OP_PUSHDATA2,
    OP_PUSHDATA4,
    P2A_SCRIPT,
    p2pkh_script,
    p2sh_script,
    p2tr_script,
    push_data,
    push_int,
    script_num,
    segwit_script,
)

PUSH_INT_VECTORS = [
    (0, "00"),
    (-1, "4f"),
    (1, "51"),
    (16, "60"),
    (17, "0111"),
    (-2, "0182"),
    (32, "0120"),
    (127, "017f"),
    (128, "028000"),
    (255, "02ff00"),
    (256, "020001"),
    (-127, "01ff"),
    (-128, "028080"),
    (-255, "02ff80"),
    (2016, "02e007"),
    (101010, "03928a01"),
    (2**31 - 1, "04ffffff7f"),
    (-(2**31) + 1, "04ffffffff"),
    (499_934_467, "040365cc1d"),
]


@pytest.mark.parametrize(("n", "expected"), PUSH_INT_VECTORS)
def test_push_int(n: int, expected: str) -> None:
    assert push_int(n).hex() == expected


def test_push_int_matches_python_bitcoinlib() -> None:
    for n in [*range(-300, 70000, 7), 2**23, 2**24 - 1, 2**32, -(2**39)]:
        assert push_int(n) == bytes(CScript([n])), n


def test_script_num() -> None:
    assert script_num(0) == b""
    assert script_num(-1) == b"\x81"
    assert script_num(0x80) == b"\x80\x00"
    assert script_num(-0x80) == b"\x80\x80"


def test_push_data_length_prefixes() -> None:
    assert push_data(b"\xab" * 75) == bytes([75]) + b"\xab" * 75
    assert push_data(b"\xab" * 76) == bytes([OP_PUSHDATA1, 76]) + b"\xab" * 76
    assert push_data(b"\xab" * 255) == bytes([OP_PUSHDATA1, 255]) + b"\xab" * 255
    assert push_data(b"\xab" * 256) == bytes([OP_PUSHDATA2, 0x00, 0x01]) + b"\xab" * 256
    assert push_data(b"\xab" * 65536) == bytes([OP_PUSHDATA4, 0x00, 0x00, 0x01, 0x00]) + b"\xab" * 65536


def test_push_data_uses_small_integer_opcodes() -> None:
    assert push_data(b"") == bytes([OP_0])
    assert push_data(b"\x01") == bytes([OP_1])
    assert push_data(b"\x10") == bytes([OP_16])
    assert push_data(b"\x81") == bytes([OP_1NEGATE])
    # A single zero byte is not the empty vector OP_0 pushes, and 17 has no opcode.
    assert push_data(b"\x00") == b"\x01\x00"
    assert push_data(b"\x11") == b"\x01\x11"


def test_bark_leaf_shapes() -> None:
    # bark's delayed_sign(2016, x(user)) leaf from the board vector (vtxo-vectors.json).
    user = bytes.fromhex("0a752219f1b94bbdf8994a0a980cdda08c2ad094cb29dd834878db6dee1612ee")
    leaf = push_int(2016) + bytes([OP_CHECKSEQUENCEVERIFY, OP_DROP]) + push_data(user) + bytes([OP_CHECKSIG])
    assert leaf.hex() == "02e007b275200a752219f1b94bbdf8994a0a980cdda08c2ad094cb29dd834878db6dee1612eeac"
    timelock = push_int(101010) + bytes([OP_CHECKLOCKTIMEVERIFY, OP_DROP])
    assert timelock.hex() == "03928a01b175"


def test_output_templates() -> None:
    h = bytes.fromhex("751e76e8199196d454941c45d1b3a323f1433bd6")
    assert p2pkh_script(h).hex() == "76a914751e76e8199196d454941c45d1b3a323f1433bd688ac"
    assert p2sh_script(h).hex() == "a914751e76e8199196d454941c45d1b3a323f1433bd687"
    assert segwit_script(0, h).hex() == "0014751e76e8199196d454941c45d1b3a323f1433bd6"
    x = bytes.fromhex("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
    assert p2tr_script(x).hex() == "5120" + x.hex()
    assert segwit_script(16, h[:2]).hex() == "6002751e"
    assert segwit_script(1, bytes.fromhex("4e73")) == P2A_SCRIPT


def test_output_templates_reject_bad_sizes() -> None:
    with pytest.raises(ValueError):
        p2tr_script(bytes(33))
    with pytest.raises(ValueError):
        p2pkh_script(bytes(32))
    with pytest.raises(ValueError):
        p2sh_script(bytes(19))
    with pytest.raises(ValueError):
        segwit_script(17, bytes(20))
    with pytest.raises(ValueError):
        segwit_script(1, bytes(41))
