"""Honest latency (edgekit/report/timing.py, counterpart.py): a TFLite INT8 report carries an interleaved FP32 vs INT8
comparison measured in LiteRT against a real FP32 .tflite of the same module; every timed report says when, on which
CPU and under which load it was timed; a report served from the cache says its timing is an earlier run's, and
`remeasure` refreshes only the timing. Real litert-torch conversions, every artifact run in the LiteRT interpreter."""

from __future__ import annotations

import datetime
import json
import time

import numpy as np
import pytest

import edgekit.compiler as ek
from edgekit._optional import require
from edgekit.artifact import digest_path
from edgekit.backends.tflite import graph as tflite_graph
from edgekit.backends.tflite.runner import LiteRTRunner
from edgekit.data.synthetic import standard_set
from edgekit.environment import host_info
from edgekit.report.model import Timing
from edgekit.report.summary import speed_against_fp32
from edgekit.report.timing import describe, timing_line

require("litert_torch", "TFLite tests")

RUNS = 5


@pytest.fixture(scope="module")
def sets():
    return standard_set("calib", 32), standard_set("eval", 16)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """tflite-int8 as shipped, made cheap: 32 calibration samples, no mixed-precision search, 5 timed runs."""
    path = tmp_path_factory.mktemp("recipe") / "tflite-int8-small.yaml"
    path.write_text(json.dumps({
        "name": "tflite-int8-small", "backend": "tflite",
        "passes": ["fold_bn", {"to_tflite": {"precision": "int8", "io": "float", "observer": "percentile",
                                             "mixed_precision": False, "sensitivity_samples": 16}}],
        "verify": {"eval_images": 16, "latency_runs": RUNS, "warmup_runs": 1, "threads": 1}}))
    return path


def _compile(recipe, sets, out, **kwargs):
    calib, ev = sets
    return ek.compile(None, target=str(recipe), out=out, calib=calib, eval=ev, **kwargs)


@pytest.fixture(scope="module")
def first(recipe, sets, tmp_path_factory):
    return _compile(recipe, sets, tmp_path_factory.mktemp("first") / "out")


@pytest.mark.slow
def test_tflite_int8_report_compares_with_fp32_interleaved(first):
    c = first.report.comparison
    assert c is not None, first.report.notes
    for side in (c.latency_fp32, c.latency_int8):
        assert set(side) == {"p50", "p90", "p99"}
        assert all(m.method == "measured" and m.value > 0 for m in side.values())
        assert f"{RUNS} runs" in side["p50"].how and ("interleaved in blocks of 50 runs (more where they take under 0.1 s, "
                                                      "two blocks at least), each after 0.1 s of untimed ones, with fp32, "
                                                      "int8") in side["p50"].how
        assert "LiteRT" in side["p50"].how and "1 thread(s)" in side["p50"].how  # same runtime, same threads
    assert c.speedup_p50 == pytest.approx(c.latency_fp32["p50"].value / c.latency_int8["p50"].value)
    assert c.size_int8_bytes == first.artifact.stat().st_size
    assert c.size_ratio > 2  # int8 weights against float32 ones
    assert c.fp32_sha256 != first.report.artifact.sha256


@pytest.mark.slow
def test_the_fp32_counterpart_is_the_fp32_tflite_of_the_same_module(first, sets, tmp_path):
    """The `tflite` target converts the same folded module with the same pass at fp32: its artifact is the
    counterpart's bytes, served from the pass cache the comparison filled."""
    fp32 = ek.compile(None, "tflite", out=tmp_path / "fp32", eval=sets[1])
    assert digest_path(fp32.artifact) == first.report.comparison.fp32_sha256
    assert fp32.report.steps[-1].cached  # the conversion the comparison ran, reused
    model = tflite_graph.read(fp32.artifact)
    data = fp32.artifact.read_bytes()
    assert data[4:8] == b"TFL3"  # the flatbuffer's file identifier
    io = tflite_graph.io_details(model)
    assert [t["dtype"] for t in io["inputs"] + io["outputs"]] == ["float32", "float32"]
    assert fp32.report.artifact.precision == "fp32" and fp32.report.runtime.int8_mac_fraction_measured is None
    assert not any(op.startswith(("QUANTIZE", "DEQUANTIZE")) for op in fp32.report.runtime.op_histogram)
    out = LiteRTRunner(fp32.artifact).run({t["name"]: np.zeros(t["shape"], np.float32) for t in io["inputs"]})
    assert np.isfinite(out).all()  # it runs in LiteRT


