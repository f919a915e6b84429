"""How long the engine's cycles take, counted as Prometheus histograms count: per bound, no list kept."""

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


def heap_settled() -> None:
    """The exits just loaded or started are kept for the daemon's life: collect what is garbage now, then
    move every object left out of the cyclic collector's sight (gc.freeze). Its full collections then walk
    only what cycles allocate, not the whole book: at a thousand exits such a collection took a tenth of a
    second, landing inside whichever cycle crossed the collector's threshold, between a block and its
    packages. A frozen object is still freed when its last reference goes; only reference cycles among
    frozen objects would outlive it, and the book holds none it drops."""
    gc.collect()
    gc.freeze()
