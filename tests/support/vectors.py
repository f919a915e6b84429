"""The test vectors in tests/vectors (BIP340, BIP341, bark's VTXOs, barkd's OpenAPI documents), loaded
for every test that needs them; a clone runs every test with nothing beside it.

bark's VTXO vectors come in two encoding versions of the same flows: version 2 with the values an
independent implementation derived, version 1 (bark's VTXO_NO_FEE_AMOUNT_VERSION_HEXES).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bitcoin.core import CTransaction

from exitd.ark.encoding import TxOut
from exitd.ark.vtxo import Vtxo

VECTORS_DIR = Path(__file__).resolve().parents[1] / "vectors"


def bip340_vectors() -> list[dict[str, str]]:
    """BIP340's test-vectors.csv: one dict per row, keyed by its header."""
    with (VECTORS_DIR / "bip340_test_vectors.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def bip341_wallet_vectors() -> Any:
    """BIP341's wallet-test-vectors.json: scriptPubKey, keyPathSpending."""
    return json.loads((VECTORS_DIR / "bip341_wallet_vectors.json").read_text())


def barkd_openapi_path(version: str) -> Path:
    """barkd's OpenAPI document of REST API `version` (0.1.4 or 0.6.0)."""
    return VECTORS_DIR / f"barkd-openapi-{version}.json"


def barkd_openapi(version: str) -> Any:
    return json.loads(barkd_openapi_path(version).read_text())


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
    reference = json.loads((VECTORS_DIR / "vtxo-vectors-v2.json").read_text())
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
    v1 = json.loads((VECTORS_DIR / "vtxo-vectors-v1.json").read_text())
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


def exits_0005() -> Any:
    """Exit states and errors as exitd wrote them to the exits table up to schema revision 0005 (barkd
    0.1.4's wire JSON), each a JSON text as stored: `states` (every kind and sub-state) and `errors`."""
    return json.loads((VECTORS_DIR / "exits-0005.json").read_text())


def replace_item(vtxo: Vtxo, index: int, **changes: object) -> Vtxo:
    """`vtxo` with fields of its genesis item `index` changed: a VTXO bark would not write, to refuse."""
    genesis = list(vtxo.genesis)
    genesis[index] = replace(genesis[index], **changes)  # type: ignore[arg-type]
    return replace(vtxo, genesis=tuple(genesis))


def replace_transition(vtxo: Vtxo, index: int, **changes: object) -> Vtxo:
    """`vtxo` with fields of the transition of its genesis item `index` changed."""
    return replace_item(vtxo, index, transition=replace(vtxo.genesis[index].transition, **changes))  # type: ignore[type-var]