@pytest.mark.slow
def test_a_timed_report_says_when_where_and_under_which_load(first):
    t = first.report.timing
    assert t is not None and t.host == host_info()["cpu"] and t.threads == 1
    measured = datetime.datetime.fromisoformat(t.measured_at)
    assert abs((datetime.datetime.now(datetime.timezone.utc) - measured).total_seconds()) < 3600
    assert len(t.load_start) == 3 and len(t.load_end) == 3 and all(x >= 0 for x in t.load_start + t.load_end)
    assert not t.reused_from_cache and not t.remeasured
    saved = json.loads((first.out_dir / "report.json").read_text())
    assert saved["timing"]["measured_at"] == t.measured_at and saved["timing"]["load_start"] == t.load_start


@pytest.mark.slow
def test_cached_report_says_its_timing_is_reused_and_remeasure_refreshes_only_timing(first, recipe, sets, tmp_path):
    reused = _compile(recipe, sets, tmp_path / "reused")
    t0 = first.report.timing
    assert reused.report.timing.measured_at == t0.measured_at and reused.report.latency == first.report.latency
    assert reused.report.timing.reused_from_cache
    said = f"latency measured at {t0.measured_at} under load {t0.load_start[0]:.2f}/{t0.load_start[1]:.2f}"
    note = next(n for n in reused.report.notes if "reused from the report cache" in n)
    assert said in note and f"on {t0.host}" in note and "reused from the cache" in note
    assert said in timing_line(reused.report) and "reused from the cache" in timing_line(reused.report)
    assert said in (reused.out_dir / "report.md").read_text()

    time.sleep(1.1)  # measured_at has a resolution of one second
    fresh = _compile(recipe, sets, tmp_path / "remeasured", remeasure=True)
    t1 = fresh.report.timing
    assert datetime.datetime.fromisoformat(t1.measured_at) > datetime.datetime.fromisoformat(t0.measured_at)
    assert t1.remeasured and not t1.reused_from_cache
    assert fresh.report.accuracy == first.report.accuracy and fresh.report.gates == first.report.gates
    assert fresh.report.created == first.report.created  # the verification it keeps
    assert fresh.report.comparison is not None and fresh.report.comparison.fp32_sha256 == first.report.comparison.fp32_sha256
    assert fresh.report.comparison.latency_int8 != first.report.comparison.latency_int8  # timed again (5 float timings)
    assert any("measured again" in n for n in fresh.report.notes)

    later = _compile(recipe, sets, tmp_path / "later")  # the refreshed report is the one the cache now serves
    assert later.report.timing.measured_at == t1.measured_at and later.report.latency == fresh.report.latency
    assert later.report.accuracy == first.report.accuracy
    assert sum("measured again (--remeasure)" in n for n in later.report.notes) == 1


def test_describe_names_time_load_and_host():
    t = Timing(measured_at="2026-12-01T22:00:00+00:00", host="AMD EPYC 7B13", load_start=[1.5, 0.75, 0.5],
               load_end=[2.0, 1.0, 0.5])
    assert describe(t) == ("latency measured at 2026-12-01T22:00:00+00:00 under load 1.50/0.75 (at the end 2.00/1.00) "
                           "on AMD EPYC 7B13")


def test_an_int8_artifact_slower_than_fp32_is_said_to_be_slower():
    """The summary and the report say '3.20x slower', not '0.31x faster' (itracker's tflite-int8 on an AMX host)."""
    assert speed_against_fp32(3.06) == "3.06x faster" and speed_against_fp32(1.0) == "1.00x faster"
    assert speed_against_fp32(0.3125) == "3.20x slower"
