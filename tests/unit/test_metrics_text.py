"""The cycle-duration tally as a Prometheus histogram, read back by a strict parser (and its strictness)."""

import math
from collections.abc import Iterator

import pytest
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from exitd.engine.timing import DurationTally
from tests.support.prometheus import ExpositionError, parse_exposition


def test_the_cycle_tally_counts_as_a_prometheus_histogram() -> None:
    tally = DurationTally((0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 3.0):
        tally.add(seconds)
    assert tally.cumulative() == [(0.1, 2), (1.0, 3), (math.inf, 4)]  # a bound counts what equals it
    assert tally.count == 4 and tally.total == pytest.approx(3.65)


def test_the_exposition_of_a_tally_parses_strictly() -> None:
    tally = DurationTally((0.5,))
    tally.add(0.25)
    family = HistogramMetricFamily(
        "exitd_wait_seconds",
        "Waits.",
        buckets=[("+Inf" if b == math.inf else repr(b), n) for b, n in tally.cumulative()],
        sum_value=tally.total,
    )
    registry = CollectorRegistry(auto_describe=False)

    class One(Collector):
        def collect(self) -> Iterator[Metric]:
            yield family

    registry.register(One())
    families, samples = parse_exposition(generate_latest(registry).decode())
    assert families["exitd_wait_seconds"].type == "histogram"
    assert samples[("exitd_wait_seconds_bucket", (("le", "0.5"),))] == 1
    assert samples[("exitd_wait_seconds_count", ())] == 1 and samples[("exitd_wait_seconds_sum", ())] == 0.25


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("a 1", "newline"),
        ("# TYPE a counter\na -1\n", "below zero"),
        ("# TYPE a gauge\nb 1\n", "outside"),
        ("# TYPE a gauge\na 1\na 2\n", "duplicate"),
        ('# TYPE a gauge\na{x="1"} 1\n# TYPE b gauge\nb 1\n# TYPE a gauge\n', "twice"),
        ('# TYPE a gauge\na{x="\\t"} 1\n', "escape"),
        ("# TYPE a gauge\na one\n", "value"),
        ("# TYPE a nope\n", "TYPE"),
        ("# HELP a x\na 1\n# TYPE a gauge\n", "TYPE"),
    ],
)
def test_the_parser_rejects_malformed_text(text: str, why: str) -> None:
    with pytest.raises(ExpositionError, match=why):
        parse_exposition(text)
