import numpy as np

from edgekit.data.metrics import angular_error_deg
from edgekit.data.sequences import gaze_trajectory
from edgekit.data.synthetic import synthetic_sequences


def test_trajectory_has_fixations_saccades_and_plausible_speeds():
    fps = 60.0
    py, labels = gaze_trajectory(np.random.default_rng(0), 6000, fps)
    assert py.shape == (6000, 2) and set(np.unique(labels)) == {0, 1, 2}
    from edgekit.data.gaze import pitchyaw_to_vector

    speed = angular_error_deg(pitchyaw_to_vector(py[1:]), pitchyaw_to_vector(py[:-1])) * fps  # deg/s
    fix = labels[1:] == 0
    assert np.median(speed[fix]) < 5  # fixations hold still up to a slow drift
    assert 100 < np.percentile(speed[labels[1:] == 1], 90) < 900  # saccades: hundreds of deg/s, bounded
    assert np.degrees(np.abs(py[:, 0])).max() <= 25 + 1e-9 and np.degrees(np.abs(py[:, 1])).max() <= 35 + 1e-9
    assert 0.5 < fix.mean() < 0.9


def test_sequences_freeze_appearance_and_stamp_time():
    gs = synthetic_sequences(2, 30, seed=5, cache=False, workers=1)
    assert len(gs) == 60 and gs.meta["fps"] == 60.0
    assert np.array_equal(gs.seq_id, np.repeat([0, 1], 30))
    assert np.allclose(np.diff(gs.timestamp_s[:30]), 1 / 60.0)
    # same eye within a sequence: consecutive frames are far more alike than frames of different sequences
    within = np.abs(gs.images[1].astype(int) - gs.images[0]).mean()
    across = np.abs(gs.images[30].astype(int) - gs.images[0]).mean()
    assert within < across
