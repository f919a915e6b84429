"""Submitting exit packages and claims, with bitcoind's answers sorted into what the engine acts on."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from bitcoin.core import CTransaction, b2lx

from exitd.chain.rpc import BitcoinRpc, RpcError, RpcVerifyAlreadyInChain


class PackageOutcome(Enum):
    ACCEPTED = "accepted"
    ALREADY_KNOWN = "already-known"
    MISSING_OR_SPENT_INPUTS = "missing-or-spent-inputs"
    REPLACEMENT_FEE_TOO_LOW = "replacement-fee-too-low"
    REJECTED = "rejected"
    # No answer came (the node went away mid-call): the package may or may not be in the mempool.
    NOT_ANSWERED = "not-answered"


@dataclass(frozen=True)
class PackageResult:
    outcome: PackageOutcome
    message: str = ""

    @property
    def in_mempool(self) -> bool:
        return self.outcome in (PackageOutcome.ACCEPTED, PackageOutcome.ALREADY_KNOWN)


_ALREADY_KNOWN = ("txn-already-known", "txn-already-in-mempool", "txn-same-nonwitness-data-in-mempool")


def classify_package_answer(answer: Any) -> PackageResult:
    """`submitpackage`'s answer: success only when package_msg says so; otherwise the first real error of
    the per-tx results decides, ignoring "already known" entries."""
    if not isinstance(answer, dict):
        return PackageResult(PackageOutcome.REJECTED, f"unexpected answer {answer!r}")
    message = str(answer.get("package_msg", ""))
    if message == "success":
        return PackageResult(PackageOutcome.ACCEPTED)
    results = answer.get("tx-results", {}) or {}
    errors = [str(r["error"]) for r in results.values() if isinstance(r, dict) and r.get("error")]
    real = [e for e in errors if not any(k in e for k in _ALREADY_KNOWN)]
    if not real:
        return PackageResult(PackageOutcome.ALREADY_KNOWN, message)
    first = real[0]
    if "missingorspent" in first or "missing-inputs" in first:
        return PackageResult(PackageOutcome.MISSING_OR_SPENT_INPUTS, first)
    if "insufficient fee" in first or "replacement" in first:
        return PackageResult(PackageOutcome.REPLACEMENT_FEE_TOO_LOW, first)
    return PackageResult(PackageOutcome.REJECTED, "; ".join(real))


async def submit_packages(rpc: BitcoinRpc, packages: list[list[bytes]]) -> list[PackageResult]:
    """Every package in one round trip (bitcoind takes them in order, as if sent one by one)."""
    try:
        answers = await rpc.batch(("submitpackage", [[raw.hex() for raw in p]]) for p in packages)
    except RpcError as e:
        return [PackageResult(PackageOutcome.NOT_ANSWERED, e.message) for _ in packages]
    return [
        PackageResult(PackageOutcome.REJECTED, a.message)
        if isinstance(a, RpcError)
        else classify_package_answer(a)
        for a in answers
    ]


async def send_raw_transaction(rpc: BitcoinRpc, raw: bytes) -> str:
    """The txid; a tx already in the chain counts as sent."""
    try:
        return str(await rpc.call("sendrawtransaction", raw.hex()))
    except RpcVerifyAlreadyInChain:
        return str(b2lx(CTransaction.deserialize(raw).GetTxid()))
