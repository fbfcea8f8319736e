"""Gaze trajectories for temporal models: fixations, saccades and smooth pursuit at a fixed frame rate.

Fixations last 150-400 ms with a slow random-walk drift; saccades move 2-25 degrees with duration
2.2 ms/deg + 21 ms (a 10 degree saccade takes ~45-60 ms, peak velocity of a few hundred deg/s) along a
minimum-jerk profile; smooth pursuit moves at 5-30 deg/s for 300-1000 ms. Targets stay inside the
renderer's pitch and yaw ranges (reference/gaze.md section 2).
"""

from __future__ import annotations

import numpy as np

from edgekit.data.render import PITCH_RANGE_DEG, YAW_RANGE_DEG

_LO = np.radians([PITCH_RANGE_DEG[0], YAW_RANGE_DEG[0]])
_HI = np.radians([PITCH_RANGE_DEG[1], YAW_RANGE_DEG[1]])
DRIFT_DEG_PER_SQRT_S = 0.5
PURSUIT_PROBABILITY = 0.25


def _min_jerk(n: int) -> np.ndarray:
    """Fraction of the movement done at each of n frames (smooth start and stop)."""
    s = np.arange(1, n + 1) / n
    return 10 * s**3 - 15 * s**4 + 6 * s**5


def gaze_trajectory(rng: np.random.Generator, n_frames: int, fps: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    """(n_frames, 2) pitch/yaw in radians and an int8 (n_frames,) movement label (0 fix, 1 saccade, 2 pursuit)."""
    dt = 1.0 / fps
    pos = rng.uniform(_LO * 0.8, _HI * 0.8)
    out, labels = [], []
    while len(out) < n_frames:
        # fixation with random-walk drift
        k = max(1, int(round(rng.uniform(0.15, 0.40) / dt)))
        drift = rng.normal(0, np.radians(DRIFT_DEG_PER_SQRT_S) * np.sqrt(dt), size=(k, 2)).cumsum(axis=0)
        out.extend(np.clip(pos + drift, _LO, _HI))
        labels.extend([0] * k)
        pos = out[-1]
        if rng.random() < PURSUIT_PROBABILITY:
            speed = np.radians(rng.uniform(5, 30))
            k = max(1, int(round(rng.uniform(0.3, 1.0) / dt)))
            direction = rng.normal(size=2)
            direction /= np.linalg.norm(direction)
            path = pos + np.outer(np.arange(1, k + 1) * dt * speed, direction)
            out.extend(np.clip(path, _LO, _HI))
            labels.extend([2] * k)
        else:
            amplitude = rng.uniform(2, 25)
            direction = rng.normal(size=2)
            direction /= np.linalg.norm(direction)
            target = np.clip(pos + np.radians(amplitude) * direction, _LO, _HI)
            amplitude = np.degrees(np.linalg.norm(target - pos))
            k = max(1, int(round((0.0022 * amplitude + 0.021) / dt)))
            out.extend(pos + np.outer(_min_jerk(k), target - pos))
            labels.extend([1] * k)
        pos = out[-1]
    return np.asarray(out[:n_frames]), np.asarray(labels[:n_frames], np.int8)
