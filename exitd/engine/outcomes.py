"""What a start or a claim did, as the engine tells its caller: a person asking should hear which exits
started, restarted or were skipped and why, and what a claim tx spent and paid, not only that it worked."""

from __future__ import annotations

from dataclasses import dataclass

from exitd.engine.errors import ClaimMissingSignableClause, StartRefused


@dataclass(frozen=True)
class StartReport:
    """`started` holds every exit this start began, `restarted` those of them that had been cancelled;
    `skipped` is (VTXO id, why) for each VTXO asked for that did not start; `refused` those of them that
    admission left out (not worth it or too late, exitd/engine/admission.py)."""

    started: tuple[str, ...]
    restarted: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]
    refused: tuple[StartRefused, ...] = ()


@dataclass(frozen=True)
class ClaimBroadcast:
    """A claim tx exitd signed and broadcast: the exits it spends, the sat they held, and its fee."""

    txid: str
    vtxo_ids: tuple[str, ...]
    amount: int
    fee: int
    # Claimable exits a claim of all left out: their claim cannot be signed here.
    skipped: tuple[ClaimMissingSignableClause, ...] = ()
    # The node's answer when it refused the claim tx for its fee: the exits are claim-in-progress all the
    # same, and a later block reprices the claim (exitd/engine/replacement.py).
    refused: str | None = None
