"""edgekit/report/plots.py: value axes include zero (a bar's length is its value), groups and series get distinct
colours, every chart has an accessible name, and the markup is inline SVG with nothing to fetch."""

from __future__ import annotations

import re

import pytest

from edgekit.report.plots import PALETTE, Bar, Series, bar_chart, histogram, line_chart, nice_ticks


def _rects(svg: str) -> list[dict]:
    return [dict(re.findall(r'(\w[\w-]*)="([^"]*)"', m)) for m in re.findall(r"<rect ([^>]*)>", svg)]


def _tick_labels(svg: str) -> list[str]:
    return re.findall(r'text-anchor="(?:middle|end)">([-\d.,e+]+)</text>', svg)


@pytest.mark.parametrize("lo,hi", [(0, 0.47), (0, 132), (-0.02, 0.15), (0, 41879), (0, 1e-6)])
def test_ticks_are_round_and_cover_zero_to_the_largest_value(lo, hi):
    ticks = nice_ticks(lo, hi)
    assert ticks[0] <= lo and ticks[-1] >= hi and 0 in ticks
    steps = {round(b - a, 12) for a, b in zip(ticks, ticks[1:])}
    assert len(steps) == 1 and 3 <= len(ticks) <= 8


def test_bar_lengths_are_proportional_to_values_from_zero():
    svg = bar_chart([Bar("a", 1.0), Bar("b", 2.0), Bar("c", 4.0)], title="three bars", value_label="uJ")
    assert svg.startswith('<svg class="plot" role="img" aria-label="three bars"') and "<title>three bars</title>" in svg
    widths = [float(r["width"]) for r in _rects(svg)]
    assert widths[1] == pytest.approx(2 * widths[0], rel=1e-3) and widths[2] == pytest.approx(4 * widths[0], rel=1e-3)
    assert {float(r["x"]) for r in _rects(svg)} == {float(_rects(svg)[0]["x"])}  # every bar starts at the zero line
    assert _tick_labels(svg)[0] == "0" and ">uJ</text>" in svg  # the axis starts at zero and is labelled
    assert "http" not in svg and "<script" not in svg


def test_groups_get_distinct_colours_a_legend_and_ranges_a_lighter_extension():
    svg = bar_chart([Bar("compute", 1.1, high=1.45, group="compute"), Bar("memory", 2.25, high=132, group="compute+memory")],
                    title="energy", value_label="uJ")
    fills = [r["fill"] for r in _rects(svg)]
    assert fills == [PALETTE[0], PALETTE[0], PALETTE[1], PALETTE[1]]  # solid bar + its range, per group
    assert [r.get("fill-opacity") for r in _rects(svg)] == [None, "0.35", None, "0.35"]
    assert ">compute</text>" in svg and ">compute+memory</text>" in svg  # the legend
    assert "2.25-132" in svg


def test_negative_values_keep_zero_on_the_axis():
    svg = bar_chart([Bar("a", -0.02), Bar("b", 0.1)], title="sensitivity", value_label="deg")
    labels = _tick_labels(svg)
    assert "0" in labels and float(labels[0]) < 0


def test_line_chart_starts_both_axes_at_zero_and_colours_each_series():
    svg = line_chart([Series("snn", [(4, 11.5), (8, 10.9), (64, 10.4)]), Series("naive", [(4, 13.2), (64, 14.2)]),
                      Series("ann", [(0, 10.1), (64, 10.1)], dashed=True)],
                     title="error vs T", x_label="timesteps T", y_label="mean error (deg)")
    assert svg.count("<polyline") == 3 and svg.count("<circle") == 5  # no markers on the dashed reference level
    strokes = re.findall(r'<polyline [^>]*stroke="(#[0-9a-f]+)"', svg)
    assert len(set(strokes)) == 3
    assert _tick_labels(svg).count("0") == 2  # x and y both from zero, although the errors lie between 10 and 15
    assert ">timesteps T</text>" in svg and "mean error (deg)</text>" in svg


def test_histogram_draws_non_empty_bins_with_whole_count_ticks():
    svg = histogram([0.0, 0.1, 0.2, 0.3], [3, 0, 1], title="diffs", x_label="deg")
    assert len(_rects(svg)) == 2
    assert all("." not in t for t in _tick_labels(svg)[:4])  # counts: 0, 1, 2, 3
    with pytest.raises(ValueError, match="4 edges for 4 counts; fix: pass one more edge than counts"):
        histogram([0, 1, 2, 3], [1, 2, 3, 4], title="bad", x_label="deg")
