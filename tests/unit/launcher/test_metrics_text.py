"""The Prometheus text writer: escaping, number forms, cumulative histogram buckets."""

import math

from services.launcher.metrics_text import Exposition, Histogram, label_value, number


def test_label_values_escape_backslash_quote_and_line_feed():
    assert label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    out = Exposition()
    out.family("x_total", "counter", "Help with \\ and\na line.", [((("tool", 'say "hi"\n'),), 3)])
    assert out.text() == (
        "# HELP x_total Help with \\\\ and\\na line.\n"
        "# TYPE x_total counter\n"
        'x_total{tool="say \\"hi\\"\\n"} 3\n'
    )


def test_numbers_are_written_as_prometheus_reads_them():
    assert [number(v) for v in (3, 2.0, 0.25, math.inf, -math.inf)] == [
        "3",
        "2",
        "0.25",
        "+Inf",
        "-Inf",
    ]
    assert number(math.nan) == "NaN"


def test_a_histogram_counts_cumulatively_up_to_inf_with_sum_and_count():
    histogram = Histogram([1, 0.5, 5])  # bounds are sorted
    for value in (0.1, 0.5, 0.7, 3, 9):
        histogram.observe(value)
    out = Exposition()
    out.histograms("t_seconds", "Turns.", [((("outcome", "answered"),), histogram)])
    assert out.text().splitlines() == [
        "# HELP t_seconds Turns.",
        "# TYPE t_seconds histogram",
        't_seconds_bucket{outcome="answered",le="0.5"} 2',  # 0.5 itself is in `le="0.5"`
        't_seconds_bucket{outcome="answered",le="1"} 3',
        't_seconds_bucket{outcome="answered",le="5"} 4',
        't_seconds_bucket{outcome="answered",le="+Inf"} 5',
        't_seconds_sum{outcome="answered"} 13.3',
        't_seconds_count{outcome="answered"} 5',
    ]


def test_a_family_without_samples_still_says_what_it_is():
    out = Exposition()
    out.family("g", "gauge", "Nothing yet.", [])
    assert out.text() == "# HELP g Nothing yet.\n# TYPE g gauge\n"
    assert Exposition().text() == ""
