import numpy as np
import pytest

from edgekit.data.gaze import pitchyaw_to_vector
from edgekit.data.metrics import (AngularSummary, accuracy, angular_error_deg, constant_velocity, forecast, hold_last,
                                  jitter_deg, rms_s2s_deg, std_deg)


def test_known_angles_and_float64_precision_near_zero():
    assert angular_error_deg([1, 0, 0], [0, 1, 0]) == pytest.approx(90.0)
    assert angular_error_deg([1, 0, 0], [-2, 0, 0]) == pytest.approx(180.0)
    tiny = np.radians(1e-4)
    a = np.float32([0, 0, -1])
    b = np.array([np.sin(tiny), 0, -np.cos(tiny)], np.float32)
    # float32 arccos cannot resolve this; atan2 in float64 gets the float32-rounded value right
    assert angular_error_deg(a, b) == pytest.approx(1e-4, rel=1e-2)


def test_summary_and_per_axis_bias_sign():
    true = pitchyaw_to_vector(np.radians(np.tile([[0.0, 10.0]], (10, 1))))
    pred = pitchyaw_to_vector(np.radians(np.tile([[2.0, 10.0]], (10, 1))))
    s = AngularSummary.of(pred, true)
    assert s.mean_deg == pytest.approx(2.0, abs=1e-9) and s.p95_deg == pytest.approx(2.0, abs=1e-9)
    assert s.pitch.bias_deg == pytest.approx(2.0) and s.yaw.bias_deg == pytest.approx(0.0, abs=1e-9)


def test_accuracy_carries_the_predict_the_mean_baseline():
    rng = np.random.default_rng(0)
    true = pitchyaw_to_vector(rng.uniform(-0.4, 0.4, size=(200, 2)))
    rep = accuracy(true, true)
    assert rep.model.max_deg < 1e-6
    assert rep.predict_mean_baseline.mean_deg > 5


def test_jitter_is_zero_for_a_perfect_tracker_and_positive_for_noise():
    rng = np.random.default_rng(1)
    true = pitchyaw_to_vector(np.radians(np.stack([np.linspace(0, 10, 50), np.zeros(50)], 1)))
    seq = np.zeros(50, np.int32)
    assert jitter_deg(true, true, seq) < 1e-9
    noisy = true + rng.normal(0, 0.005, true.shape)
    assert jitter_deg(noisy, true, seq) > 0.1
    static = np.tile(true[:1], (50, 1)) + rng.normal(0, 0.005, true.shape)
    assert rms_s2s_deg(static) > 0.1
    # STD precision: zero for a frozen gaze, and for independent noise about RMS-S2S / sqrt(2)
    assert std_deg(np.tile(true[:1], (50, 1))) < 1e-9
    assert 0.5 < std_deg(static) * np.sqrt(2) / rms_s2s_deg(static) < 1.5


def test_forecast_baselines_on_linear_motion():
    # yaw moving 1 degree per frame: constant velocity is exact, hold-last is off by h degrees at t+h
    yaw = np.arange(15, dtype=np.float64)
    traj = pitchyaw_to_vector(np.radians(np.stack([np.zeros(15), yaw], 1)))
    observed, future = traj[None, :10], traj[None, 10:]
    assert np.allclose(angular_error_deg(hold_last(observed), future)[0], [1, 2, 3, 4, 5], atol=1e-6)
    assert angular_error_deg(constant_velocity(observed), future).max() < 1e-6
    rep = forecast(future, future, observed)
    assert rep.model_deg == [0.0] * 5 and rep.hold_last_deg[4] == pytest.approx(5.0, abs=1e-6)
