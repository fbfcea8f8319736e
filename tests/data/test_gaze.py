import numpy as np

from edgekit.data.gaze import pitchyaw_to_vector, vector_to_pitchyaw


def test_straight_ahead_looks_into_the_camera():
    assert np.allclose(pitchyaw_to_vector(np.array([[0.0, 0.0]])), [[0, 0, -1]])


def test_positive_yaw_looks_to_negative_x_and_positive_pitch_up():
    # MPIIGaze / ETH-XGaze convention: g = (-cos p sin y, -sin p, -cos p cos y), y axis points down
    g = pitchyaw_to_vector(np.radians([[0.0, 30.0], [20.0, 0.0]]))
    assert g[0, 0] < 0 and abs(g[0, 1]) < 1e-12
    assert g[1, 1] < 0 and abs(g[1, 0]) < 1e-12


def test_round_trip_is_exact():
    py = np.random.default_rng(0).uniform(-0.8, 0.8, size=(1000, 2))
    back = vector_to_pitchyaw(pitchyaw_to_vector(py))
    assert np.abs(back - py).max() < 1e-12
    assert np.allclose(np.linalg.norm(pitchyaw_to_vector(py), axis=1), 1.0)
