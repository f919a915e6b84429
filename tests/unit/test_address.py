import re

import pytest

from exitd.ark.script import P2A_SCRIPT
from exitd.wallet.address import (
    Encoding,
    InvalidAddress,
    bech32_decode,
    bech32_encode,
    decode_address,
    encode_segwit_address,
    script_to_address,
)
from tests.support.vectors import bip341_wallet_vectors

# BIP173 and BIP350 test vectors, typed in from the BIPs.
VALID_BECH32 = [
    "A12UEL5L",
    "a12uel5l",
    "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
    "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
    "11" + "q" * 82 + "c8247j",
    "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
    "?1ezyfcl",
]
VALID_BECH32M = [
    "A1LQFN3A",
    "a1lqfn3a",
    "an83characterlonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber11sg7hg6",
    "abcdef1l7aum6echk45nj3s0wdvt2fg8x9yrzpqzd3ryx",
    "11" + "l" * 82 + "ludsr8",
    "split1checkupstagehandshakeupstreamerranterredcaperredlc445v",
    "?1v759aa",
]
INVALID_BECH32 = [
    "\x201nwldj5",
    "\x7f1axkwrx",
    "\x801eym55h",
    "an84characterslonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1569pvx",
    "pzry9x0s0muk",
    "1pzry9x0s0muk",
    "x1b4n0q5v",
    "li1dgmt3",
    "de1lg7wt\xff",
    "A1G7SGD8",
    "10a06t8",
    "1qzzfhee",
]
INVALID_BECH32M = [
    ("\x201xj0phk", "not printable"),
    ("\x7f1g6xzxy", "not printable"),
    ("\x801vctc34", "not printable"),
    (
        "an84characterslonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber11d6pts4",
        "too long",
    ),
    ("qyrz8wqd2c9m", "no human-readable part"),
    ("1qyrz8wqd2c9m", "no human-readable part"),
    ("y1b0jsk6g", "outside the bech32 alphabet"),
    ("lt1igcx5c0", "outside the bech32 alphabet"),
    ("in1muywd", "too short"),
    ("mm1crxm3i", "outside the bech32 alphabet"),
    ("au1s5cgom", "outside the bech32 alphabet"),
    ("M1VUXWEZ", "checksum"),
    ("16plkw9", "no human-readable part"),
    ("1p2gdwpf", "no human-readable part"),
]
VALID_SEGWIT_ADDRESSES = [
    ("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "0014751e76e8199196d454941c45d1b3a323f1433bd6"),
    (
        "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
        "00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262",
    ),
    (
        "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
        "5128751e76e8199196d454941c45d1b3a323f1433bd6751e76e8199196d454941c45d1b3a323f1433bd6",
    ),
    ("BC1SW50QGDZ25J", "6002751e"),
    ("bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs", "5210751e76e8199196d454941c45d1b3a323"),
    (
        "tb1qqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesrxh6hy",
        "0020000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433",
    ),
    (
        "tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c",
        "5120000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433",
    ),
    (
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
        "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
    ),
]
INVALID_SEGWIT_ADDRESSES = [
    ("tc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq5zuyut", "unknown address prefix 'tc1'"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd", "v1 addresses use bech32m"),
    ("tb1z0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqglt7rf", "v2 addresses use bech32m"),
    ("BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL", "v16 addresses use bech32m"),
    ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh", "v0 addresses use bech32,"),
    ("tb1q0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq24jc47", "v0 addresses use bech32,"),
    ("bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4", "outside the bech32 alphabet"),
    ("BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R", "invalid witness version 17"),
    ("bc1pw5dgrnzv", "invalid witness program length (1 bytes"),
    (
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v8n0nx0muaewav253zgeav",
        "invalid witness program length (41 bytes",
    ),
    ("BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P", "witness v0 program is 20 or 32 bytes"),
    ("tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq47Zagq", "mixes upper and lower case"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v07qwwzcrf", "more than 4 bits of padding"),
    ("tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vpggkg4j", "non-zero padding"),
    ("bc1gmk9yu", "no witness version"),
]
# Well-known Base58 addresses, cross-checked with python-bitcoinlib.
BASE58_ADDRESSES = [
    ("1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "mainnet", "76a9147680adec8eabcabac676be9e83854ade0bd22cdb88ac"),
    ("3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", "mainnet", "a914b472a266d0bd89c13706a4132ccfb16f7c3b9fcb87"),
    ("mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn", "testnet", "76a914243f1394f44554f4ce3fd68649c19adc483ce92488ac"),
    ("2MzQwSSnBHWHqSAqtTVQ6v47XtaisrJa1Vc", "regtest", "a9144e9f39ca4688ff102128ea4ccda34105324305b087"),
]


def network_of(addr: str) -> str:
    hrp = addr.lower()[: addr.lower().rfind("1")]
    return {"bc": "mainnet", "tb": "testnet", "bcrt": "regtest"}.get(hrp, "mainnet")


@pytest.mark.parametrize(
    ("strings", "encoding"), [(VALID_BECH32, Encoding.BECH32), (VALID_BECH32M, Encoding.BECH32M)]
)
def test_valid_bech32_strings(strings: list[str], encoding: Encoding) -> None:
    for s in strings:
        hrp, data, got = bech32_decode(s)
        assert got == encoding, s
        assert bech32_encode(hrp, data, encoding) == s.lower()


def test_invalid_bech32_strings() -> None:
    for s in INVALID_BECH32:
        with pytest.raises(InvalidAddress):
            bech32_decode(s)


@pytest.mark.parametrize(("s", "reason"), INVALID_BECH32M)
def test_invalid_bech32m_strings(s: str, reason: str) -> None:
    with pytest.raises(InvalidAddress, match=re.escape(reason)):
        bech32_decode(s)


@pytest.mark.parametrize(("addr", "spk"), VALID_SEGWIT_ADDRESSES)
def test_valid_segwit_addresses(addr: str, spk: str) -> None:
    assert decode_address(addr, network_of(addr)).hex() == spk
    assert script_to_address(bytes.fromhex(spk), network_of(addr)) == addr.lower()


@pytest.mark.parametrize(("addr", "reason"), INVALID_SEGWIT_ADDRESSES)
def test_invalid_segwit_addresses(addr: str, reason: str) -> None:
    with pytest.raises(InvalidAddress, match=re.escape(reason)):
        decode_address(addr, network_of(addr))


def test_bip341_and_bip86_addresses() -> None:
    bip86 = "5120a60869f0dbcf1dc659c9cecbaf8050135ea9e8cdc487053f1dc6880949dc684c"
    assert script_to_address(bytes.fromhex(bip86), "mainnet") == (
        "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr"
    )
    for case in bip341_wallet_vectors()["scriptPubKey"]:
        spk, addr = case["expected"]["scriptPubKey"], case["expected"]["bip350Address"]
        assert script_to_address(bytes.fromhex(spk), "mainnet") == addr
        assert decode_address(addr, "mainnet").hex() == spk


@pytest.mark.parametrize(("addr", "network", "spk"), BASE58_ADDRESSES)
def test_base58_addresses(addr: str, network: str, spk: str) -> None:
    assert decode_address(addr, network).hex() == spk
    assert script_to_address(bytes.fromhex(spk), network) == addr


def test_networks() -> None:
    x = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
    spk = bytes.fromhex("5120" + x)
    regtest = script_to_address(spk, "regtest")
    assert regtest == encode_segwit_address("bcrt", 1, bytes.fromhex(x))
    assert regtest.startswith("bcrt1p")
    assert decode_address(regtest, "regtest") == spk
    assert script_to_address(spk, "signet") == script_to_address(spk, "testnet")
    # Testnet, signet and regtest share their Base58 versions.
    assert decode_address("mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn", "regtest") == decode_address(
        "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn", "signet"
    )
    with pytest.raises(ValueError, match="unknown network") as excinfo:
        decode_address(regtest, "mainnet-ish")
    assert not isinstance(excinfo.value, InvalidAddress)


@pytest.mark.parametrize(
    ("addr", "network", "reason"),
    [
        (
            "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
            "regtest",
            "is for mainnet, not regtest",
        ),
        (
            "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
            "mainnet",
            "is for testnet or signet",
        ),
        ("1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "regtest", "is for mainnet, not regtest"),
        ("mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn", "mainnet", "is for testnet, signet or regtest, not mainnet"),
        ("1BoatSLRHtKNngkdXEeobR76b53LETtpyU", "mainnet", "checksum"),
        ("1BoatSLRHtKNngkdXEeobR76b5", "mainnet", "checksum"),
        ("111111111111111111117K4nzc", "mainnet", "invalid length for a Base58 address (20 bytes"),
        ("LKDxGDJq5fF4FohAB8zJH24mDDNHDNtqsE", "mainnet", "unknown Base58 address version byte 0x30"),
        ("", "mainnet", "empty"),
        ("hello", "mainnet", "neither bech32 nor Base58"),
        ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj1", "mainnet", "checksum"),
    ],
)
def test_decode_address_errors(addr: str, network: str, reason: str) -> None:
    with pytest.raises(InvalidAddress, match=re.escape(reason)):
        decode_address(addr, network)


def test_script_to_address_special_outputs() -> None:
    # Pay-to-anchor is a segwit v1 output with a 2-byte program.
    assert script_to_address(P2A_SCRIPT, "mainnet") == "bc1pfeessrawgf"
    assert decode_address("bc1pfeessrawgf", "mainnet") == P2A_SCRIPT
    for spk in (b"\x6a\x04test", b"\x00\x15" + bytes(21), b"\x51\x01\x00", b""):
        with pytest.raises(ValueError, match=r"no standard address|20 or 32"):
            script_to_address(spk, "mainnet")


def test_encode_segwit_address_rejects() -> None:
    with pytest.raises(ValueError):
        encode_segwit_address("bc", 17, bytes(20))
    with pytest.raises(ValueError):
        encode_segwit_address("bc", 0, bytes(21))
    with pytest.raises(ValueError):
        encode_segwit_address("bc", 1, bytes(41))
