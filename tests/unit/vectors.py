"""bark's VTXO test vectors, loaded once for every test that needs them.

Version 2 comes from the shared reference (with the values an independent implementation derived);
version 1 (bark's VTXO_NO_FEE_AMOUNT_VERSION_HEXES, same flows) is kept beside the tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitcoin.core import CTransaction

from exitd.ark.encoding import TxOut

REFERENCE_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "reference"
V1_VECTORS_JSON = Path(__file__).resolve().parent / "data" / "vtxo-vectors-v1.json"


@dataclass(frozen=True)
class VtxoVector:
    name: str
    version: int
    data: bytes
    anchor_tx: CTransaction
    exit_depth: int
    # The reference's "derived_not_asserted_by_rust" section (v2 only; empty for v1).
    derived: dict[str, Any]

    @property
    def anchor_txout(self) -> TxOut:
        """Bark's anchor txs have the chain anchor as their only output."""
        out = self.anchor_tx.vout[0]
        return TxOut(out.nValue, bytes(out.scriptPubKey))

    def __str__(self) -> str:
        return f"v{self.version}-{self.name}"


def _tx(hex_tx: str) -> CTransaction:
    return CTransaction.deserialize(bytes.fromhex(hex_tx))


def _load() -> tuple[dict[str, Any], list[VtxoVector], list[VtxoVector]]:
    reference = json.loads((REFERENCE_DIR / "vtxo-vectors.json").read_text())
    v2 = reference["sets"]["v2"]
    v2_vectors = [
        VtxoVector(
            name,
            2,
            bytes.fromhex(entry["hex"]),
            _tx(v2[entry["chain_anchor_tx"]]["hex"]),
            entry["asserted_by_rust_tests"].get(
                "exit_depth", entry["derived_not_asserted_by_rust"]["exit_depth"]
            ),
            entry["derived_not_asserted_by_rust"],
        )
        for name, entry in v2["vtxos"].items()
    ]
    v1 = json.loads(V1_VECTORS_JSON.read_text())
    v1_vectors = [
        VtxoVector(
            name, 1, bytes.fromhex(entry["hex"]), _tx(v1[entry["chain_anchor_tx"]]), entry["exit_depth"], {}
        )
        for name, entry in v1["vtxos"].items()
    ]
    return reference["generator_inputs"], v2_vectors, v1_vectors


GENERATOR_INPUTS, V2_VECTORS, V1_VECTORS = _load()
ALL_VECTORS = V2_VECTORS + V1_VECTORS


def vector(name: str, version: int = 2) -> VtxoVector:
    return next(v for v in ALL_VECTORS if v.name == name and v.version == version)
