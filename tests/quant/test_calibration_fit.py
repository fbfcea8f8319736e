"""quant/calibration.py: the weight edits' statistics come from the fitted calibration samples only (ptq judges the
edits on the others)."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from edgekit.backends.onnx.bias_correction import correctable_inputs  # noqa: E402
from edgekit.quant.calibration import _fitted_rows, calibration_run  # noqa: E402
from tests.backends.onnx.test_qdq import export_two_conv, images  # noqa: E402


def test_means_and_read_batches_cover_the_fitted_samples_and_ranges_every_sample(tmp_path):
    fp32 = export_two_conv(tmp_path / "two_conv.onnx")
    tensor = correctable_inputs(onnx.load(str(fp32)))["/conv2/Conv"]  # conv1's output, after its ReLU
    x = images("calib", 10)
    runs = {}
    for label, fit in (("every", None), ("even", np.arange(0, 10, 2))):
        seen: list[np.ndarray] = []
        # batches of 3: the fitted sample of the second batch (4) is its row 1, of the third (6 and 8) rows 0 and 2
        stats, _ = calibration_run(fp32, {"image": x}, batch=3, mean_of={tensor}, also_read={tensor: seen.append}, fit=fit)
        runs[label] = stats[tensor], np.concatenate(seen)
    (every, all_rows), (even, even_rows) = runs["every"], runs["even"]
    assert len(all_rows) == 10 and len(even_rows) == 5
    np.testing.assert_array_equal(even_rows, all_rows[0::2])
    np.testing.assert_allclose(even.mean, all_rows[0::2].mean(axis=0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(even.mean, every.mean, rtol=1e-3)  # the odd samples' inputs differ: they did count before
    assert (even.lo, even.hi) == (every.lo, every.hi) == (all_rows.min(), all_rows.max())  # ranges: every sample


def test_frames_folded_into_the_first_axis_follow_their_sample():
    value = np.arange(12).reshape(6, 2)  # 2 samples x 3 frames, sample by sample (x.view(B * T, ...))
    np.testing.assert_array_equal(_fitted_rows(value, np.array([True, False])), value[:3])
    assert _fitted_rows(value[:5], np.array([True, False])) is None  # no whole number of rows per sample
    assert _fitted_rows(np.float32(1.0), np.array([True, False])) is None
    assert _fitted_rows(value, np.array([True, True])) is value


def test_the_calibration_keeps_at_most_a_quarter_of_the_memory_a_cgroup_leaves(monkeypatch):
    """A container's /proc/meminfo shows the host's memory: the cgroup's limit, less what the group uses, bounds the
    spare memory, and the range sweep keeps at most a quarter of it (and 1 GiB)."""
    from edgekit import environment
    from edgekit.quant.calibration import RETAIN_CAP_BYTES, retained_bytes_budget

    files = {"/sys/fs/cgroup/memory.max": 2 << 30, "/sys/fs/cgroup/memory.current": 1 << 30}
    monkeypatch.setattr(environment, "_meminfo_available", lambda: 64 << 30)
    monkeypatch.setattr(environment, "_read_int", files.get)
    assert environment.spare_memory_bytes() == 1 << 30 and retained_bytes_budget() == 256 << 20
    files["/sys/fs/cgroup/memory.max"] = None  # "max": no limit
    assert environment.spare_memory_bytes() == 64 << 30 and retained_bytes_budget() == RETAIN_CAP_BYTES
