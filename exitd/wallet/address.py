"""Bitcoin addresses: BIP173 bech32 / BIP350 bech32m segwit addresses and Base58Check P2PKH/P2SH.

Addresses arrive from REST clients (claim destinations), so decoding says precisely what is wrong;
InvalidAddress messages are meant to be shown to the user as they are.
"""

from collections.abc import Sequence
from enum import Enum

from exitd.ark.base58 import BASE58_ALPHABET, b58check_decode, b58check_encode
from exitd.ark.script import p2pkh_script, p2sh_script, segwit_script, witness_program


class InvalidAddress(ValueError):
    """The string is not a valid address for the network; the message says why."""


class Encoding(Enum):
    """The two checksum variants: bech32 for witness v0, bech32m for v1 and later (BIP350)."""

    # The value is the constant xored into the checksum.
    BECH32 = 1
    BECH32M = 0x2BC830A3


BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_INDEX = {c: i for i, c in enumerate(BECH32_CHARSET)}
BECH32_MAX_LENGTH = 90
_BECH32_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)

# Network names (as in exitd's config, plus bitcoind's and bark's spellings) -> segwit HRP.
NETWORK_HRP = {
    "mainnet": "bc",
    "bitcoin": "bc",
    "main": "bc",
    "testnet": "tb",
    "test": "tb",
    "testnet4": "tb",
    "signet": "tb",
    "regtest": "bcrt",
}
# Segwit HRP -> (P2PKH, P2SH) Base58 version bytes. Testnet, signet and regtest share theirs.
BASE58_VERSIONS = {"bc": (0x00, 0x05), "tb": (0x6F, 0xC4), "bcrt": (0x6F, 0xC4)}
_HRP_NETWORK_NAME = {"bc": "mainnet", "tb": "testnet or signet", "bcrt": "regtest"}
_BASE58_NETWORK_NAME = {
    0x00: "mainnet",
    0x05: "mainnet",
    0x6F: "testnet, signet or regtest",
    0xC4: "testnet, signet or regtest",
}


def network_hrp(network: str) -> str:
    try:
        return NETWORK_HRP[network]
    except KeyError:
        raise ValueError(f"unknown network {network!r}; expected one of {sorted(NETWORK_HRP)}") from None


def bech32_polymod(values: Sequence[int]) -> int:
    """The BCH checksum over GF(32) that both bech32 variants share."""
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for i, generator in enumerate(_BECH32_GENERATOR):
            if (top >> i) & 1:
                checksum ^= generator
    return checksum


def bech32_hrp_expand(hrp: str) -> list[int]:
    """The HRP as checksum input: high bits of each character, a zero, then the low bits."""
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def bech32_create_checksum(hrp: str, data: Sequence[int], encoding: Encoding) -> list[int]:
    polymod = bech32_polymod([*bech32_hrp_expand(hrp), *data, 0, 0, 0, 0, 0, 0]) ^ encoding.value
    return [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]


def bech32_encode(hrp: str, data: Sequence[int], encoding: Encoding) -> str:
    combined = [*data, *bech32_create_checksum(hrp, data, encoding)]
    return hrp + "1" + "".join(BECH32_CHARSET[d] for d in combined)


def bech32_decode(s: str) -> tuple[str, list[int], Encoding]:
    """Split a bech32 or bech32m string into (HRP, 5-bit data without checksum, variant)."""
    if len(s) > BECH32_MAX_LENGTH:
        raise InvalidAddress(f"address is too long ({len(s)} characters, at most {BECH32_MAX_LENGTH})")
    if any(not 33 <= ord(c) <= 126 for c in s):
        raise InvalidAddress("address contains a character that is not printable US-ASCII")
    if s.lower() != s and s.upper() != s:
        raise InvalidAddress("address mixes upper and lower case")
    s = s.lower()
    separator = s.rfind("1")
    if separator < 1:
        raise InvalidAddress("address has no human-readable part before the separator '1'")
    if separator + 7 > len(s):
        raise InvalidAddress("address is too short to hold a checksum")
    hrp, data_part = s[:separator], s[separator + 1 :]
    if any(c not in _BECH32_INDEX for c in data_part):
        raise InvalidAddress("address contains a character outside the bech32 alphabet")
    data = [_BECH32_INDEX[c] for c in data_part]
    check = bech32_polymod(bech32_hrp_expand(hrp) + data)
    for encoding in Encoding:
        if check == encoding.value:
            return hrp, data[:-6], encoding
    raise InvalidAddress("bad address checksum (a character is probably mistyped)")


def convertbits(data: Sequence[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    """Regroup a bit string from from_bits-wide to to_bits-wide values (8 <-> 5 for segwit).

    Without pad, the leftover bits must be fewer than from_bits and all zero, so that each byte
    string has exactly one encoding.
    """
    acc = 0
    bits = 0
    out = []
    max_value = (1 << to_bits) - 1
    for value in data:
        if value >> from_bits:
            raise ValueError(f"value {value} does not fit in {from_bits} bits")
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & max_value)
        acc &= (1 << bits) - 1
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & max_value)
    elif bits >= from_bits:
        raise InvalidAddress("address has more than 4 bits of padding")
    elif acc:
        raise InvalidAddress("address has non-zero padding bits")
    return out


