import numpy as np
import pytest

from edgekit.quant.observers import BINS, TensorStats, observe


def _stats(x):
    s = TensorStats()
    s.update_range(x)
    s.update_hist(x)
    return s


def test_histograms_have_2048_bins_and_count_everything():
    x = np.random.default_rng(0).normal(size=10_000)
    s = _stats(x)
    assert len(s.hist) == BINS == 2048 and s.hist.sum() == 10_000 and s.abs_hist.sum() == 10_000


def test_minmax_is_the_observed_range():
    x = np.array([-0.5, 0.0, 2.0])
    assert observe(_stats(x), "minmax") == (-0.5, 2.0)


def test_percentile_clips_rare_outliers():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(0, 1, 100_000), [50.0]])  # one huge activation
    lo, hi = observe(_stats(x), "percentile", 99.9)
    assert lo == x.min() and 0.95 < hi < 1.1  # non-negative tensors keep their low end


def test_entropy_clips_wild_outliers_and_keeps_uniform():
    rng = np.random.default_rng(2)
    heavy = np.concatenate([np.abs(rng.laplace(size=200_000)), [60.0, 80.0]])  # post-ReLU, two wild outliers
    lo, hi = observe(_stats(heavy), "entropy")
    assert lo == heavy.min() and hi < 0.25 * heavy.max()
    assert observe(_stats(rng.uniform(0, 1, 200_000)), "entropy")[1] > 0.9


def _qdq_mse(x, lo, hi, levels=255):
    scale = (hi - lo) / levels
    return float(np.mean((np.clip(np.round((x - lo) / scale), 0, levels) * scale + lo - x) ** 2))


@pytest.mark.parametrize("dist", ["laplace", "t3"])
def test_mse_range_has_no_more_error_than_minmax(dist):
    rng = np.random.default_rng(4)
    heavy = np.abs(rng.laplace(size=200_000) if dist == "laplace" else rng.standard_t(3, size=200_000))
    mse_range = observe(_stats(heavy), "mse")
    assert mse_range[1] < heavy.max()  # 8-bit MSE clips only the thin far tail
    assert _qdq_mse(heavy, *mse_range) <= _qdq_mse(heavy, heavy.min(), heavy.max())


def test_signed_tensors_get_a_symmetric_clip():
    x = np.random.default_rng(3).laplace(size=100_000)
    lo, hi = observe(_stats(x), "mse")
    assert lo < 0 < hi and abs(abs(lo) - hi) < 0.2 * hi


def test_histogram_is_torchaos_histogram_observer_on_the_same_data():
    """observer=histogram: the range PT2E's default activation observer (torchao's HistogramObserver, litert-torch's
    and XNNPACK's quantizers) picks when it sees the same values in one call, within one of its 2,048 bins."""
    import torch
    from torchao.quantization.pt2e.observer import HistogramObserver

    rng = np.random.default_rng(5)
    x = np.concatenate([rng.laplace(size=200_000), [-80.0, 90.0]]).astype(np.float32)  # signed, a wild outlier each side
    reference = HistogramObserver(dtype=torch.qint8, quant_min=-128, quant_max=127)
    reference(torch.from_numpy(x))
    want = reference._non_linear_param_search()
    lo, hi = observe(_stats(x), "histogram")
    width = (x.max() - x.min()) / BINS
    assert lo == pytest.approx(float(want[0]), abs=float(width)) and hi == pytest.approx(float(want[1]), abs=float(width))
    assert 0 < hi < 0.2 * x.max()  # it cut the far tail (its search stops once the error rises: here at the top end)


def test_histograms_binned_in_steps_count_as_the_whole_tensor_at_once(monkeypatch):
    """_bin_counts bins BIN_CHUNK values per step: a step boundary anywhere (here every 7 values, and a last short
    step) gives the counts of one pass over the tensor, float64 input included."""
    from edgekit.quant import observers

    rng = np.random.default_rng(5)
    for x in (rng.standard_normal(1000).astype(np.float32), np.maximum(rng.standard_normal((3, 5, 7)), 0)):
        lo, hi = float(x.min()), float(x.max())
        whole = observers._bin_counts(x, lo, hi)
        monkeypatch.setattr(observers, "BIN_CHUNK", 7)
        steps = observers._bin_counts(x, lo, hi)
        monkeypatch.undo()
        assert whole.sum() == x.size and (steps == whole).all()
