"""The Prometheus text exposition exitd writes, read back by a strict parser (and the parser's strictness)."""

import pytest

from exitd.api.prometheus import Metric, MetricType, Sample, counter, gauge, render, summary
from tests.support.prometheus import ExpositionError, parse_exposition


def test_rendered_families_parse_back() -> None:
    text = render(
        [
            counter("exitd_things_total", "Things.\nOn two lines \\ with a backslash.", 3),
            gauge("exitd_level", "A level.", 0.25),
            summary("exitd_wait_seconds", "Waits.", 1.5, 4),
            Metric(
                "exitd_by_label",
                "Labelled.",
                MetricType.GAUGE,
                (Sample(1, (("state", 'a "quoted"\nvalue\\'),)), Sample(2, (("state", "b"),))),
            ),
        ]
    )
    families, samples = parse_exposition(text)
    assert {n: f.type for n, f in families.items()} == {
        "exitd_things_total": "counter",
        "exitd_level": "gauge",
        "exitd_wait_seconds": "summary",
        "exitd_by_label": "gauge",
    }
    assert families["exitd_things_total"].help == "Things.\\nOn two lines \\\\ with a backslash."
    assert samples[("exitd_things_total", ())] == 3
    assert samples[("exitd_level", ())] == 0.25
    assert samples[("exitd_wait_seconds_sum", ())] == 1.5 and samples[("exitd_wait_seconds_count", ())] == 4
    assert samples[("exitd_by_label", (("state", 'a "quoted"\nvalue\\'),))] == 1
    assert "exitd_things_total 3\n" in text  # integers print without a fraction


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
