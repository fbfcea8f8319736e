"""Verify an artifact on this machine against the reference: accuracy, per-sample difference, latency,
memory. Every number comes back as a Measurement saying how it was obtained."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from edgekit.data.metrics import AngularSummary, angular_error_deg
from edgekit.evalset import ModelInputs, Runner, to_vectors
from edgekit.models.card import ModelCard
from edgekit.report.model import Accuracy, DiffHistogram, DiffSummary, LatencyHistogram, Measurement

def _flat(v: np.ndarray) -> np.ndarray:
    return v.reshape(-1, 3)


def diff_histogram(diff: np.ndarray, bins: int = 20) -> DiffHistogram:
    """Bins from 0 to the largest difference (a tiny span when all are 0), so the report can draw the spread."""
    counts, edges = np.histogram(diff, bins=bins, range=(0.0, max(float(diff.max()), 1e-6)))
    return DiffHistogram(edges_deg=[float(e) for e in edges], counts=[int(c) for c in counts])


def compare(ref_out: np.ndarray, art_out: np.ndarray, inputs: ModelInputs, card: ModelCard, set_info: dict,
            how: str) -> Accuracy:
    ref, art, truth = (_flat(to_vectors(ref_out, card)), _flat(to_vectors(art_out, card)), _flat(inputs.truth))
    diff = angular_error_deg(art, ref)
    per_sample = diff.reshape(len(inputs), -1).max(axis=1)
    mean_truth = np.broadcast_to(truth.mean(axis=0) / np.linalg.norm(truth.mean(axis=0)), truth.shape)
    ref_sum, art_sum = AngularSummary.of(ref, truth), AngularSummary.of(art, truth)
    return Accuracy(
        set={**set_info, "n_samples": len(inputs)}, truth="future gaze t+1..t+H" if inputs.truth.ndim == 3 else "labelled gaze",
        reference=ref_sum, artifact=art_sum, predict_mean_baseline=AngularSummary.of(mean_truth, truth),
        error_increase_deg=art_sum.mean_deg - ref_sum.mean_deg,
        diff_from_reference=DiffSummary(mean_deg=float(diff.mean()), p95_deg=float(np.percentile(diff, 95)),
                                        max_deg=float(diff.max()), worst_sample=int(per_sample.argmax()),
                                        histogram=diff_histogram(diff)),
        how=how)


# Interleaved runners take turns in blocks of at least this many timed runs, each block after SETTLE_S of untimed runs.
# Alternating run by run, no runner ran as it runs alone: GazeResNet18's INT8 ONNX model took 1.9 ms alternating with
# its FP32 model against 1.25 ms alone, and of two equally fast INT8 models the one placed after the FP32 model measured
# 3% slower. Not the caches alone: after 0.1 s of sleep or of a Python loop its FP32 model too needs about 0.1 s of runs
# to come down from 6.5 to 4.7 ms, after an INT8 model's runs the same (benchmarks/interleave_order.md). Blocks still let
# the machine's load hit every runner alike (each lasts a fraction of a second). Where 50 runs take less than the
# settling, a block holds as many runs as the settling did (it lasts about as long), but at most half the runs, so each
# runner is timed in two blocks at least, once in each order: TinyGaze's 200 runs of 0.1 ms then take two rounds
# instead of four, and its onnx-int8 compile settles 0.4 s instead of 0.8 s.
INTERLEAVE_BLOCK = 50
SETTLE_S = 0.1


def _settle(run: Runner, sample: dict[str, np.ndarray]) -> int:
    """Untimed runs, at least one, until SETTLE_S has passed; how many ran."""
    end = time.perf_counter() + SETTLE_S
    run(sample)
    count = 1
    while time.perf_counter() < end:
        run(sample)
        count += 1
    return count


def _block(runs: int, settled: int) -> int:
    """Timed runs per block of a runner whose first settling took `settled` runs (see INTERLEAVE_BLOCK)."""
    return max(INTERLEAVE_BLOCK, min(settled, -(-runs // 2)))


def _round_order(labels: list[str], round_index: int) -> list[str]:
    """The runners' order in one round: rotated every second round and reversed every other, so each runner follows
    each other one equally often."""
    k = (round_index // 2) % len(labels)
    order = labels[k:] + labels[:k]
    return order[::-1] if round_index % 2 else order


def _time_runs(runs_by_label: dict[str, Runner], sample: dict[str, np.ndarray], runs: int, warmup: int) -> dict[str, np.ndarray]:
    """Milliseconds per run of each runner after `warmup` untimed rounds: one runner run after run; several in
    alternating blocks (_block's runs after SETTLE_S of untimed ones), in _round_order."""
    for _ in range(warmup):
        for run in runs_by_label.values():
            run(sample)
    labels = list(runs_by_label)
    times: dict[str, list[float]] = {label: [] for label in labels}
    blocks: dict[str, int] = {label: runs for label in labels} if len(labels) == 1 else {}
    round_index = 0
    while any(len(t) < runs for t in times.values()):
        for label in _round_order(labels, round_index):
            run = runs_by_label[label]
            if len(times[label]) == runs:
                continue
            if len(labels) > 1:
                settled = _settle(run, sample)
                blocks.setdefault(label, _block(runs, settled))
            for _ in range(min(blocks[label], runs - len(times[label]))):
                start = time.perf_counter()
                run(sample)
                times[label].append((time.perf_counter() - start) * 1e3)
        round_index += 1
    return {label: np.array(t) for label, t in times.items()}


def _percentiles(times: np.ndarray, detail: str) -> dict[str, Measurement]:
    return {f"p{q}": Measurement(value=float(np.percentile(times, q)), unit="ms", method="measured", how=f"{detail}, p{q}")
            for q in (50, 90, 99)}


def latency(run: Runner, sample: dict[str, np.ndarray], runs: int, warmup: int, how: str) -> dict[str, Measurement]:
    return latency_runs(run, sample, runs, warmup, how)[0]


def latency_runs(run: Runner, sample: dict[str, np.ndarray], runs: int, warmup: int,
                 how: str) -> tuple[dict[str, Measurement], np.ndarray]:
    """The percentiles and every run's milliseconds (for the report's latency distribution)."""
    times = _time_runs({"artifact": run}, sample, runs, warmup)["artifact"]
    return _percentiles(times, f"{how}; batch 1, {runs} runs after {warmup} warm-up, wall clock around run() (includes "
                               "I/O copies)"), times


def latency_histogram(times: np.ndarray, bins: int = 30) -> LatencyHistogram:
    counts, edges = np.histogram(times, bins=bins, range=(0.0, max(float(times.max()), 1e-6)))
    return LatencyHistogram(edges_ms=[float(e) for e in edges], counts=[int(c) for c in counts])


def interleaved_latency(runs_by_label: dict[str, Runner], sample: dict[str, np.ndarray], runs: int, warmup: int,
                        how: str) -> dict[str, dict[str, Measurement]]:
    """Latency of several runners measured alternately in one loop (in blocks: _time_runs), so machine noise hits
    them alike."""
    detail = (f"{how}; batch 1, {runs} runs after {warmup} warm-up, interleaved in blocks of {INTERLEAVE_BLOCK} runs "
              f"(more where they take under {SETTLE_S:g} s, two blocks at least), each after {SETTLE_S:g} s of untimed "
              f"ones, with {', '.join(runs_by_label)}")
    return {label: _percentiles(t, detail) for label, t in _time_runs(runs_by_label, sample, runs, warmup).items()}


def _status_kb(field: str) -> int | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_memory(load_and_run: Callable[[], object]) -> Measurement:
    """Peak resident memory added while loading and running an artifact (Linux: VmHWM reset via clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return Measurement(value=None, unit="MiB", method="not_measured", how="needs Linux /proc/self/clear_refs")
    base = _status_kb("VmRSS:")
    load_and_run()
    peak = _status_kb("VmHWM:")
    if base is None or peak is None:
        return Measurement(value=None, unit="MiB", method="not_measured", how="/proc/self/status unreadable")
    return Measurement(value=max(peak - base, 0) / 1024, unit="MiB", method="measured",
                       how="process peak RSS (VmHWM, reset before loading) minus RSS before loading; includes the runtime's arenas")
