"""The reference's outputs are computed once per (model, set, batch, tools, code, host) and reused by every target."""

from __future__ import annotations

import numpy as np

import edgekit.compiler as ek
from edgekit.data.synthetic import standard_set
from edgekit.report.reference_cache import cached_reference


class Counted:
    def __init__(self, out):
        self.out, self.calls = out, 0

    def __call__(self):
        self.calls += 1
        return self.out


def test_outputs_are_stored_once_and_reused_bit_for_bit(tmp_path):
    out = np.random.default_rng(0).standard_normal((5, 3))
    run = Counted(out)
    first, reused_first = cached_reference(run, "k", 5, root=tmp_path)
    second, reused_second = cached_reference(run, "k", 5, root=tmp_path)
    assert run.calls == 1 and (reused_first, reused_second) == (False, True)
    np.testing.assert_array_equal(second, out)
    other = Counted(out + 1)  # another key: its own run
    assert not cached_reference(other, "other", 5, root=tmp_path)[1] and other.calls == 1
    assert not cached_reference(Counted(out), None, 5, root=tmp_path)[1]  # no key: no cache


def test_a_damaged_or_mismatched_entry_is_never_reused(tmp_path):
    out = np.arange(12, dtype=np.float64).reshape(4, 3)
    cached_reference(Counted(out), "k", 4, root=tmp_path)
    (entry,) = tmp_path.glob("k-*.npy")
    data = bytearray(entry.read_bytes())
    data[-1] ^= 1  # one bit of the last value
    entry.write_bytes(bytes(data))
    run = Counted(out)
    again, reused = cached_reference(run, "k", 4, root=tmp_path)
    assert not reused and run.calls == 1 and len(list(tmp_path.glob("k-*.npy"))) == 1
    np.testing.assert_array_equal(again, out)
    run = Counted(out[:3])  # another number of samples under the same key: run again
    assert not cached_reference(run, "k", 3, root=tmp_path)[1] and run.calls == 1


def test_two_targets_of_one_model_share_the_reference_and_report_the_same_numbers(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "cache"))  # empty: the first compile computes it
    eval_set, logs = standard_set("eval", 24), []
    first = ek.compile(None, "onnx", eval=eval_set, out=tmp_path / "a", log=logs.append)
    second = ek.compile(None, "onnx-fp16", eval=eval_set, out=tmp_path / "b", log=logs.append)
    assert sum("reference outputs on 24 samples (batch 1): reused" in line for line in logs) == 1, logs
    assert first.report.accuracy.reference.mean_deg == second.report.accuracy.reference.mean_deg
    fresh = ek.compile(None, "onnx-fp16", eval=eval_set, out=tmp_path / "c", cache=False)  # computed again
    assert fresh.report.accuracy.reference.mean_deg == second.report.accuracy.reference.mean_deg
