"""Latency percentiles: computed from the timed runs alone, warm-up excluded, checked against known run times."""

import itertools

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
    fast = _runner(clock, itertools.repeat(1.0))  # warm-up and settling runs too
    slow = _runner(clock, itertools.repeat(7.0))
    lat = measure.interleaved_latency({"fast": fast, "slow": slow}, {}, runs=10, warmup=1, how="fake")
    assert {q: m.value for q, m in lat["fast"].items()} == pytest.approx({"p50": 1.0, "p90": 1.0, "p99": 1.0})
    assert {q: m.value for q, m in lat["slow"].items()} == pytest.approx({"p50": 7.0, "p90": 7.0, "p99": 7.0})
    assert ("interleaved in blocks of 50 runs (more where they take under 0.1 s, two blocks at least), each after 0.1 s "
            "of untimed ones, with fast, slow") in lat["slow"]["p99"].how


def test_interleaved_runners_are_timed_only_once_settled(monkeypatch):
    """A run right after another runner's is slow (caches, clock): alternating run by run timed only such runs, which
    blocks after untimed settling runs avoid; the order alternates so neither always goes first."""
    clock = _Clock()
    monkeypatch.setattr(measure.time, "perf_counter", clock.perf_counter)
    calls = []

    def runner(label):
        def run(sample):
            clock.t += (1.0 if calls and calls[-1] == label else 1000 * measure.SETTLE_S) / 1e3
            calls.append(label)
        return run

    block = measure.INTERLEAVE_BLOCK
    lat = measure.interleaved_latency({"a": runner("a"), "b": runner("b")}, {}, runs=2 * block, warmup=1, how="fake")
    for label in "ab":
        assert {q: m.value for q, m in lat[label].items()} == pytest.approx({"p50": 1.0, "p90": 1.0, "p99": 1.0})
    turn = 1 + block  # after the other runner, one slow run settles it; then the timed ones
    settled = int(1000 * measure.SETTLE_S)  # b again after b: it settles for SETTLE_S all the same, in 1 ms runs
    assert calls == ["a", "b"] + ["a"] * turn + ["b"] * turn + ["b"] * (settled + block) + ["a"] * turn


def test_fast_runners_are_timed_in_blocks_as_long_as_their_settling_and_in_two_at_least(monkeypatch):
    """50 runs of 1 ms take less than the settling: a block holds as many runs as it did (100), and 200 runs take
    two rounds, a then b, b then a, instead of four blocks of 50 each after its own 0.1 s of settling."""
    import itertools as it

    clock, calls = _Clock(), []
    monkeypatch.setattr(measure.time, "perf_counter", clock.perf_counter)

    def runner(label):
        def run(sample):
            clock.t += 1e-3
            calls.append(label)
        return run

    lat = measure.interleaved_latency({"a": runner("a"), "b": runner("b")}, {}, runs=200, warmup=0, how="fake")
    assert lat["a"]["p50"].value == pytest.approx(1.0)
    groups = [(label, len(list(g))) for label, g in it.groupby(calls)]
    assert [label for label, _ in groups] == ["a", "b", "a"]  # b's two blocks back to back: a, b | b, a
    settle_and_block = groups[0][1]
    assert 200 <= settle_and_block <= 202 and [n for _, n in groups] == [settle_and_block, 2 * settle_and_block,
                                                                          settle_and_block]
    assert measure._block(200, settled=3) == measure.INTERLEAVE_BLOCK and measure._block(200, settled=1000) == 100


def test_interleaved_rounds_let_each_runner_follow_each_other_equally_often():
    follows = {}
    for r in range(6):
        order = measure._round_order(["fp32", "ours", "peer"], r)
        for before, after in zip(order, order[1:]):
            follows[(before, after)] = follows.get((before, after), 0) + 1
    assert len(follows) == 6 and set(follows.values()) == {2}
