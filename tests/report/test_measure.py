"""Latency percentiles: computed from the timed runs alone, warm-up excluded, checked against known run times."""

import numpy as np
import pytest

from edgekit.report import measure


class _Clock:
    """perf_counter for edgekit.report.measure: advances only when the fake runner runs."""

    def __init__(self):
        self.t = 0.0

    def perf_counter(self):
        return self.t


def _runner(clock: _Clock, durations_ms):
    it = iter(durations_ms)

    def run(sample):
        clock.t += next(it) / 1e3

    return run


def test_latency_percentiles_come_from_the_timed_runs_only(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(measure.time, "perf_counter", clock.perf_counter)
    rng = np.random.default_rng(0)
    timed = rng.permutation(np.arange(1, 101, dtype=float))  # 1..100 ms in random order
    warmup = [10_000.0] * 5  # a warm-up run this slow would dominate p99 if it were timed
    lat = measure.latency(_runner(clock, [*warmup, *timed]), {}, runs=100, warmup=5, how="fake")
    # linear interpolation over 1..100 by hand: rank q/100 * 99 from the smallest
    assert lat["p50"].value == pytest.approx(50.5)
    assert lat["p90"].value == pytest.approx(90.1)
    assert lat["p99"].value == pytest.approx(99.01)
    assert all(m.method == "measured" and m.unit == "ms" for m in lat.values())
    assert "100 runs after 5 warm-up" in lat["p50"].how


def test_interleaved_latency_keeps_each_runners_times_apart(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(measure.time, "perf_counter", clock.perf_counter)
    fast = _runner(clock, [1.0] * 11)
    slow = _runner(clock, [7.0] * 11)
    lat = measure.interleaved_latency({"fast": fast, "slow": slow}, {}, runs=10, warmup=1, how="fake")
    assert {q: m.value for q, m in lat["fast"].items()} == pytest.approx({"p50": 1.0, "p90": 1.0, "p99": 1.0})
    assert {q: m.value for q, m in lat["slow"].items()} == pytest.approx({"p50": 7.0, "p90": 7.0, "p99": 7.0})
    assert "interleaved with fast, slow" in lat["slow"]["p99"].how
