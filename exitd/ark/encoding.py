"""Primitive encodings of bark's VTXO wire format and the errors its decoder raises.

Everything is little-endian. A decoder sees untrusted bytes (REST imports), so every read is bounds-checked,
every count is capped before anything is allocated for it, and every failure is a `VtxoDecodeError` subclass
that names the byte offset where decoding stopped.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Self

from exitd.ark.key import SECP256K1_ORDER, is_valid_pubkey, is_valid_xonly

# Bitcoin consensus: no amount, and no sum of amounts in one transaction, may exceed this.
MAX_MONEY = 21_000_000 * 100_000_000

# bark refuses TxOut scripts longer than this when decoding a VTXO.
MAX_TXOUT_SCRIPT_LEN = 100

# bark's bounds on block heights and deltas (a quarter of u16 for deltas; heights stay below the
# locktime threshold even after adding four maximal deltas).
MAX_BLOCK_DELTA = 0xFFFF // 4
LOCKTIME_THRESHOLD = 500_000_000
MAX_BLOCK_HEIGHT = LOCKTIME_THRESHOLD - 1 - 4 * MAX_BLOCK_DELTA

PUBKEY_LEN = 33
XONLY_LEN = 32
HASH_LEN = 32
SCHNORR_SIG_LEN = 64


class VtxoError(ValueError):
    """Root of everything that makes a VTXO unusable: bad bytes, a chain that does not add up, bad sigs."""


class VtxoDecodeError(VtxoError):
    """The bytes are not a valid VTXO encoding."""

    def __init__(self, offset: int, what: str) -> None:
        super().__init__(f"at byte {offset}: {what}")
        self.offset = offset
        self.what = what


class UnexpectedEnd(VtxoDecodeError):
    pass


class TrailingBytes(VtxoDecodeError):
    pass


class NonMinimalCompactSize(VtxoDecodeError):
    pass


class CountTooLarge(VtxoDecodeError):
    pass


class OutOfRange(VtxoDecodeError):
    pass


class InvalidPoint(VtxoDecodeError):
    pass


class UnsupportedVersion(VtxoDecodeError):
    pass


class UnknownType(VtxoDecodeError):
    pass


class InvalidStructure(VtxoDecodeError):
    """Well-formed fields whose combination bark forbids (empty key list, genesis/point mismatch, ...)."""


class DisallowedPolicy(VtxoDecodeError):
    """A server-only policy where a user VTXO was expected."""


def _check_max(value: int, maximum: int, start: int, what: str) -> int:
    if value > maximum:
        raise OutOfRange(start, f"{what} {value} exceeds the maximum of {maximum}")
    return value


class ByteReader:
    """A cursor over untrusted bytes that knows its offset, for error messages that say where."""

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        self.offset = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self.offset

    def read_bytes(self, n: int, what: str) -> bytes:
        if n > self.remaining:
            raise UnexpectedEnd(self.offset, f"need {n} bytes for {what}, only {self.remaining} left")
        start = self.offset
        self.offset += n
        return self._data[start : self.offset]

    def _read_int(self, fmt: str, size: int, what: str) -> int:
        value: int = struct.unpack(fmt, self.read_bytes(size, what))[0]
        return value

    def u8(self, what: str) -> int:
        return self._read_int("<B", 1, what)

    def u16(self, what: str) -> int:
        return self._read_int("<H", 2, what)

    def u32(self, what: str) -> int:
        return self._read_int("<I", 4, what)

    def u64(self, what: str) -> int:
        return self._read_int("<Q", 8, what)

    def compact_size(self, what: str) -> int:
        """Bitcoin CompactSize; a value that fits a shorter form is rejected, as rust-bitcoin does."""
        start = self.offset
        first = self.u8(what)
        if first < 0xFD:
            return first
        if first == 0xFD:
            n, minimum = self.u16(what), 0xFD
        elif first == 0xFE:
            n, minimum = self.u32(what), 0x1_0000
        else:
            n, minimum = self.u64(what), 0x1_0000_0000
        if n < minimum:
            raise NonMinimalCompactSize(start, f"non-minimal compact size {n} for {what}")
        return n

    def count(self, what: str, cap: int) -> int:
        """A compact-size item count, refused before any work if it exceeds what we accept."""
        start = self.offset
        n = self.compact_size(what)
        if n > cap:
            raise CountTooLarge(start, f"{what} count {n} exceeds the limit of {cap}")
        return n

    def amount(self, what: str) -> int:
        start = self.offset
        value = self.u64(what)
        if value > MAX_MONEY:
            raise OutOfRange(start, f"{what} of {value} sat exceeds the 21M BTC money supply")
        return value

    def pubkey(self, what: str) -> bytes:
        start = self.offset
        data = self.read_bytes(PUBKEY_LEN, what)
        if not is_valid_pubkey(data):
            raise InvalidPoint(start, f"{what} is not a valid compressed secp256k1 point")
        return data

    def xonly(self, what: str) -> bytes:
        start = self.offset
        data = self.read_bytes(XONLY_LEN, what)
        if not is_valid_xonly(data):
            raise InvalidPoint(start, f"{what} is not the x coordinate of a secp256k1 point")
        return data

    def hash32(self, what: str) -> bytes:
        return self.read_bytes(HASH_LEN, what)

    def scalar(self, what: str) -> bytes:
        """A 32-byte big-endian scalar that must be below the curve order (a tweak, say)."""
        start = self.offset
        data = self.read_bytes(HASH_LEN, what)
        if int.from_bytes(data, "big") >= SECP256K1_ORDER:
            raise OutOfRange(start, f"{what} is not below the secp256k1 curve order")
        return data

    def opt_signature(self, what: str) -> bytes | None:
        """bark writes 64 zero bytes for a signature it does not have yet."""
        sig = self.read_bytes(SCHNORR_SIG_LEN, what)
        return None if sig == bytes(SCHNORR_SIG_LEN) else sig

    def block_height(self, what: str) -> int:
        """An absolute height (u32) that stays clear of the locktime-as-timestamp range."""
        start = self.offset
        return _check_max(self.u32(what), MAX_BLOCK_HEIGHT, start, what)

    def block_delta(self, what: str) -> int:
        """A relative delay in blocks (u16); bark bounds it so that heights plus deltas cannot overflow."""
        start = self.offset
        return _check_max(self.u16(what), MAX_BLOCK_DELTA, start, what)

    def finish(self) -> None:
        if self.remaining:
            raise TrailingBytes(self.offset, f"{self.remaining} trailing bytes after the VTXO")


def ser_u8(n: int) -> bytes:
    return struct.pack("<B", n)


def ser_u16(n: int) -> bytes:
    return struct.pack("<H", n)


def ser_u32(n: int) -> bytes:
    return struct.pack("<I", n)


def ser_u64(n: int) -> bytes:
    return struct.pack("<Q", n)


def ser_compact_size(n: int) -> bytes:
    if n < 0xFD:
        return ser_u8(n)
    if n <= 0xFFFF:
        return b"\xfd" + ser_u16(n)
    if n <= 0xFFFF_FFFF:
        return b"\xfe" + ser_u32(n)
    return b"\xff" + ser_u64(n)


def ser_opt_signature(sig: bytes | None) -> bytes:
    return bytes(SCHNORR_SIG_LEN) if sig is None else sig


def ser_vector(items: Sequence[bytes]) -> bytes:
    """A compact-size count followed by already-encoded items."""
    return ser_compact_size(len(items)) + b"".join(items)


_OUTPOINT_TEXT = re.compile(r"(?P<txid>[0-9a-fA-F]{64}):(?P<vout>[0-9]{1,10})")


@dataclass(frozen=True)
class OutPoint:
    """A transaction output reference: exitd's one outpoint type, from the VTXO codec to bitcoind's RPC
    and the store.

    The txid convention: as bytes (`txid`) a txid is in internal (serialization) byte order, as Bitcoin
    Core's test framework holds it; as text (`txid_hex`, and every `txid: str` in exitd) it is the
    reversed hex that bitcoind's RPC and explorers show."""

    txid: bytes
    vout: int

    def __post_init__(self) -> None:
        if len(self.txid) != HASH_LEN or not 0 <= self.vout <= 0xFFFF_FFFF:
            raise ValueError("an outpoint is a 32-byte txid and a u32 output index")

    def __str__(self) -> str:
        """`<txid>:<vout>` with the txid in the reversed hex that explorers and bitcoind display."""
        return f"{self.txid_hex}:{self.vout}"

    @property
    def txid_hex(self) -> str:
        return self.txid[::-1].hex()

    @classmethod
    def of(cls, txid_hex: str, vout: int) -> Self:
        """The outpoint bitcoind names (txid as it shows it, vout)."""
        return cls(bytes.fromhex(txid_hex)[::-1], int(vout))

    @classmethod
    def from_str(cls, text: str) -> Self:
        match = _OUTPOINT_TEXT.fullmatch(text)
        if match is None or int(match["vout"]) > 0xFFFF_FFFF:
            raise ValueError(f"not an outpoint '<txid>:<vout>': {text!r}")
        return cls(bytes.fromhex(match["txid"])[::-1], int(match["vout"]))

    def encode(self) -> bytes:
        return self.txid + ser_u32(self.vout)

    @classmethod
    def decode(cls, r: ByteReader, what: str) -> Self:
        return cls(r.read_bytes(HASH_LEN, f"{what} txid"), r.u32(f"{what} vout"))


class TxOut(NamedTuple):
    """A transaction output; a plain (value, script_pubkey) pair so it can be passed as a sighash prevout."""

    value: int
    script_pubkey: bytes

    def encode(self) -> bytes:
        return ser_u64(self.value) + ser_compact_size(len(self.script_pubkey)) + self.script_pubkey

    @classmethod
    def decode(cls, r: ByteReader, what: str) -> TxOut:
        value = r.amount(f"{what} value")
        start = r.offset
        script_len = r.compact_size(f"{what} script length")
        if script_len > MAX_TXOUT_SCRIPT_LEN:
            raise CountTooLarge(
                start, f"{what} script of {script_len} bytes exceeds the limit of {MAX_TXOUT_SCRIPT_LEN}"
            )
        return cls(value, r.read_bytes(script_len, f"{what} script"))