def encode_segwit_address(hrp: str, witver: int, program: bytes) -> str:
    """bech32 for witness v0, bech32m for v1..v16 (BIP350)."""
    if not 0 <= witver <= 16:
        raise ValueError(f"witness versions are 0..16, got {witver}")
    if not 2 <= len(program) <= 40:
        raise ValueError(f"a witness program is 2 to 40 bytes, got {len(program)}")
    if witver == 0 and len(program) not in (20, 32):
        raise ValueError(f"a witness v0 program is 20 or 32 bytes, got {len(program)}")
    encoding = Encoding.BECH32 if witver == 0 else Encoding.BECH32M
    return bech32_encode(hrp, [witver, *convertbits(program, 8, 5, pad=True)], encoding)


def decode_segwit_address(hrp: str, addr: str) -> tuple[int, bytes]:
    """(witness version, program) of a segwit address for the network of `hrp`."""
    got_hrp, data, encoding = bech32_decode(addr)
    if got_hrp != hrp:
        if got_hrp in _HRP_NETWORK_NAME:
            raise InvalidAddress(
                f"address is for {_HRP_NETWORK_NAME[got_hrp]}, not {_HRP_NETWORK_NAME.get(hrp, hrp)}"
            )
        raise InvalidAddress(f"unknown address prefix '{got_hrp}1', expected '{hrp}1'")
    if not data:
        raise InvalidAddress("address has no witness version")
    witver = data[0]
    if witver > 16:
        raise InvalidAddress(f"invalid witness version {witver} (at most 16)")
    program = bytes(convertbits(data[1:], 5, 8, pad=False))
    if not 2 <= len(program) <= 40:
        raise InvalidAddress(f"invalid witness program length ({len(program)} bytes, 2 to 40 allowed)")
    if witver == 0 and len(program) not in (20, 32):
        raise InvalidAddress(f"a witness v0 program is 20 or 32 bytes, this one is {len(program)}")
    expected = Encoding.BECH32 if witver == 0 else Encoding.BECH32M
    if encoding != expected:
        raise InvalidAddress(
            f"bad address checksum: witness v{witver} addresses use {expected.name.lower()},"
            f" this one is {encoding.name.lower()}"
        )
    return witver, program


def decode_address(addr: str, network: str) -> bytes:
    """The scriptPubKey an address pays to, if it is a valid address of `network`."""
    hrp = network_hrp(network)
    if not addr:
        raise InvalidAddress("address is empty")
    lowered = addr.lower()
    # A known segwit prefix decides; otherwise only Base58 characters mean a Base58 address, and
    # a separator makes a bech32 decode the most telling diagnosis.
    has_segwit_prefix = "1" in lowered and lowered[: lowered.rfind("1")] in BASE58_VERSIONS
    if has_segwit_prefix or ("1" in addr and any(c not in BASE58_ALPHABET for c in addr)):
        witver, program = decode_segwit_address(hrp, addr)
        return segwit_script(witver, program)
    if any(c not in BASE58_ALPHABET for c in addr):
        raise InvalidAddress("not a valid address: neither bech32 nor Base58")
    return _decode_base58_address(addr, network)


def _decode_base58_address(addr: str, network: str) -> bytes:
    try:
        payload = b58check_decode(addr)
    except ValueError as e:
        raise InvalidAddress(f"not a valid address: {e}") from None
    if len(payload) != 21:
        raise InvalidAddress(f"invalid length for a Base58 address ({len(payload)} bytes, expected 21)")
    version, hash160 = payload[0], payload[1:]
    p2pkh, p2sh = BASE58_VERSIONS[network_hrp(network)]
    if version == p2pkh:
        return p2pkh_script(hash160)
    if version == p2sh:
        return p2sh_script(hash160)
    if version in _BASE58_NETWORK_NAME:
        raise InvalidAddress(f"address is for {_BASE58_NETWORK_NAME[version]}, not {network}")
    raise InvalidAddress(f"unknown Base58 address version byte {version:#04x}")


def script_to_address(spk: bytes, network: str) -> str:
    """The address of a standard output script (segwit any version, P2PKH, P2SH)."""
    hrp = network_hrp(network)
    segwit = witness_program(spk)
    if segwit is not None:
        return encode_segwit_address(hrp, *segwit)
    p2pkh, p2sh = BASE58_VERSIONS[hrp]
    if len(spk) == 25 and spk == p2pkh_script(spk[3:23]):
        return b58check_encode(bytes([p2pkh]) + spk[3:23])
    if len(spk) == 23 and spk == p2sh_script(spk[2:22]):
        return b58check_encode(bytes([p2sh]) + spk[2:22])
    raise ValueError("this output script has no standard address")
