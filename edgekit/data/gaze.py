"""The one gaze convention used everywhere (MPIIGaze / ETH-XGaze normalised camera frame).

Camera frame: x right, y down, z forward. Pitch p and yaw y in radians map to
g = (-cos p sin y, -sin p, -cos p cos y); (0, 0) looks straight into the camera, g = (0, 0, -1).
Beware GazeML's `pitchyaw_to_vector`, which has the opposite sign: never mix the two.
"""

import numpy as np

CONVENTION = "x right, y down, z forward; g=(-cos p sin y, -sin p, -cos p cos y); (0,0) -> (0,0,-1)"


def pitchyaw_to_vector(pitchyaw: np.ndarray) -> np.ndarray:
    """(N, 2) pitch, yaw in radians -> (N, 3) unit gaze vectors (float64 in, same dtype out)."""
    pitchyaw = np.asarray(pitchyaw)
    p, y = pitchyaw[..., 0], pitchyaw[..., 1]
    return np.stack([-np.cos(p) * np.sin(y), -np.sin(p), -np.cos(p) * np.cos(y)], axis=-1)


def vector_to_pitchyaw(gaze: np.ndarray) -> np.ndarray:
    """(N, 3) gaze vectors (any length) -> (N, 2) pitch, yaw in radians."""
    g = np.asarray(gaze, dtype=np.float64)
    g = g / np.linalg.norm(g, axis=-1, keepdims=True)
    pitch = np.arcsin(np.clip(-g[..., 1], -1.0, 1.0))
    yaw = np.arctan2(-g[..., 0], -g[..., 2])
    return np.stack([pitch, yaw], axis=-1)


def readout_vectors(out: np.ndarray, convention: str) -> np.ndarray:
    """A model's (or a spiking readout's) outputs in its card's convention -> unit gaze vectors: pitch and yaw in
    radians through pitchyaw_to_vector, a vector normalised."""
    out = np.asarray(out, np.float64)
    if convention == "pitchyaw_rad":
        if out.shape[-1] != 2:
            raise ValueError(f"a pitch/yaw readout has 2 values, not {out.shape[-1]}")
        return pitchyaw_to_vector(out)
    return out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
