"""How long the engine's cycles take, counted as Prometheus histograms count (no list kept); and the
settling of the exits out of the garbage collector's sight, which keeps its pauses out of them."""

from __future__ import annotations

import bisect
import gc
from collections.abc import Sequence
from dataclasses import dataclass, field

# Seconds: a cycle of a few exits takes milliseconds, one of thousands a few seconds; past 60 s a block
# interval is at risk.
CYCLE_BOUNDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class DurationTally:
    """Durations counted into the first bound they do not exceed (the last slot: above every bound)."""

    bounds: Sequence[float] = CYCLE_BOUNDS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def add(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, durations at or under it), the last bound +inf: a Prometheus histogram's buckets."""
        result, running = [], 0
        for bound, n in zip([*self.bounds, float("inf")], self.counts, strict=True):
            running += n
            result.append((bound, running))
        return result


@dataclass
class HeapSettler:
    """Moves the exits kept for the daemon's life out of the cyclic collector's sight: collect what is
    garbage now, then freeze every object left (gc.freeze). Full collections then walk only what cycles
    allocate, not the whole book: at a thousand exits one took a tenth of a second, landing inside whichever
    cycle crossed the collector's threshold, between a block and its packages.

    A frozen object is still freed when its last reference goes; only reference cycles that were alive at a
    freeze and die later are never collected (a request in flight at that moment, say). So the book is
    settled when loaded and then only once it has grown by half: a few dozen times on the way to 100,000
    exits, not at every start."""

    settled_at: int = -1  # the book's size at the last settling; -1: never settled

    def settle(self, size: int) -> None:
        gc.collect()
        gc.freeze()
        self.settled_at = size

    def grown(self, size: int) -> None:
        """Settle if the book of `size` exits has grown by half since the last settling."""
        if size > self.settled_at and 2 * size >= 3 * self.settled_at:
            self.settle(size)
