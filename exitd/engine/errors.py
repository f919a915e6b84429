"""ExitError: one exception class per variant of barkd's schema that exitd can raise, each with its JSON.

Per-exit errors are stored on the exit and reported in `exits[].error` of a progress answer; the same
classes raised from a request handler become HTTP answers through the API's one error table.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ExitError(Exception):
    """Base of the variants; `type` is the kebab-case tag, `fields` the variant's JSON fields."""

    type: ClassVar[str] = "internal-error"

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.fields = fields

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, **self.fields}


class InternalError(ExitError):
    type = "internal-error"

    def __init__(self, error: str) -> None:
        super().__init__(error, error=error)


class DustLimit(ExitError):
    type = "dust-limit"

    def __init__(self, amount: int, dust: int, message: str = "") -> None:
        message = message or f"VTXO of {amount} sat is below the dust limit of {dust} sat"
        super().__init__(message, vtxo=amount, dust=dust)


class InsufficientConfirmedFunds(ExitError):
    type = "insufficient-confirmed-funds"

    def __init__(self, needed: int, available: int) -> None:
        super().__init__(
            f"the on-chain wallet needs {needed} sat of confirmed coins to pay the next CPFP child, "
            f"has {available}; fund it (POST /api/v1/onchain/addresses/next)",
            needed=needed,
            available=available,
        )


class ExitPackageBroadcastFailure(ExitError):
    type = "exit-package-broadcast-failure"

    def __init__(self, txid: str, error: str) -> None:
        super().__init__(f"broadcasting the package of {txid} failed: {error}", txid=txid, error=error)


class ExitPackageFinalizeFailure(ExitError):
    """Building a child was refused for a reason other than funds: the fee budget, most often."""

    type = "exit-package-finalize-failure"

    def __init__(self, error: str) -> None:
        super().__init__(error, error=error)


class FeeBudgetExceeded(ExitPackageFinalizeFailure):
    """The fee budget holds a level's package below its target rate; the same JSON as its base, a class of
    its own so guard mode can tell it apart (the fee-budget-hit alert)."""

    def __init__(self, rate: int, target: int, budget_ratio: float) -> None:
        super().__init__(
            f"fee budget: this level is paid at {rate} sat/kvB instead of the target {target} "
            f"(fees.budget_ratio {budget_ratio}); pass fee_rate to progress to override"
        )
        self.rate = rate
        self.target = target


class TransactionRetrievalFailure(ExitError):
    type = "transaction-retrieval-failure"

    def __init__(self, txid: str, error: str) -> None:
        super().__init__(f"cannot read {txid} from bitcoind: {error}", txid=txid, error=error)


class ClaimMissingInputs(ExitError):
    type = "claim-missing-inputs"

    def __init__(self) -> None:
        super().__init__("no claimable exit to claim")


class ClaimFeeExceedsOutput(ExitError):
    type = "claim-fee-exceeds-output"

    def __init__(self, needed: int, output: int) -> None:
        super().__init__(
            f"claiming needs {needed} sat (fee plus a non-dust output) but the exits hold {output} sat",
            needed=needed,
            output=output,
        )


class ClaimMissingSignableClause(ExitError):
    type = "claim-missing-signable-clause"

    def __init__(self, vtxo: str, why: str) -> None:
        super().__init__(f"cannot sign the claim of {vtxo}: {why}", vtxo=vtxo)


class ClaimSigningError(ExitError):
    type = "claim-signing-error"

    def __init__(self, error: str) -> None:
        super().__init__(error, error=error)


class VtxoNotClaimable(ExitError):
    type = "vtxo-not-claimable"

    def __init__(self, vtxo: str, state: str) -> None:
        super().__init__(f"Unspendable VTXO provided: {vtxo} is {state}, not claimable", vtxo=vtxo)


class InvalidWalletState(ExitError):
    type = "invalid-wallet-state"

    def __init__(self, error: str) -> None:
        super().__init__(error, error=error)


class BlockRetrievalFailure(ExitError):
    type = "block-retrieval-failure"

    def __init__(self, height: int, error: str) -> None:
        super().__init__(f"cannot read block {height}: {error}", height=height, error=error)


# 0.6.0's cancel errors; not ExitError variants of 0.1.4, so they carry no JSON of their own.


class NotExiting(LookupError):
    def __init__(self, vtxo: str) -> None:
        super().__init__(f"VTXO {vtxo} has no exit")
        self.resources = [vtxo]


class CannotCancelExit(ValueError):
    pass
