"""Gaze accuracy metrics, all in float64 and degrees.

Angular error is atan2(|a x b|, a . b) of normalised vectors: exact near 0 degrees, where float32
arccos bottoms out at about 0.02 degrees. Every summary carries the predict-the-mean baseline on the
same set, so a number can be read against the trivial model.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict

from edgekit.data.gaze import pitchyaw_to_vector, vector_to_pitchyaw

HORIZONS = 5  # frames ahead for sequence forecasting (OpenEDS2020 predicts t+1..t+5)


def _unit64(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def angular_error_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-sample angle in degrees between gaze vectors a and b (..., 3); any length, any float dtype."""
    a, b = _unit64(a), _unit64(b)
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), np.sum(a * b, axis=-1)))


class AxisStats(BaseModel):
    model_config = ConfigDict(frozen=True)
    bias_deg: float  # mean signed error (prediction - truth)
    mae_deg: float


class AngularSummary(BaseModel):
    """Mean, median, p95 and max angular error plus per-axis bias; `n` samples."""

    model_config = ConfigDict(frozen=True)
    n: int
    mean_deg: float
    median_deg: float
    p95_deg: float
    max_deg: float
    pitch: AxisStats
    yaw: AxisStats

    @classmethod
    def of(cls, pred: np.ndarray, true: np.ndarray) -> AngularSummary:
        err = angular_error_deg(pred, true)
        diff = np.degrees(vector_to_pitchyaw(pred) - vector_to_pitchyaw(true))
        diff[:, 1] = (diff[:, 1] + 180.0) % 360.0 - 180.0  # yaw wraps
        axis = [AxisStats(bias_deg=float(diff[:, k].mean()), mae_deg=float(np.abs(diff[:, k]).mean())) for k in (0, 1)]
        return cls(n=len(err), mean_deg=float(err.mean()), median_deg=float(np.median(err)),
                   p95_deg=float(np.percentile(err, 95)), max_deg=float(err.max()), pitch=axis[0], yaw=axis[1])


class AccuracyReport(BaseModel):
    """A model's angular error on a set beside the predict-the-mean baseline on the same set."""

    model_config = ConfigDict(frozen=True)
    model: AngularSummary
    predict_mean_baseline: AngularSummary


def accuracy(pred: np.ndarray, true: np.ndarray) -> AccuracyReport:
    pred, true = np.asarray(pred).reshape(-1, 3), np.asarray(true).reshape(-1, 3)
    mean_gaze = np.broadcast_to(_unit64(_unit64(true).mean(axis=0)), true.shape)
    return AccuracyReport(model=AngularSummary.of(pred, true), predict_mean_baseline=AngularSummary.of(mean_gaze, true))


def rms_s2s_deg(seq: np.ndarray) -> float:
    """Precision as RMS of successive-sample angles (Tobii's RMS-S2S) over one (T, 3) sequence."""
    return float(np.sqrt(np.mean(angular_error_deg(seq[1:], seq[:-1]) ** 2)))


def std_deg(seq: np.ndarray) -> float:
    """Precision as RMS angle from the sequence's mean direction."""
    return float(np.sqrt(np.mean(angular_error_deg(seq, _unit64(_unit64(seq).mean(axis=0))) ** 2)))


def jitter_deg(pred: np.ndarray, true: np.ndarray, seq_id: np.ndarray) -> float:
    """RMS over all sequences of the excess successive-sample motion of the prediction over the truth.

    For a fixed true gaze this is RMS-S2S of the prediction; for moving gaze it subtracts the true motion.
    """
    excess = []
    for s in np.unique(seq_id):
        idx = np.flatnonzero(seq_id == s)
        if len(idx) > 1:
            p, t = pred[idx], true[idx]
            excess.append(angular_error_deg(p[1:], p[:-1]) - angular_error_deg(t[1:], t[:-1]))
    return float(np.sqrt(np.mean(np.concatenate(excess) ** 2))) if excess else float("nan")


class ForecastReport(BaseModel):
    """Mean angular error t+1..t+H frames ahead for a model and the two standard baselines."""

    model_config = ConfigDict(frozen=True)
    n_windows: int
    model_deg: list[float]
    hold_last_deg: list[float]
    constant_velocity_deg: list[float]

    @property
    def model_mean(self) -> float:
        return float(np.mean(self.model_deg))


def hold_last(observed: np.ndarray, horizons: int = HORIZONS) -> np.ndarray:
    """(M, W, 3) observed windows -> (M, H, 3): the last observation repeated."""
    return np.repeat(observed[:, -1:, :], horizons, axis=1)


def constant_velocity(observed: np.ndarray, horizons: int = HORIZONS) -> np.ndarray:
    """(M, W, 3) observed windows -> (M, H, 3): the last pitch/yaw step extrapolated linearly."""
    last, prev = vector_to_pitchyaw(observed[:, -1]), vector_to_pitchyaw(observed[:, -2])
    steps = np.arange(1, horizons + 1)[None, :, None]
    return pitchyaw_to_vector(last[:, None, :] + steps * (last - prev)[:, None, :])


def forecast(pred_future: np.ndarray, true_future: np.ndarray, observed: np.ndarray) -> ForecastReport:
    """Per-horizon mean error of (M, H, 3) predictions, and of hold-last / constant-velocity on `observed` (M, W, 3)."""
    per_h = lambda p: [float(v) for v in angular_error_deg(p, true_future).mean(axis=0)]  # noqa: E731
    h = true_future.shape[1]
    return ForecastReport(n_windows=len(true_future), model_deg=per_h(pred_future),
                          hold_last_deg=per_h(hold_last(observed, h)),
                          constant_velocity_deg=per_h(constant_velocity(observed, h)))
