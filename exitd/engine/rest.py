"""Which exits a cycle decides: the ones whose next state may differ from the one they hold.

An exit whose txs are all confirmed and whose next step is a height (awaiting-delta until its claim's
timelocks are met), or whose exit is over (claimed, canceled), gets the same state from every cycle
until the tip reaches that height or a reorg takes out a block its state names: nothing else in a
snapshot enters its decision (exitd/engine/decisions.py's `advance`). Such an exit rests: no cycle asks
the node about it or decides it until one of those happens, so a cycle costs what changed, not how many
exits there are. Every other exit is awake and decided every cycle: its packages are in flight, its claim
may appear in the mempool, or it carries an error a later cycle may clear. tests/unit/test_rest.py shows
that deciding the awake exits gives every exit the state deciding them all would.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from exitd.engine.states import ExitState, ExitStateKind


@dataclass(frozen=True)
class Rest:
    """Until when an exit rests: `wake`, the height from which it is decided again (None: no height
    wakes it), and `anchor`, the highest block its state names (a reorg above the block below it wakes
    it; None: no reorg does)."""

    wake: int | None
    anchor: int | None


def rest_of(state: ExitState) -> Rest | None:
    """How an exit in `state` rests, or None when it must be decided every cycle."""
    kind = state.kind
    if kind is ExitStateKind.AWAITING_DELTA:
        if state.claimable_height is None or state.confirmed_block is None:
            return None
        return Rest(state.claimable_height, state.confirmed_block.height)
    if kind in (ExitStateKind.CLAIMED, ExitStateKind.VTXO_ALREADY_SPENT) and state.block is not None:
        since = state.claimable_since.height if state.claimable_since is not None else 0
        return Rest(None, max(state.block.height, since))
    if kind is ExitStateKind.CANCELED:
        return Rest(None, None)
    return None


class RestIndex:
    """The exits awake (in the order they woke) and the ones resting, by VTXO id, with the heights that
    wake them in a heap: finding the exits to decide costs the awake ones and the woken ones, never a
    look at every exit (a reorg aside, which looks at every resting one once)."""

    def __init__(self) -> None:
        self.awake: dict[str, None] = {}
        self.resting: dict[str, Rest] = {}
        # (wake height, VTXO id); an entry whose exit no longer rests so is skipped when popped.
        self._wakes: list[tuple[int, str]] = []
        # The txids resting exits still wait on, counted per exit: the chain locator keeps watching
        # them (exitd/chain/locator.py), so that a woken exit finds them where it left them.
        self.kept: dict[str, int] = {}
        self._kept_by: dict[str, Sequence[str]] = {}

    def reset(self, exits: Iterable[tuple[str, Rest | None, Sequence[str]]]) -> None:
        """Start over from (VTXO id, how it rests or None, its txids) of every exit."""
        for held in (self.awake, self.resting, self._wakes, self.kept, self._kept_by):
            held.clear()  # in place: the chain locator holds `kept`
        for vtxo_id, rest, txids in exits:
            if rest is None:
                self.awake[vtxo_id] = None
                continue
            self.resting[vtxo_id] = rest
            if rest.wake is not None:
                self._wakes.append((rest.wake, vtxo_id))
                self._keep(vtxo_id, txids)
        heapq.heapify(self._wakes)

    def wake(self, vtxo_id: str) -> None:
        if self.resting.pop(vtxo_id, None) is not None:
            for txid in self._kept_by.pop(vtxo_id, ()):
                left = self.kept[txid] - 1
                if left:
                    self.kept[txid] = left
                else:
                    del self.kept[txid]
        self.awake[vtxo_id] = None

    def rest(self, vtxo_id: str, rest: Rest, txids: Sequence[str]) -> None:
        self.wake(vtxo_id)
        del self.awake[vtxo_id]
        self.resting[vtxo_id] = rest
        if rest.wake is not None:
            heapq.heappush(self._wakes, (rest.wake, vtxo_id))
            self._keep(vtxo_id, txids)

    def _keep(self, vtxo_id: str, txids: Sequence[str]) -> None:
        self._kept_by[vtxo_id] = txids
        kept = self.kept
        for txid in txids:
            kept[txid] = kept.get(txid, 0) + 1

    def due(self, tip: int) -> list[str]:
        """Wake the exits whose height the tip reached; their ids."""
        woken = []
        while self._wakes and self._wakes[0][0] <= tip:
            height, vtxo_id = heapq.heappop(self._wakes)
            rest = self.resting.get(vtxo_id)
            if rest is not None and rest.wake == height:
                self.wake(vtxo_id)
                woken.append(vtxo_id)
        return woken

    def reorged(self, fork: int) -> list[str]:
        """Wake the exits whose state names a block above `fork`, the highest block a reorg kept."""
        woken = [i for i, rest in self.resting.items() if rest.anchor is not None and rest.anchor > fork]
        for vtxo_id in woken:
            self.wake(vtxo_id)
        return woken
