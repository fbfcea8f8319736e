"""Extra views rendered beside each eye image, for models that take more than one eye crop (iTracker-style).

`second_eye`: the other eye of the same face looking the same way, drawn as the mirror image of an eye whose
gaze and head yaw are mirrored (a left eye is a mirrored right eye), with its own sensor noise.
`face`: a low-resolution face crop: a head ellipse that turns with the head pose, with both eyes pasted in.
`face_grid`: iTracker's 25x25 binary mask of where the face lies in the camera frame, from head pose and distance.

Views draw from their own random stream, so the eye images of a set are the same bytes with or without them.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from edgekit.data.render import HEAD_RANGE_DEG, Appearance, render_eye

RENDERED_VIEWS = ("second_eye", "face", "face_grid")
GRID = 25  # iTracker's face grid is 25x25 cells


def mirrored(app: Appearance) -> Appearance:
    """The appearance of the other eye: the scene mirrored left-right (x of the eye, principal point, head yaw, shading)."""
    flip = np.array([-1.0, 1.0])
    return replace(app, eye_center=app.eye_center * np.array([-1.0, 1.0, 1.0]), principal=app.principal * flip,
                   head_pitchyaw=app.head_pitchyaw * flip, skin_slope=app.skin_slope * flip)


def render_second_eye(app: Appearance, pitchyaw: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """The other eye looking along the same `pitchyaw`: mirror image of an eye looking along the mirrored gaze."""
    other = render_eye(mirrored(app), np.asarray(pitchyaw) * np.array([1.0, -1.0]), height, width, rng)
    return np.ascontiguousarray(other[:, ::-1])


def _face_box(app: Appearance, size: int) -> tuple[float, float, float]:
    """(centre x, centre y, half width) of the face in a size x size frame: it moves with head yaw and pitch and
    shrinks with distance (30-45 mm eye depth maps to 1.2x-0.8x)."""
    turn = np.degrees(app.head_pitchyaw) / HEAD_RANGE_DEG  # each in [-1, 1]
    scale = 37.5 / app.eye_center[2]
    return size / 2 * (1 + 0.3 * turn[1]), size / 2 * (1 - 0.3 * turn[0]), 0.3 * size * scale


def render_face(app: Appearance, eyes: tuple[np.ndarray, np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W) face crop: skin ellipse on a darker background with both eye renders at the eye positions."""
    height, width = size
    face = np.full((height, width), 0.35 * app.skin, np.float32)
    cx, cy, half = _face_box(app, width)
    cy *= height / width
    cv2.ellipse(face, (int(round(cx)), int(round(cy))), (max(int(half), 1), max(int(half * 1.3), 1)), 0, 0, 360,
                float(app.skin), -1, cv2.LINE_AA)
    eye_w = max(int(round(half * 0.7)), 2)
    eye_h = max(int(round(eye_w * eyes[0].shape[0] / eyes[0].shape[1])), 1)
    for side, eye in zip((1, -1), eyes):  # image right = the subject's right eye (first crop)
        ex = int(round(cx + side * half * 0.45 - eye_w / 2))
        ey = int(round(cy - half * 0.25 - eye_h / 2))
        patch = cv2.resize(eye, (eye_w, eye_h), interpolation=cv2.INTER_AREA).astype(np.float32)
        x0, y0, x1, y1 = max(ex, 0), max(ey, 0), min(ex + eye_w, width), min(ey + eye_h, height)
        if x1 > x0 and y1 > y0:
            face[y0:y1, x0:x1] = patch[y0 - ey:y1 - ey, x0 - ex:x1 - ex]
    return np.clip(np.rint(face), 0, 255).astype(np.uint8)


def face_grid(app: Appearance) -> np.ndarray:
    """float32 (25, 25): 1 where the face lies in the camera frame, else 0."""
    cx, cy, half = _face_box(app, GRID)
    yy, xx = np.mgrid[0:GRID, 0:GRID] + 0.5
    return ((np.abs(xx - cx) <= half) & (np.abs(yy - cy) <= half * 1.3)).astype(np.float32)


def render_views(app: Appearance, pitchyaw: np.ndarray, eye: np.ndarray, sizes: dict[str, list[int]],
                 rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The views named in `sizes` (name -> [H, W]; face_grid ignores it) for one eye image `eye`."""
    height, width = eye.shape
    second = render_second_eye(app, pitchyaw, height, width, rng) if {"second_eye", "face"} & set(sizes) else None
    views = {}
    for name, size in sizes.items():
        if name == "second_eye":
            views[name] = second if list(size) == [height, width] else cv2.resize(second, (size[1], size[0]),
                                                                                 interpolation=cv2.INTER_AREA)
        elif name == "face":
            views[name] = render_face(app, (eye, second), tuple(size))
        elif name == "face_grid":
            views[name] = face_grid(app)
        else:
            raise ValueError(f"no renderer for view {name!r}; known: {RENDERED_VIEWS}")
    return views
