import pytest

from exitd.ark.bip32 import (
    HARDENED,
    TPRV_VERSION,
    TPUB_VERSION,
    XPRV_VERSION,
    XPUB_VERSION,
    ExtendedKey,
    parse_path,
)

H = HARDENED

# BIP32 test vectors 1 and 2, typed in from the BIP: (path, ext pub, ext prv).
BIP32_VECTOR_1_SEED = "000102030405060708090a0b0c0d0e0f"
BIP32_VECTOR_1 = [
    (
        [],
        "xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD265TMg7usUDFdp6W1EGMcet8",
        "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi",
    ),
    (
        [0 | H],
        "xpub68Gmy5EdvgibQVfPdqkBBCHxA5htiqg55crXYuXoQRKfDBFA1WEjWgP6LHhwBZeNK1VTsfTFUHCdrfp1bgwQ9xv5ski8PX9rL2dZXvgGDnw",
        "xprv9uHRZZhk6KAJC1avXpDAp4MDc3sQKNxDiPvvkX8Br5ngLNv1TxvUxt4cV1rGL5hj6KCesnDYUhd7oWgT11eZG7XnxHrnYeSvkzY7d2bhkJ7",
    ),
    (
        [0 | H, 1],
        "xpub6ASuArnXKPbfEwhqN6e3mwBcDTgzisQN1wXN9BJcM47sSikHjJf3UFHKkNAWbWMiGj7Wf5uMash7SyYq527Hqck2AxYysAA7xmALppuCkwQ",
        "xprv9wTYmMFdV23N2TdNG573QoEsfRrWKQgWeibmLntzniatZvR9BmLnvSxqu53Kw1UmYPxLgboyZQaXwTCg8MSY3H2EU4pWcQDnRnrVA1xe8fs",
    ),
    (
        [0 | H, 1, 2 | H],
        "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5",
        "xprv9z4pot5VBttmtdRTWfWQmoH1taj2axGVzFqSb8C9xaxKymcFzXBDptWmT7FwuEzG3ryjH4ktypQSAewRiNMjANTtpgP4mLTj34bhnZX7UiM",
    ),
    (
        [0 | H, 1, 2 | H, 2],
        "xpub6FHa3pjLCk84BayeJxFW2SP4XRrFd1JYnxeLeU8EqN3vDfZmbqBqaGJAyiLjTAwm6ZLRQUMv1ZACTj37sR62cfN7fe5JnJ7dh8zL4fiyLHV",
        "xprvA2JDeKCSNNZky6uBCviVfJSKyQ1mDYahRjijr5idH2WwLsEd4Hsb2Tyh8RfQMuPh7f7RtyzTtdrbdqqsunu5Mm3wDvUAKRHSC34sJ7in334",
    ),
    (
        [0 | H, 1, 2 | H, 2, 1000000000],
        "xpub6H1LXWLaKsWFhvm6RVpEL9P4KfRZSW7abD2ttkWP3SSQvnyA8FSVqNTEcYFgJS2UaFcxupHiYkro49S8yGasTvXEYBVPamhGW6cFJodrTHy",
        "xprvA41z7zogVVwxVSgdKUHDy1SKmdb533PjDz7J6N6mV6uS3ze1ai8FHa8kmHScGpWmj4WggLyQjgPie1rFSruoUihUZREPSL39UNdE3BBDu76",
    ),
]
BIP32_VECTOR_2_SEED = (
    "fffcf9f6f3f0edeae7e4e1dedbd8d5d2cfccc9c6c3c0bdbab7b4b1aeaba8a5a2"
    "9f9c999693908d8a8784817e7b7875726f6c696663605d5a5754514e4b484542"
)
BIP32_VECTOR_2 = [
    (
        [],
        "xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDzTJY47LJhkJ8UB7WEGuduB",
        "xprv9s21ZrQH143K31xYSDQpPDxsXRTUcvj2iNHm5NUtrGiGG5e2DtALGdso3pGz6ssrdK4PFmM8NSpSBHNqPqm55Qn3LqFtT2emdEXVYsCzC2U",
    ),
    (
        [0],
        "xpub69H7F5d8KSRgmmdJg2KhpAK8SR3DjMwAdkxj3ZuxV27CprR9LgpeyGmXUbC6wb7ERfvrnKZjXoUmmDznezpbZb7ap6r1D3tgFxHmwMkQTPH",
        "xprv9vHkqa6EV4sPZHYqZznhT2NPtPCjKuDKGY38FBWLvgaDx45zo9WQRUT3dKYnjwih2yJD9mkrocEZXo1ex8G81dwSM1fwqWpWkeS3v86pgKt",
    ),
    (
        [0, 2147483647 | H],
        "xpub6ASAVgeehLbnwdqV6UKMHVzgqAG8Gr6riv3Fxxpj8ksbH9ebxaEyBLZ85ySDhKiLDBrQSARLq1uNRts8RuJiHjaDMBU4Zn9h8LZNnBC5y4a",
        "xprv9wSp6B7kry3Vj9m1zSnLvN3xH8RdsPP1Mh7fAaR7aRLcQMKTR2vidYEeEg2mUCTAwCd6vnxVrcjfy2kRgVsFawNzmjuHc2YmYRmagcEPdU9",
    ),
    (
        [0, 2147483647 | H, 1],
        "xpub6DF8uhdarytz3FWdA8TvFSvvAh8dP3283MY7p2V4SeE2wyWmG5mg5EwVvmdMVCQcoNJxGoWaU9DCWh89LojfZ537wTfunKau47EL2dhHKon",
        "xprv9zFnWC6h2cLgpmSA46vutJzBcfJ8yaJGg8cX1e5StJh45BBciYTRXSd25UEPVuesF9yog62tGAQtHjXajPPdbRCHuWS6T8XA2ECKADdw4Ef",
    ),
    (
        [0, 2147483647 | H, 1, 2147483646 | H],
        "xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL",
        "xprvA1RpRA33e1JQ7ifknakTFpgNXPmW2YvmhqLQYMmrj4xJXXWYpDPS3xz7iAxn8L39njGVyuoseXzU6rcxFLJ8HFsTjSyQbLYnMpCqE2VbFWc",
    ),
    (
        [0, 2147483647 | H, 1, 2147483646 | H, 2],
        "xpub6FnCn6nSzZAw5Tw7cgR9bi15UV96gLZhjDstkXXxvCLsUXBGXPdSnLFbdpq8p9HmGsApME5hQTZ3emM2rnY5agb9rXpVGyy3bdW6EEgAtqt",
        "xprvA2nrNbFZABcdryreWet9Ea4LvTJcGsqrMzxHx98MMrotbir7yrKCEXw7nadnHM8Dq38EGfSh6dqA9QWTyefMLEcBYJUuekgW4BYPJcr9E7j",
    ),
]


