"""On a spare core, the reference's outputs come from a worker process started before the passes: the same outputs,
bit for bit, as verification computes itself."""

from __future__ import annotations

import numpy as np
import pytest

import edgekit.compiler as ek
from edgekit import environment
from edgekit.data.synthetic import standard_set
from edgekit.evalset import default_eval_set, model_inputs, run_batches
from edgekit.report import reference_prefetch
from edgekit.report.reference_prefetch import ReferencePrefetch, spare_core
from edgekit.source import load_source


def test_a_spare_core_means_room_for_a_second_thread_pool_beside_every_compile(monkeypatch):
    monkeypatch.setattr(environment, "_parallel_compiles", 1)  # one compile (pytest-xdist workers set theirs)
    assert spare_core(1, cores=2, load=0.0) and spare_core(2, cores=4, load=0.0)
    assert not spare_core(1, cores=1, load=0.0) and not spare_core(2, cores=2, load=0.0)
    monkeypatch.setattr(environment, "_parallel_compiles", 2)  # edgekit build --jobs 2
    assert not spare_core(1, cores=2, load=0.0) and spare_core(1, cores=4, load=0.0)


def test_a_core_another_process_keeps_busy_is_not_spare(monkeypatch):
    """The load average counts this compile's own thread too: only what runs beyond it takes the spare core."""
    monkeypatch.setattr(environment, "_parallel_compiles", 1)
    assert spare_core(1, cores=2, load=1.0)  # this compile alone
    assert not spare_core(1, cores=2, load=2.0)  # and another busy process (the test suite's other worker)
    assert spare_core(1, cores=4, load=3.0) and not spare_core(1, cores=4, load=3.5)
    monkeypatch.setattr(reference_prefetch, "_load_average", lambda: 2.0)
    assert not spare_core(1, cores=2)


@pytest.mark.parametrize("model", ["tinygaze", "temporalgaze"])
def test_the_workers_outputs_are_the_references_bit_for_bit(tmp_path, model):
    src = load_source(model, tmp_path)
    inputs = model_inputs(src.card, default_eval_set(src.card, 12))  # temporalgaze: sequences of frames
    prefetch = ReferencePrefetch(src.artifact.path, src.card.arch, 1, 1, tmp_path).feed(inputs.arrays)
    assert prefetch.started(timeout=120) and prefetch.ready.exists()  # the module loaded: it computes
    np.testing.assert_array_equal(prefetch.take(1), run_batches(src.reference, inputs, 1))


def test_a_worker_still_starting_is_stopped_and_gives_nothing(tmp_path, monkeypatch):
    """A small model's passes end before the worker has imported torch: verification then runs the reference itself
    rather than wait for the worker."""
    src = load_source("tinygaze", tmp_path)
    inputs = model_inputs(src.card, default_eval_set(src.card, 4))
    prefetch = ReferencePrefetch(src.artifact.path, src.card.arch, 1, 1, tmp_path).feed(inputs.arrays)
    monkeypatch.setattr(prefetch, "started", lambda timeout=0.0: False)
    assert prefetch.take(1) is None and prefetch._worker.poll() is not None


def test_another_batch_or_a_failed_worker_gives_nothing(tmp_path):
    src = load_source("tinygaze", tmp_path)
    inputs = model_inputs(src.card, default_eval_set(src.card, 4))
    assert ReferencePrefetch(src.artifact.path, src.card.arch, 1, 1, tmp_path).feed(inputs.arrays).take(4) is None
    missing = ReferencePrefetch(tmp_path / "no-such-folder", src.card.arch, 1, 1, tmp_path)
    assert missing.feed(inputs.arrays).take(1) is None
    unfed = ReferencePrefetch(src.artifact.path, src.card.arch, 1, 1, tmp_path)
    assert unfed.take(1) is None and unfed._worker.poll() is not None  # never fed: stopped, nothing to wait for


class _Patient(ReferencePrefetch):
    """Waits for its worker to load the module before taking its outputs (TinyGaze's passes end sooner)."""

    def take(self, batch):
        self.started(timeout=120)
        return super().take(batch)


def test_a_compile_reports_the_same_numbers_with_and_without_the_worker(tmp_path, monkeypatch):
    monkeypatch.setattr(reference_prefetch, "ReferencePrefetch", _Patient)
    eval_set = standard_set("eval", 24)
    reports = {}
    for spare in (True, False):
        monkeypatch.setattr(reference_prefetch, "spare_core", lambda threads, cores=None, spare=spare: spare)
        logs = []
        result = ek.compile(None, "onnx", eval=eval_set, out=tmp_path / str(spare), cache=False, log=logs.append)
        assert any("computed on a spare core while the passes ran" in line for line in logs) == spare, logs
        reports[spare] = result.report.accuracy
    assert reports[True] == reports[False]


def test_a_reference_already_cached_stops_the_worker_started_for_it(tmp_path, monkeypatch):
    """The worker starts before the sets exist, so before the reference cache can be asked: the second compile of the
    same model and set finds the outputs cached and stops its worker unfed; no worker outlives its compile."""
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(reference_prefetch, "spare_core", lambda threads, cores=None: True)
    started = []

    class Recorded(ReferencePrefetch):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(reference_prefetch, "ReferencePrefetch", Recorded)
    eval_set = standard_set("eval", 24)
    for k in range(2):
        logs = []
        ek.compile(None, "onnx", eval=eval_set, out=tmp_path / str(k), cache=True, log=logs.append)
    assert [p.fed for p in started] == [True, False]
    assert all(p._worker.poll() is not None for p in started)
