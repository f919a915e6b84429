"""Rebuilding a VTXO's exit chain: the TRUC txs a unilateral exit broadcasts, root first.

bark does not store these txs; it stores just enough to recompute them bit for bit. Recomputing the
last txid and landing on the VTXO's own id is the checksum of the whole genesis.
"""

from __future__ import annotations

from dataclasses import dataclass

from bitcoin.core import (
    COutPoint,
    CScript,
    CTransaction,
    CTxIn,
    CTxInWitness,
    CTxOut,
    CTxWitness,
)
from bitcoin.core.script import CScriptWitness

from exitd.ark.encoding import OutPoint, TxOut, VtxoError
from exitd.ark.key import schnorr_verify
from exitd.ark.script import P2A_SCRIPT
from exitd.ark.vtxo import GenesisItem, Vtxo, VtxoId, decode_vtxo

# TRUC (BIP431) lets a zero-fee parent in with exactly one fee-paying child: the CPFP of the P2A anchor.
EXIT_TX_VERSION = 3


class VtxoValidationError(VtxoError):
    """The VTXO decodes, but its exit chain does not hold together."""


class VtxoIdMismatch(VtxoValidationError):
    """The genesis does not lead to the VTXO's own id: some part of the encoding is wrong."""

    def __init__(self, rebuilt: OutPoint, expected: OutPoint) -> None:
        super().__init__(f"rebuilt exit chain ends at {rebuilt}, but the VTXO id is {expected}")
        self.rebuilt = rebuilt
        self.expected = expected


class ExitTxError(VtxoValidationError):
    """A problem with one exit tx, named by its position in the chain (0 = closest to the anchor)."""

    def __init__(self, tx_index: int, what: str) -> None:
        super().__init__(f"exit tx {tx_index}: {what}")
        self.tx_index = tx_index


class InvalidSignature(ExitTxError):
    pass


class UnfinishedVtxo(ExitTxError):
    """A tx still lacks its signature or unlock preimage, so the exit cannot be broadcast yet."""


@dataclass(frozen=True)
class ExitTx:
    """One tx of the chain, with the output it spends (needed for its sighash and fee)."""

    item: GenesisItem
    tx: CTransaction
    txid: bytes
    prevout: TxOut

    @property
    def output_idx(self) -> int:
        return self.item.output_idx

    @property
    def outpoint(self) -> OutPoint:
        """Where the chain continues: this tx's chain output."""
        return OutPoint(self.txid, self.item.output_idx)

    @property
    def chain_output(self) -> TxOut:
        out = self.tx.vout[self.item.output_idx]
        return TxOut(out.nValue, bytes(out.scriptPubKey))

    @property
    def fee_anchor_index(self) -> int:
        """The P2A output, always last, that a CPFP child spends."""
        return len(self.tx.vout) - 1


@dataclass(frozen=True)
class ExitChain:
    vtxo: Vtxo
    txs: tuple[ExitTx, ...]
    chain_anchor_txout: TxOut

    @property
    def ancestor_ids(self) -> list[VtxoId]:
        """Outpoints of the chain before the VTXO's own: earlier VTXOs this one was built on, or tree
        nodes."""
        return [exit_tx.outpoint for exit_tx in self.txs[:-1]]


def _exit_tx(prev: OutPoint, outputs: list[TxOut], witness: list[bytes]) -> CTransaction:
    txin = CTxIn(COutPoint(prev.txid, prev.vout), CScript(), nSequence=0)
    txouts = [CTxOut(out.value, CScript(out.script_pubkey)) for out in outputs]
    wit = CTxWitness([CTxInWitness(CScriptWitness(witness))])
    return CTransaction([txin], txouts, nLockTime=0, nVersion=EXIT_TX_VERSION, witness=wit)


def rebuild_exit_txs(vtxo: Vtxo) -> tuple[TxOut, tuple[ExitTx, ...]]:
    """The chain anchor output and every exit tx, root first, wherever the genesis leads.

    Txids do not depend on witnesses, so this also tells an unsigned genesis where it ends: the regtest
    forge learns its VTXO ids and sighashes from it before it signs.
    """
    params = (vtxo.server_pubkey, vtxo.exit_delta, vtxo.expiry_height)
    final_spk = vtxo.policy.script_pubkey(*params)
    spks = [item.transition.input_script_pubkey(*params) for item in vtxo.genesis] + [final_spk]
    chain_anchor = TxOut(vtxo.chain_anchor_amount, spks[0])

    txs: list[ExitTx] = []
    prev, prevout = vtxo.anchor_point, chain_anchor
    for item, next_spk in zip(vtxo.genesis, spks[1:], strict=True):
        chain_output = TxOut(prevout.value - item.value_out_of_chain, next_spk)
        siblings = list(item.other_outputs)
        outputs = [
            *siblings[: item.output_idx],
            chain_output,
            *siblings[item.output_idx :],
            TxOut(item.fee_amount, P2A_SCRIPT),
        ]
        tx = _exit_tx(prev, outputs, item.transition.witness(*params))
        exit_tx = ExitTx(item, tx, tx.GetTxid(), prevout)
        txs.append(exit_tx)
        prev, prevout = exit_tx.outpoint, chain_output
    return chain_anchor, tuple(txs)


def build_exit_chain(vtxo: Vtxo) -> ExitChain:
    """Recompute every exit tx and check that the last one creates the VTXO's own output."""
    chain_anchor, txs = rebuild_exit_txs(vtxo)
    end = txs[-1].outpoint if txs else vtxo.anchor_point
    if end != vtxo.point:
        raise VtxoIdMismatch(end, vtxo.point)
    return ExitChain(vtxo, txs, chain_anchor)


def verify_signatures(chain: ExitChain) -> int:
    """Check every stored signature (BIP340 over its BIP341 sighash); return how many were checked.

    Missing signatures are not an error here; `Vtxo.is_unfinished` and `validate_vtxo` deal with those.
    """
    vtxo = chain.vtxo
    checked = 0
    for i, exit_tx in enumerate(chain.txs):
        transition = exit_tx.item.transition
        if transition.signature is None:
            continue
        msg, key = transition.sighash_and_key(
            exit_tx.tx, exit_tx.prevout, vtxo.server_pubkey, vtxo.exit_delta, vtxo.expiry_height
        )
        if not schnorr_verify(key, msg, transition.signature):
            raise InvalidSignature(i, f"{transition.kind} signature does not verify")
        checked += 1
    return checked


def validate_vtxo(
    data: bytes, *, allow_server_policy: bool = False, allow_unfinished: bool = False
) -> tuple[Vtxo, ExitChain]:
    """Everything that can be checked without a chain: decoding, the id checksum, every signature, and
    (unless allowed) that the exit can actually be broadcast. The chain anchor is for the caller to find
    on chain and compare with `ExitChain.chain_anchor_txout`."""
    vtxo = decode_vtxo(data, allow_server_policy=allow_server_policy)
    chain = build_exit_chain(vtxo)
    verify_signatures(chain)
    if not allow_unfinished:
        for i, exit_tx in enumerate(chain.txs):
            if not exit_tx.item.transition.is_complete:
                raise UnfinishedVtxo(i, f"{exit_tx.item.transition.kind} lacks its signature or preimage")
    return vtxo, chain
