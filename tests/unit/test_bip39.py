import re

import pytest

from exitd.ark.bip32 import XPRV_VERSION, XPUB_VERSION, ExtendedKey
from exitd.ark.bip39 import InvalidMnemonic, generate_mnemonic, mnemonic_to_seed, validate_mnemonic
from exitd.ark.key import xonly
from exitd.ark.taproot import taproot_from_leaves
from tests.support.wallet import ABANDON_ABOUT

# BIP39 English vectors (trezor/python-mnemonic vectors.json), passphrase "TREZOR":
# (mnemonic, seed, BIP32 master xprv).
BIP39_TREZOR_VECTORS = [
    (
        ABANDON_ABOUT,
        "c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04",
        "xprv9s21ZrQH143K3h3fDYiay8mocZ3afhfULfb5GX8kCBdno77K4HiA15Tg23wpbeF1pLfs1c5SPmYHrEpTuuRhxMwvKDwqdKiGJS9XFKzUsAF",
    ),
    (
        "letter advice cage absurd amount doctor acoustic avoid letter advice cage above",
        "d71de856f81a8acc65e6fc851a38d4d7ec216fd0796d0a6827a3ad6ed5511a30fa280f12eb2e47ed2ac03b5c462a0358d18d69fe4f985ec81778c1b370b652a8",
        None,
    ),
    (
        " ".join(["zoo"] * 23 + ["vote"]),
        "dd48c104698c30cfe2b6142103248622fb7bb0ff692eebb00089b32d22484e1613912f0a5b694407be899ffd31ed3992c456cdf60f5d4564b8ba3f05a69890ad",
        None,
    ),
]


@pytest.mark.parametrize(("words", "seed", "xprv"), BIP39_TREZOR_VECTORS)
def test_bip39_trezor_vectors(words: str, seed: str, xprv: str | None) -> None:
    validate_mnemonic(words)
    assert mnemonic_to_seed(words, "TREZOR").hex() == seed
    if xprv is not None:
        assert ExtendedKey.from_seed(bytes.fromhex(seed)).to_base58(XPRV_VERSION) == xprv


def test_bip86_vector() -> None:
    """BIP86's test vector: the wallet bark and exitd derive from the same mnemonic (empty passphrase)."""
    master = ExtendedKey.from_seed(mnemonic_to_seed(ABANDON_ABOUT))
    assert master.to_base58(XPRV_VERSION) == (
        "xprv9s21ZrQH143K3GJpoapnV8SFfukcVBSfeCficPSGfubmSFDxo1kuHnLisriDvSnRRuL2Qrg5ggqHKNVpxR86QEC8w35uxmGoggxtQTPvfUu"
    )
    account = master.derive("m/86'/0'/0'")
    assert account.neuter().to_base58(XPUB_VERSION) == (
        "xpub6BgBgsespWvERF3LHQu6CnqdvfEvtMcQjYrcRzx53QJjSxarj2afYWcLteoGVky7D3UKDP9QyrLprQ3VCECoY49yfdDEHGCtMMj92pReUsQ"
    )
    expected = [
        (
            "0/0",
            "cc8a4bc64d897bddc5fbc2f670f7a8ba0b386779106cf1223c6fc5d7cd6fc115",
            "a60869f0dbcf1dc659c9cecbaf8050135ea9e8cdc487053f1dc6880949dc684c",
        ),
        (
            "0/1",
            "83dfe85a3151d2517290da461fe2815591ef69f2b18a2ce63f01697a8b313145",
            "a82f29944d65b86ae6b5e5cc75e294ead6c59391a1edc5e016e3498c67fc7bbb",
        ),
        (
            "1/0",
            "399f1b2f4393f29a18c937859c5dd8a77350103157eb880f02e8c08214277cef",
            "882d74e5d0572d5a816cef0041a96b6c1de832f6f9676d9605c44d5e9a97d3dc",
        ),
    ]
    for path, internal_key, output_key in expected:
        key = account.derive(path)
        assert xonly(key.pubkey).hex() == internal_key
        assert taproot_from_leaves(xonly(key.pubkey), []).output_key.hex() == output_key
        # The watch-only side reaches the same keys from the account xpub.
        assert account.neuter().derive(path).pubkey == key.pubkey
    first = master.derive("m/86'/0'/0'/0/0")
    assert first.to_base58(XPRV_VERSION) == (
        "xprvA449goEeU9okwCzzZaxiy475EQGQzBkc65su82nXEvcwzfSskb2hAt2WymrjyRL6kpbVTGL3cKtp9herYXSjjQ1j4stsXXiRF7kXkCacK3T"
    )


def test_generate_mnemonic() -> None:
    for strength, count in ((128, 12), (160, 15), (192, 18), (224, 21), (256, 24)):
        words = generate_mnemonic(strength)
        assert len(words.split()) == count
        validate_mnemonic(words)
    assert generate_mnemonic() != generate_mnemonic()
    with pytest.raises(ValueError, match="strength"):
        generate_mnemonic(129)


def test_whitespace_is_normalized_like_bark() -> None:
    sloppy = "  " + ABANDON_ABOUT.replace(" ", "\n", 3).replace(" ", "  ", 2) + "\n"
    assert mnemonic_to_seed(sloppy) == mnemonic_to_seed(ABANDON_ABOUT)


@pytest.mark.parametrize(
    ("words", "reason"),
    [
        ("", "has 0"),
        ("abandon " * 11, "has 11"),
        (ABANDON_ABOUT + " abandon", "has 13"),
        (ABANDON_ABOUT.replace("about", "aboot"), "word 12 is not in the English BIP39 wordlist"),
        (ABANDON_ABOUT.replace("about", "About"), "(words are lowercase)"),
        ("about " + "abandon " * 11, "checksum"),
        (ABANDON_ABOUT.replace("about", "abandon"), "checksum"),
    ],
)
def test_invalid_mnemonics_say_why_without_the_words(words: str, reason: str) -> None:
    with pytest.raises(InvalidMnemonic, match=re.escape(reason)) as excinfo:
        validate_mnemonic(words)
    message = str(excinfo.value)
    for word in {"abandon", "about", "aboot", "About"}:
        assert word not in message
    with pytest.raises(InvalidMnemonic):
        mnemonic_to_seed(words)
