"""BIP327 (MuSig2) public key aggregation.

Exits never run MuSig2 signing sessions: the cosignatures are already aggregated and stored in the
VTXO. What is needed is KeyAgg, to recompute the internal keys of the outputs that those signatures
spend. bark (through libsecp256k1-zkp) sorts the keys first, so the order in which a VTXO lists its
cosigners does not matter.
"""

import functools
from collections.abc import Sequence

from coincurve import PublicKey

from exitd.ark.hashes import tagged_hash
from exitd.ark.key import SECP256K1_ORDER, is_valid_pubkey


class InvalidPubkey(ValueError):
    """A key given to KeyAgg is not a compressed curve point (BIP327's InvalidContributionError)."""

    def __init__(self, index: int) -> None:
        super().__init__(
            f"public key #{index} given to MuSig2 key aggregation is not a valid compressed point"
        )
        self.index = index


# Aggregates remembered (by the keys as given): the leaves of a tree share their ancestors' cosigners, so
# validating or rebuilding each leaf's chain aggregated the same keys again, level by level.
KEY_AGG_CACHE_SIZE = 4096


def key_sort(pubkeys: Sequence[bytes]) -> list[bytes]:
    """BIP327 KeySort: lexicographic order of the 33-byte encodings."""
    return sorted(pubkeys)


def key_agg(pubkeys: Sequence[bytes]) -> bytes:
    """The aggregate key of a set of cosigners, as bark computes it: KeyAgg(KeySort(pubkeys)).

    Returns the 33-byte compressed aggregate point Q. Ark uses x(Q) as a taproot internal key.
    InvalidPubkey.index refers to the position in the given (unsorted) sequence.
    """
    return _key_agg(tuple(pubkeys))


@functools.lru_cache(maxsize=KEY_AGG_CACHE_SIZE)
def _key_agg(pubkeys: tuple[bytes, ...]) -> bytes:
    _check_pubkeys(pubkeys)
    return key_agg_unsorted(key_sort(pubkeys))


def key_agg_unsorted(pubkeys: Sequence[bytes]) -> bytes:
    """BIP327 KeyAgg over keys in the given order: Q = sum(a_i * P_i), a_i from key_agg_coefficients."""
    if not pubkeys:
        raise ValueError("MuSig2 key aggregation needs at least one public key")
    _check_pubkeys(pubkeys)
    terms = [
        PublicKey(pk).multiply(coefficient.to_bytes(32, "big"))
        for pk, coefficient in zip(pubkeys, key_agg_coefficients(pubkeys), strict=True)
    ]
    try:
        aggregate = PublicKey.combine_keys(terms)
    except ValueError:
        raise ValueError("the aggregate of these public keys is the point at infinity") from None
    return bytes(aggregate.format(compressed=True))


def key_agg_coefficients(pubkeys: Sequence[bytes]) -> list[int]:
    """BIP327 KeyAggCoeff of each key, in the given order.

    Each coefficient a_i = H_KeyAgg_coefficient(L || P_i), where L hashes the whole list, so that no
    cosigner can choose its key as a function of the others' (rogue-key attacks). The "second key"
    (the first one differing from the first key) gets a_i = 1: one scalar multiplication saved,
    no security lost. Duplicate keys are kept and each counted.

    Whoever knows every secret key can sign for Q with sum(a_i * sk_i), the regtest forge's shortcut
    around MuSig2 signing sessions.
    """
    key_list_hash = tagged_hash("KeyAgg list", b"".join(pubkeys))
    second_key = next((pk for pk in pubkeys if pk != pubkeys[0]), None)

    def coefficient(pk: bytes) -> int:
        if pk == second_key:
            return 1
        return int.from_bytes(tagged_hash("KeyAgg coefficient", key_list_hash + pk), "big") % SECP256K1_ORDER

    return [coefficient(pk) for pk in pubkeys]


def _check_pubkeys(pubkeys: Sequence[bytes]) -> None:
    for index, pk in enumerate(pubkeys):
        if not is_valid_pubkey(pk):
            raise InvalidPubkey(index)