@pytest.mark.parametrize(
    ("seed", "vector"), [(BIP32_VECTOR_1_SEED, BIP32_VECTOR_1), (BIP32_VECTOR_2_SEED, BIP32_VECTOR_2)]
)
def test_bip32_vectors(seed: str, vector: list[tuple[list[int], str, str]]) -> None:
    master = ExtendedKey.from_seed(bytes.fromhex(seed))
    for path, xpub, xprv in vector:
        key = master.derive(path)
        assert key.to_base58(XPRV_VERSION) == xprv, path
        assert key.neuter().to_base58(XPUB_VERSION) == xpub, path
        assert key.depth == len(path)


@pytest.mark.parametrize(
    ("seed", "vector"), [(BIP32_VECTOR_1_SEED, BIP32_VECTOR_1), (BIP32_VECTOR_2_SEED, BIP32_VECTOR_2)]
)
def test_public_derivation_matches_private(seed: str, vector: list[tuple[list[int], str, str]]) -> None:
    # Every non-hardened step can be taken from the xpub alone, landing on the same xpub.
    master = ExtendedKey.from_seed(bytes.fromhex(seed))
    for path, xpub, _ in vector:
        if path and not path[-1] & HARDENED:
            parent = master.derive(path[:-1]).neuter()
            assert parent.child(path[-1]).to_base58(XPUB_VERSION) == xpub


def test_derive_path_strings() -> None:
    master = ExtendedKey.from_seed(bytes.fromhex(BIP32_VECTOR_1_SEED))
    expected = BIP32_VECTOR_1[-1][2]
    assert master.derive("m/0'/1/2'/2/1000000000").to_base58(XPRV_VERSION) == expected
    assert master.derive("m/0h/1/2H/2/1000000000").to_base58(XPRV_VERSION) == expected
    assert master.derive("0'/1").derive("2'/2/1000000000").to_base58(XPRV_VERSION) == expected
    assert master.derive("m") == master
    assert parse_path("m/86'/0'/0'/0/5") == (True, [86 | H, 0 | H, 0 | H, 0, 5])
    assert parse_path("350h/0h/7") == (False, [350 | H, 0 | H, 7])


def test_derive_rejects() -> None:
    master = ExtendedKey.from_seed(bytes.fromhex(BIP32_VECTOR_1_SEED))
    for bad in ("m/", "m//1", "m/1x", "m/-1", "m/2147483648", "m/1'/n"):
        with pytest.raises(ValueError, match=r"path|index"):
            master.derive(bad)
    with pytest.raises(ValueError, match="master"):
        master.derive("m/1").derive("m/2")
    with pytest.raises(ValueError, match="hardened"):
        master.neuter().derive("m/0'")
    with pytest.raises(ValueError, match="seed"):
        ExtendedKey.from_seed(bytes(15))


def test_fingerprints_and_child_numbers() -> None:
    master = ExtendedKey.from_seed(bytes.fromhex(BIP32_VECTOR_1_SEED))
    # The master key's fingerprint (the hash160 prefix of its public key), from the BIP's vector 1.
    assert master.fingerprint.hex() == "3442193e"
    child = master.derive("m/0'")
    assert child.parent_fingerprint == master.fingerprint
    assert child.child_number == 0 | H
    assert child.neuter().fingerprint == child.fingerprint


def test_serialization_versions() -> None:
    master = ExtendedKey.from_seed(bytes.fromhex(BIP32_VECTOR_1_SEED))
    assert master.to_base58(TPRV_VERSION).startswith("tprv")
    assert master.neuter().to_base58(TPUB_VERSION).startswith("tpub")
    with pytest.raises(ValueError, match="neuter"):
        master.to_base58(XPUB_VERSION)
    with pytest.raises(ValueError, match="no private serialization"):
        master.neuter().to_base58(XPRV_VERSION)
    with pytest.raises(ValueError, match="unknown BIP32 version"):
        master.to_base58(0x12345678)


def test_secret_stays_out_of_repr() -> None:
    master = ExtendedKey.from_seed(bytes.fromhex(BIP32_VECTOR_1_SEED))
    assert master.key.hex() not in repr(master)
    assert "key=" not in repr(master)
