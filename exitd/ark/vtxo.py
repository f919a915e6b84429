"""bark's VTXO: the full encoding (versions 1 and 2) and what can be read off it without building txs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Self

from exitd.ark.encoding import (
    MAX_MONEY,
    ByteReader,
    InvalidStructure,
    OutOfRange,
    OutPoint,
    TxOut,
    UnsupportedVersion,
    ser_compact_size,
    ser_u8,
    ser_u16,
    ser_u32,
    ser_u64,
)
from exitd.ark.policy import ClaimClause, Policy, UserPolicy, decode_policy
from exitd.ark.transition import Transition, decode_transition

# Version 1 predates the per-item fee amount (it is then 0); version 2 is what bark writes today.
VTXO_NO_FEE_AMOUNT_VERSION = 1
VTXO_ENCODING_VERSION = 2

# Real exit chains are a handful of txs deep (the server caps it); this only bounds hostile input.
MAX_GENESIS_ITEMS = 10_000

# bark's VtxoId is exactly the outpoint of the VTXO's own output.
VtxoId = OutPoint


@dataclass(frozen=True)
class GenesisItem:
    """One exit tx: how it spends the previous chain output, and the outputs it creates besides the next
    chain output and its P2A fee anchor."""

    transition: Transition
    output_idx: int
    other_outputs: tuple[TxOut, ...]
    fee_amount: int

    @property
    def nb_outputs(self) -> int:
        """Outputs other than the fee anchor, the chain output included."""
        return len(self.other_outputs) + 1

    @property
    def value_out_of_chain(self) -> int:
        """What this tx takes from the chain amount: sibling outputs plus the fee anchor."""
        return self.fee_amount + sum(out.value for out in self.other_outputs)

    def encode(self) -> bytes:
        return (
            self.transition.encode()
            + ser_u8(self.nb_outputs)
            + ser_u8(self.output_idx)
            + b"".join(out.encode() for out in self.other_outputs)
            + ser_u64(self.fee_amount)
        )

    @classmethod
    def decode(cls, r: ByteReader, version: int) -> Self:
        transition = decode_transition(r)
        start = r.offset
        nb_outputs = r.u8("nb_outputs")
        if nb_outputs == 0:
            raise InvalidStructure(start, "genesis item with zero outputs")
        start = r.offset
        output_idx = r.u8("output_idx")
        if output_idx >= nb_outputs:
            raise OutOfRange(start, f"output_idx {output_idx} is not below nb_outputs {nb_outputs}")
        other_outputs = tuple(TxOut.decode(r, f"sibling output #{i}") for i in range(nb_outputs - 1))
        fee_amount = r.amount("fee_amount") if version >= VTXO_ENCODING_VERSION else 0
        return cls(transition, output_idx, other_outputs, fee_amount)


@dataclass(frozen=True)
class Vtxo:
    """A VTXO with its whole genesis. `version` is what it was read as; it is left out of equality because
    a v1 VTXO and its v2 re-encoding are the same VTXO."""

    amount: int
    expiry_height: int
    server_pubkey: bytes
    exit_delta: int
    anchor_point: OutPoint
    genesis: tuple[GenesisItem, ...]
    policy: Policy
    point: OutPoint
    version: int = field(default=VTXO_ENCODING_VERSION, compare=False)

    @property
    def id(self) -> VtxoId:
        return self.point

    @property
    def exit_depth(self) -> int:
        """How many txs a unilateral exit must confirm, one after the other."""
        return len(self.genesis)

    @property
    def chain_anchor_amount(self) -> int:
        """Value of the on-chain output the exit chain starts from."""
        return self.amount + sum(item.value_out_of_chain for item in self.genesis)

    @property
    def claim_clause(self) -> ClaimClause:
        """The user's clause that claims this VTXO's output once its exit has confirmed; only a VTXO of a
        user policy has one (every VTXO exitd imports does)."""
        if not isinstance(self.policy, UserPolicy):
            raise ValueError(f"VTXO {self.id} has a {self.policy.kind} policy: no clause of the user's")
        return self.policy.user_claim_clause(self.server_pubkey, self.exit_delta, self.expiry_height)

    @property
    def is_unfinished(self) -> bool:
        """Some exit tx cannot be signed yet: typically an hArk leaf still waiting for its preimage."""
        return not all(item.transition.is_complete for item in self.genesis)

    def encode(self) -> bytes:
        """Always the current encoding version, as bark writes it."""
        return (
            ser_u16(VTXO_ENCODING_VERSION)
            + ser_u64(self.amount)
            + ser_u32(self.expiry_height)
            + self.server_pubkey
            + ser_u16(self.exit_delta)
            + self.anchor_point.encode()
            + ser_compact_size(len(self.genesis))
            + b"".join(item.encode() for item in self.genesis)
            + self.policy.encode()
            + self.point.encode()
        )


def decode_vtxo(data: bytes, *, allow_server_policy: bool = False) -> Vtxo:
    """Decode a full VTXO (versions 1 and 2).

    A full VTXO has a genesis exactly when its point differs from its anchor point; a "bare" encoding
    (no genesis, point elsewhere) is refused, since it cannot be exited. Only user policies are accepted
    unless `allow_server_policy`.
    """
    r = ByteReader(data)
    version = r.u16("version")
    if version not in (VTXO_NO_FEE_AMOUNT_VERSION, VTXO_ENCODING_VERSION):
        raise UnsupportedVersion(0, f"unsupported VTXO encoding version {version}")
    amount = r.amount("amount")
    expiry_height = r.block_height("expiry_height")
    server_pubkey = r.pubkey("server pubkey")
    exit_delta = r.block_delta("exit_delta")
    anchor_point = OutPoint.decode(r, "anchor point")
    genesis_start = r.offset
    n_items = r.count("genesis item", MAX_GENESIS_ITEMS)
    genesis = tuple(GenesisItem.decode(r, version) for _ in range(n_items))
    policy = decode_policy(r, allow_server_policy=allow_server_policy)
    point = OutPoint.decode(r, "point")
    r.finish()

    if point == anchor_point and genesis:
        raise InvalidStructure(genesis_start, "VTXO at its anchor point must have an empty genesis")
    if point != anchor_point and not genesis:
        raise InvalidStructure(genesis_start, "bare VTXO (empty genesis) where a full VTXO was expected")
    vtxo = Vtxo(
        amount, expiry_height, server_pubkey, exit_delta, anchor_point, genesis, policy, point, version
    )
    if vtxo.chain_anchor_amount > MAX_MONEY:
        raise OutOfRange(genesis_start, "genesis outputs add up to more than the 21M BTC money supply")
    return vtxo
