"""ExitError: one exception class per variant of barkd's ExitError that exitd can raise.

Per-exit errors are kept on the exit (and in the store) and reported in `exits[].error` of a progress
answer; the same classes raised from a request handler become HTTP answers. Both their JSON and their
HTTP status are decided in exitd/api (shapes.py and errors.py), each in one table.
"""

from __future__ import annotations

from typing import Any


class ExitError(Exception):
    """Base of the variants; `fields` is the variant's data, named as in barkd's ExitError."""

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.fields = fields


class InternalError(ExitError):
    def __init__(self, error: str) -> None:
        super().__init__(error, error=error)


class DustLimit(ExitError):
    def __init__(self, vtxo_id: str, amount: int, dust: int, message: str = "") -> None:
        message = message or f"VTXO {vtxo_id} of {amount} sat is below the dust limit of {dust} sat"
        super().__init__(message, vtxo=amount, dust=dust)
        self.vtxo_id = vtxo_id


class InsufficientConfirmedFunds(ExitError):
    def __init__(self, needed: int, available: int) -> None:
        super().__init__(
            f"the on-chain wallet needs {needed} sat of confirmed coins to pay the next CPFP child, "
            f"has {available}; fund it (POST /api/v1/onchain/addresses/next)",
            needed=needed,
            available=available,
        )


class ExitPackageBroadcastFailure(ExitError):
    def __init__(self, txid: str, error: str) -> None:
        super().__init__(f"broadcasting the package of {txid} failed: {error}", txid=txid, error=error)


class ExitPackageFinalizeFailure(ExitError):
    """Building a child was refused for a reason other than funds: the fee budget, most often."""

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
    def __init__(self, txid: str, error: str) -> None:
        super().__init__(f"cannot read {txid} from bitcoind: {error}", txid=txid, error=error)


class ClaimMissingInputs(ExitError):
    def __init__(self) -> None:
        super().__init__("no claimable exit to claim")


class ClaimHeld(ExitError):
    """Why the engine's automatic claims leave a claimable exit alone. Kept on the exit, and in the store
    across restarts (exitd/engine/records.py), since no cycle derives it again; a claim of the exit that
    is broadcast clears it. Each variant's fields are its constructor's arguments."""


class ClaimFeeExceedsOutput(ClaimHeld):
    """At `rate` the claim's fee leaves no non-dust output. `fitting_rate`: the highest rate that still
    leaves one (below `floor`, the node's relay floor now: no rate the node relays can claim it alone)."""

    def __init__(self, needed: int, output: int, rate: int, fitting_rate: int, floor: int) -> None:
        if fitting_rate >= floor:
            advice = f"a fee_rate of at most {fitting_rate} sat/kvB claims it (the node's floor is {floor})"
        else:
            advice = (
                f"no rate the node relays now (its floor is {floor} sat/kvB) leaves a non-dust output: "
                "claim it together with other exits, or once the floor is lower"
            )
        super().__init__(
            f"at {rate} sat/kvB claiming needs {needed} sat (its fee plus a non-dust output) but the exits "
            f"hold {output} sat; {advice}",
            needed=needed,
            output=output,
            rate=rate,
            fitting_rate=fitting_rate,
            floor=floor,
        )
        self.rate = rate
        self.fitting_rate = fitting_rate


class ClaimMarketUnknown(ClaimHeld):
    """Nobody can price the claim now: bitcoind has no fee estimate for its target and the mempool holds
    more than the next block (so the relay floor is not the market). barkd has no variant for it: its
    JSON is an internal-error whose `error` is the message."""

    def __init__(self, target: int, next_block: int | None) -> None:
        rate = "" if next_block is None else f" (the next block takes {next_block} sat/kvB)"
        super().__init__(
            f"no fee market to price the claim: bitcoind has no fee estimate for {target} blocks yet and its "
            f"mempool holds more than its next block{rate}; the claim waits until bitcoind has an estimate "
            "or the backlog is mined (a claim request with an explicit fee_rate claims it now)",
            target=target,
            next_block=next_block,
        )


class ClaimMissingSignableClause(ExitError):
    def __init__(self, vtxo: str, why: str) -> None:
        super().__init__(f"cannot sign the claim of {vtxo}: {why}", vtxo=vtxo)


class ClaimSigningError(ExitError):
    def __init__(self, error: str) -> None:
        super().__init__(error, error=error)


class VtxoNotClaimable(ExitError):
    def __init__(self, vtxo: str, state: str) -> None:
        super().__init__(f"Unspendable VTXO provided: {vtxo} is {state}, not claimable", vtxo=vtxo)


class VtxoAlreadySpent(ExitError):
    """barkd 0.6.0's variant for a VTXO that is no longer the user's to exit."""

    def __init__(self, vtxo: str, why: str, **conflict: str | int) -> None:
        """`conflict` (a conflicted exit): `spent_by`, the tx that spent `spent_input`, mined in block
        `spent_at_height`."""
        super().__init__(f"VTXO {vtxo} is spent ({why}); exitd does not exit it", vtxo=vtxo, **conflict)


class InvalidWalletState(ExitError):
    def __init__(self, error: str) -> None:
        super().__init__(error, error=error)


class BlockRetrievalFailure(ExitError):
    def __init__(self, height: int, error: str) -> None:
        super().__init__(f"cannot read block {height}: {error}", height=height, error=error)


# Variants barkd 0.6.0 added with its cancel endpoint.


class NotExiting(ExitError):
    def __init__(self, vtxo: str) -> None:
        super().__init__(f"VTXO {vtxo} has no exit", vtxo=vtxo)
        self.resources = [vtxo]


class CannotCancelExit(ExitError):
    def __init__(self, vtxo: str, state: str, why: str) -> None:
        super().__init__(f"cannot cancel the exit of {vtxo}: {why}", vtxo=vtxo, state=state)


# A start refused before any fee is spent (exitd/engine/admission.py); not barkd variants: no JSON of their
# own, a 400 whose message carries the figures. A user start may be forced past them.


class StartRefused(ValueError):
    def __init__(self, vtxo_id: str, reason: str, message: str) -> None:
        super().__init__(f'{message}; pass "force": true to start it anyway')
        self.vtxo_id = vtxo_id
        self.reason = reason


class WalletCannotFund(ValueError):
    def __init__(self, needed: int, available: int, address: str) -> None:
        super().__init__(
            f"the on-chain wallet has {available} sat of confirmed coins but the first level of these exits "
            f"needs {needed} sat of CPFP fees: send at least {needed - available} sat to {address} and wait "
            'for a confirmation, or pass "force": true to start anyway'
        )
        self.needed = needed
        self.available = available
        self.address = address
