"""BIP341 taproot outputs: script trees, the output-key tweak and control blocks.

A tree is given as nested pairs, so its shape is explicit: a leaf is a TapLeaf (or the bytes of a
tapscript), a branch is a 2-tuple of subtrees. Branch hashes sort their children, so the order
inside a pair changes no hash, only the order of TaprootInfo.leaves.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from bitcoin.core.serialize import BytesSerializer

from exitd.ark.hashes import tagged_hash
from exitd.ark.key import tweak_xonly
from exitd.ark.script import p2tr_script

TAPROOT_LEAF_MASK = 0xFE
TAPROOT_LEAF_TAPSCRIPT = 0xC0
TAPROOT_CONTROL_MAX_NODE_COUNT = 128


def tap_leaf_hash(script: bytes, leaf_version: int = TAPROOT_LEAF_TAPSCRIPT) -> bytes:
    """H_TapLeaf(leaf_version || compact_size(len(script)) || script)."""
    return tagged_hash("TapLeaf", bytes([leaf_version]) + BytesSerializer.serialize(script))


def tap_branch_hash(a: bytes, b: bytes) -> bytes:
    """H_TapBranch of two child hashes in lexicographic order.

    Sorting lets a control block carry only sibling hashes, without left/right bits.
    """
    return tagged_hash("TapBranch", min(a, b) + max(a, b))


def tap_tweak_hash(internal_xonly: bytes, merkle_root: bytes | None) -> bytes:
    """H_TapTweak(P || root); with no script tree, H_TapTweak(P), which commits to "no scripts"."""
    return tagged_hash("TapTweak", internal_xonly + (merkle_root or b""))


@dataclass(frozen=True)
class TapLeaf:
    script: bytes
    leaf_version: int = TAPROOT_LEAF_TAPSCRIPT

    def __post_init__(self) -> None:
        if self.leaf_version & TAPROOT_LEAF_MASK != self.leaf_version:
            raise ValueError(
                f"a leaf version is even (its low bit is the parity), got {self.leaf_version:#x}"
            )

    @property
    def leaf_hash(self) -> bytes:
        return tap_leaf_hash(self.script, self.leaf_version)


TapTree = TapLeaf | bytes | tuple["TapTree", "TapTree"]


@dataclass(frozen=True)
class TaprootInfo:
    """Everything needed to pay to a taproot output and to spend it by key or by script.

    leaves holds each leaf with its merkle path: the sibling hashes from the leaf up to the root.
    """

    internal_key: bytes
    merkle_root: bytes | None
    tweak: bytes
    output_key: bytes
    output_parity: int
    leaves: tuple[tuple[TapLeaf, tuple[bytes, ...]], ...]

    @property
    def script_pubkey(self) -> bytes:
        return p2tr_script(self.output_key)

    def control_block(self, leaf_script: bytes, leaf_version: int = TAPROOT_LEAF_TAPSCRIPT) -> bytes:
        """(leaf_version | parity of Q) || internal key || merkle path: the last witness item of a
        script-path spend, from which the verifier recomputes Q."""
        for leaf, path in self.leaves:
            if leaf.script == leaf_script and leaf.leaf_version == leaf_version:
                return bytes([leaf_version | self.output_parity]) + self.internal_key + b"".join(path)
        raise ValueError("this taproot output has no such leaf")


def taproot_from_tree(internal_xonly: bytes, tree: TapTree | None) -> TaprootInfo:
    """Q = P + H_TapTweak(P || root)*G for internal key P and an optional script tree."""
    merkle_root: bytes | None = None
    leaves: list[tuple[TapLeaf, list[bytes]]] = []
    if tree is not None:
        merkle_root, leaves = _walk(tree)
    tweak = tap_tweak_hash(internal_xonly, merkle_root)
    output_key, parity = tweak_xonly(internal_xonly, tweak)
    return TaprootInfo(
        internal_key=internal_xonly,
        merkle_root=merkle_root,
        tweak=tweak,
        output_key=output_key,
        output_parity=parity,
        leaves=tuple((leaf, tuple(path)) for leaf, path in leaves),
    )


def taproot_from_leaves(internal_xonly: bytes, leaves: Sequence[bytes]) -> TaprootInfo:
    """A tree of 0, 1 or 2 tapscript leaves, the only shapes Ark policies use: none, a single leaf
    as the root, or two leaves at depth 1. Deeper trees have more than one possible shape, so they
    must be spelled out with taproot_from_tree."""
    if len(leaves) == 0:
        return taproot_from_tree(internal_xonly, None)
    if len(leaves) == 1:
        return taproot_from_tree(internal_xonly, leaves[0])
    if len(leaves) == 2:
        return taproot_from_tree(internal_xonly, (leaves[0], leaves[1]))
    raise ValueError(f"taproot_from_leaves takes 0, 1 or 2 leaves, got {len(leaves)}; use taproot_from_tree")


def _walk(tree: TapTree, depth: int = 0) -> tuple[bytes, list[tuple[TapLeaf, list[bytes]]]]:
    """The hash of a subtree and its leaves with their paths, each path from the leaf upward."""
    if depth > TAPROOT_CONTROL_MAX_NODE_COUNT:
        raise ValueError(f"taproot trees are at most {TAPROOT_CONTROL_MAX_NODE_COUNT} levels deep")
    if isinstance(tree, bytes):
        tree = TapLeaf(tree)
    if isinstance(tree, TapLeaf):
        return tree.leaf_hash, [(tree, [])]
    left_hash, left_leaves = _walk(tree[0], depth + 1)
    right_hash, right_leaves = _walk(tree[1], depth + 1)
    for _, path in left_leaves:
        path.append(right_hash)
    for _, path in right_leaves:
        path.append(left_hash)
    return tap_branch_hash(left_hash, right_hash), left_leaves + right_leaves
