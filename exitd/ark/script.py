"""Bitcoin script: opcodes, minimal pushes and the output script templates exitd meets.

Opcodes carry Bitcoin Core's names. Scripts are plain bytes built by concatenation, e.g.
push_int(2016) + bytes([OP_CHECKSEQUENCEVERIFY, OP_DROP]) + push_data(key) + bytes([OP_CHECKSIG]).
"""

# Push values
OP_0 = 0x00
OP_FALSE = OP_0
OP_PUSHDATA1 = 0x4C
OP_PUSHDATA2 = 0x4D
OP_PUSHDATA4 = 0x4E
OP_1NEGATE = 0x4F
OP_1 = 0x51
OP_TRUE = OP_1
OP_2 = 0x52
OP_3 = 0x53
OP_4 = 0x54
OP_5 = 0x55
OP_6 = 0x56
OP_7 = 0x57
OP_8 = 0x58
OP_9 = 0x59
OP_10 = 0x5A
OP_11 = 0x5B
OP_12 = 0x5C
OP_13 = 0x5D
OP_14 = 0x5E
OP_15 = 0x5F
OP_16 = 0x60

# Control flow
OP_IF = 0x63
OP_ELSE = 0x67
OP_ENDIF = 0x68
OP_VERIFY = 0x69
OP_RETURN = 0x6A

# Stack
OP_DROP = 0x75
OP_DUP = 0x76
OP_SIZE = 0x82

# Bitwise logic
OP_EQUAL = 0x87
OP_EQUALVERIFY = 0x88

# Crypto
OP_SHA256 = 0xA8
OP_HASH160 = 0xA9
OP_HASH256 = 0xAA
OP_CHECKSIG = 0xAC
OP_CHECKSIGVERIFY = 0xAD
OP_CHECKMULTISIG = 0xAE
OP_CHECKSIGADD = 0xBA

# Locktime
OP_CHECKLOCKTIMEVERIFY = 0xB1
OP_CHECKSEQUENCEVERIFY = 0xB2

# Pay-to-anchor (Bitcoin Core 28+): OP_1 <0x4e73>, a keyless segwit v1 output anyone can spend
# with an empty witness, which is how a CPFP child attaches to a zero-fee exit transaction.
P2A_SCRIPT = bytes.fromhex("51024e73")


def script_num(n: int) -> bytes:
    """CScriptNum: minimal little-endian magnitude with the sign in the top bit of the last byte.

    A magnitude whose top bit is already used gets an extra 0x00 (or 0x80 if negative) byte.
    """
    magnitude = abs(n)
    out = bytearray()
    while magnitude:
        out.append(magnitude & 0xFF)
        magnitude >>= 8
    if out and out[-1] & 0x80:
        out.append(0x80 if n < 0 else 0x00)
    elif n < 0:
        out[-1] |= 0x80
    return bytes(out)


def push_data(data: bytes) -> bytes:
    """The minimal push of data (BIP62 / Core's CheckMinimalPush), as tapscript policy requires.

    An empty push is OP_0 and one byte 1..16 or 0x81 is OP_1..OP_16 or OP_1NEGATE: the same stack
    item, one byte shorter. Everything else uses the shortest length prefix.
    """
    n = len(data)
    if n == 0:
        return bytes([OP_0])
    if n == 1 and 1 <= data[0] <= 16:
        return bytes([OP_1 + data[0] - 1])
    if n == 1 and data[0] == 0x81:
        return bytes([OP_1NEGATE])
    if n < OP_PUSHDATA1:
        return bytes([n]) + data
    if n <= 0xFF:
        return bytes([OP_PUSHDATA1, n]) + data
    if n <= 0xFFFF:
        return bytes([OP_PUSHDATA2]) + n.to_bytes(2, "little") + data
    return bytes([OP_PUSHDATA4]) + n.to_bytes(4, "little") + data


def push_int(n: int) -> bytes:
    """The minimal push of a script number: OP_0, OP_1NEGATE, OP_1..OP_16, else its CScriptNum.

    E.g. 2016 -> 02e007, 101010 -> 03928a01, 32 -> 0120. CSV and CLTV operands are pushed this way.
    """
    return push_data(script_num(n))


def p2tr_script(xonly32: bytes) -> bytes:
    """OP_1 <32-byte output key>."""
    if len(xonly32) != 32:
        raise ValueError(f"a taproot output key is 32 bytes, got {len(xonly32)}")
    return segwit_script(1, xonly32)


def segwit_script(witness_version: int, program: bytes) -> bytes:
    """A native segwit output: the version as OP_0..OP_16, then the program pushed (BIP141)."""
    if not 0 <= witness_version <= 16:
        raise ValueError(f"witness versions are 0..16, got {witness_version}")
    if not 2 <= len(program) <= 40:
        raise ValueError(f"witness programs are 2..40 bytes, got {len(program)}")
    version_op = OP_0 if witness_version == 0 else OP_1 + witness_version - 1
    return bytes([version_op, len(program)]) + program


def witness_program(script_pubkey: bytes) -> tuple[int, bytes] | None:
    """(version, program) of a native segwit output, else None (CScript::IsWitnessProgram)."""
    if not 4 <= len(script_pubkey) <= 42 or script_pubkey[1] != len(script_pubkey) - 2:
        return None
    if script_pubkey[0] == OP_0:
        return 0, script_pubkey[2:]
    if OP_1 <= script_pubkey[0] <= OP_16:
        return script_pubkey[0] - OP_1 + 1, script_pubkey[2:]
    return None


def p2pkh_script(pubkey_hash: bytes) -> bytes:
    """OP_DUP OP_HASH160 <20-byte hash> OP_EQUALVERIFY OP_CHECKSIG."""
    if len(pubkey_hash) != 20:
        raise ValueError(f"a P2PKH hash is 20 bytes, got {len(pubkey_hash)}")
    return bytes([OP_DUP, OP_HASH160, 20]) + pubkey_hash + bytes([OP_EQUALVERIFY, OP_CHECKSIG])


def p2sh_script(script_hash: bytes) -> bytes:
    """OP_HASH160 <20-byte hash> OP_EQUAL."""
    if len(script_hash) != 20:
        raise ValueError(f"a P2SH hash is 20 bytes, got {len(script_hash)}")
    return bytes([OP_HASH160, 20]) + script_hash + bytes([OP_EQUAL])
