"""Deterministic IR eye-image renderer (geometry and ranges of shared reference/gaze.md, section 2).

A parametric near-eye camera model: a 12 mm eyeball seen by a pinhole camera 30-45 mm away, with
iris and pupil drawn as the perspective projection of 3-D circles, corneal glints from a ring of
LEDs reflected in a spherical cornea, eyelids that follow the head (and the upper lid vertical gaze),
IR-like grey levels, vignetting, gain, gamma, blur and sensor noise. Each image is labelled with the
exact gaze vector used to draw it, so accuracy measured on these images is a real measurement.

`sample_appearance` draws everything but the gaze, so sequences can freeze it and vary only gaze
and noise. Refraction is not modelled: a learned regressor absorbs it (reference/gaze.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgekit.data.gaze import pitchyaw_to_vector

RENDERER_VERSION = 1
EYE_RADIUS_MM = 12.0
CORNEA_RADIUS_MM = 7.8
CORNEA_OFFSET_MM = 5.3  # corneal-sphere centre in front of the rotation centre
LED_RING_RADIUS_MM = 25.0
PITCH_RANGE_DEG = (-25.0, 25.0)
YAW_RANGE_DEG = (-35.0, 35.0)
HEAD_RANGE_DEG = 15.0  # |head pitch|, |head yaw| when head pose is rendered
_SHIFT = 4  # cv2 sub-pixel bits: coordinates are multiplied by 2**_SHIFT


@dataclass(frozen=True)
class Appearance:
    """Everything about one eye image except the gaze direction and the sensor noise sample."""

    eye_center: np.ndarray  # (3,) mm, camera frame
    focal_px: float
    principal: np.ndarray  # (2,) px
    iris_radius: float
    pupil_radius: float
    head_pitchyaw: np.ndarray  # (2,) radians; (0, 0) faces the camera
    corner_scale: float
    openness: float
    skin: float
    skin_slope: np.ndarray  # (2,) grey levels per px in x, y
    sclera: float
    iris: float
    iris_freq: int
    iris_phase: float
    pupil: float
    lash: float
    led_angles: np.ndarray  # (n,) radians on the LED ring
    glint_sigma: float
    vignetting: float
    gain: float
    gamma: float
    blur_sigma: float
    noise_sigma: float


def sample_gaze(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 2) pitch, yaw in radians, uniform over the renderer's ranges."""
    pitch = rng.uniform(*np.radians(PITCH_RANGE_DEG), size=n)
    yaw = rng.uniform(*np.radians(YAW_RANGE_DEG), size=n)
    return np.stack([pitch, yaw], axis=1)


def sample_appearance(rng: np.random.Generator, width: int, head_pose: bool = False) -> Appearance:
    """Draw one eye's appearance (reference/gaze.md ranges); `width` in px sets the focal length."""
    depth = rng.uniform(30.0, 45.0)
    head = np.radians(rng.uniform(-HEAD_RANGE_DEG, HEAD_RANGE_DEG, size=2)) if head_pose else np.zeros(2)
    return Appearance(
        eye_center=np.array([rng.uniform(-2, 2), rng.uniform(-2, 2), depth]),
        focal_px=width * depth / (2 * 1.3 * EYE_RADIUS_MM) * rng.uniform(0.9, 1.1),
        principal=rng.normal(0.0, 0.03 * width, size=2),  # offset from the image centre
        iris_radius=rng.uniform(5.6, 6.2),
        pupil_radius=rng.uniform(1.0, 3.5),
        head_pitchyaw=head,
        corner_scale=rng.uniform(1.0, 1.2),
        openness=rng.uniform(0.5, 1.1),
        skin=rng.uniform(80, 160),
        skin_slope=rng.normal(0.0, 0.6, size=2) * 64.0 / width,
        sclera=rng.uniform(150, 230),
        iris=rng.uniform(40, 130),
        iris_freq=int(rng.integers(8, 30)),
        iris_phase=rng.uniform(0, 2 * np.pi),
        pupil=rng.uniform(5, 35),
        lash=rng.uniform(20, 70),
        led_angles=np.sort(rng.uniform(0, 2 * np.pi, size=int(rng.integers(0, 7)))),
        glint_sigma=rng.uniform(0.5, 1.2) * width / 64.0,
        vignetting=rng.uniform(0.0, 0.4),
        gain=rng.uniform(0.7, 1.2),
        gamma=rng.uniform(0.7, 1.4),
        blur_sigma=rng.uniform(0.0, 1.2) * width / 64.0,
        noise_sigma=rng.uniform(1.0, 8.0),
    )


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _head_rotation(pitchyaw: np.ndarray) -> np.ndarray:
    """Rotation taking the frontal head frame to the camera frame (same angle convention as gaze)."""
    p, y = pitchyaw
    rx = np.array([[1, 0, 0], [0, np.cos(p), np.sin(p)], [0, -np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, -np.sin(y)], [0, 1, 0], [np.sin(y), 0, np.cos(y)]])
    return ry @ rx


class _Camera:
    def __init__(self, app: Appearance, height: int, width: int):
        self.f = app.focal_px
        self.c = np.array([width / 2.0, height / 2.0]) + app.principal

    def project(self, pts: np.ndarray) -> np.ndarray:
        pts = np.atleast_2d(pts)
        return self.f * pts[:, :2] / pts[:, 2:3] + self.c


def _cross(a, b) -> np.ndarray:
    """np.cross of two 3-vectors, the same float64 products and differences (np.cross's generic code was a quarter
    of the renderer's time)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _circle_points(center: np.ndarray, normal: np.ndarray, radius: float, n: int = 48) -> np.ndarray:
    u = _unit(_cross(normal, (0.0, -1.0, 0.0)))
    v = _cross(normal, u)
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)[:, None]
    return center + radius * (np.cos(t) * u + np.sin(t) * v)


def _poly_mask(shape: tuple[int, int], pts_px: np.ndarray) -> np.ndarray:
    """Anti-aliased filled polygon as a float mask in [0, 1] (sub-pixel vertices)."""
    mask = np.zeros(shape, np.uint8)
    pts = np.round((pts_px - 0.5) * (1 << _SHIFT)).astype(np.int32)  # pixel centres at integer + 0.5
    cv2.fillPoly(mask, [pts], 255, lineType=cv2.LINE_AA, shift=_SHIFT)
    return mask.astype(np.float32) / 255.0


def render_eye(app: Appearance, pitchyaw: np.ndarray, height: int, width: int,
               rng: np.random.Generator) -> np.ndarray:
    """Render one uint8 (height, width) IR eye image looking along `pitchyaw`; rng draws the sensor noise."""
    g = pitchyaw_to_vector(np.asarray(pitchyaw, np.float64))
    cam = _Camera(app, height, width)
    E, R = app.eye_center, EYE_RADIUS_MM
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5

    # Eye-region frame follows the head: corners and lids are fixed to it, not to the eyeball.
    head = _head_rotation(app.head_pitchyaw)
    corners = cam.project(E + (head @ np.array([[-R * app.corner_scale, 0, -0.3 * R],
                                                [R * app.corner_scale, 0, -0.3 * R]]).T).T)
    ec = corners.mean(axis=0)
    hw = max(abs(corners[1, 0] - corners[0, 0]) / 2.0, 1.0)
    tilt = (corners[1, 1] - corners[0, 1]) / max(corners[1, 0] - corners[0, 0], 1e-6)

    d_limbus = np.sqrt(R**2 - app.iris_radius**2)
    limbus_px = cam.project(_circle_points(E + d_limbus * g, g, app.iris_radius))
    lc = cam.project(E + d_limbus * g)[0]

    # Sclera shading, then iris with radial texture, limbus ring and dark (IR) pupil.
    d = np.clip(np.abs(xx - ec[0]) / hw, 0, 1.5)
    eye = app.sclera * (1 - 0.35 * d**2)
    iris_mask = _poly_mask((height, width), limbus_px)
    theta = np.arctan2(yy - lc[1], xx - lc[0])
    iris = app.iris * (1 + 0.15 * np.sin(app.iris_freq * theta + app.iris_phase))
    eye = eye * (1 - iris_mask) + iris * iris_mask
    ring = np.zeros((height, width), np.uint8)
    ring_pts = np.round((limbus_px - 0.5) * (1 << _SHIFT)).astype(np.int32)
    cv2.polylines(ring, [ring_pts], True, 255, 1, cv2.LINE_AA, _SHIFT)
    eye = eye - 25.0 * ring.astype(np.float32) / 255.0
    pupil_mask = _poly_mask((height, width), cam.project(_circle_points(E + (d_limbus - 0.5) * g, g, app.pupil_radius, 32)))
    eye = eye * (1 - pupil_mask) + app.pupil * pupil_mask
    eye = np.maximum(eye, _glints(app, g, cam, xx, yy))

    # Lids: parabolas through the corners; the upper lid follows vertical gaze.
    cy = ec[1] + tilt * (xx - ec[0])
    shape = np.clip(1 - ((xx - ec[0]) / hw) ** 2, 0, None)
    upper = cy + (-0.55 * hw * app.openness + 0.6 * (lc[1] - ec[1])) * shape
    lower = cy + (0.35 * hw * app.openness + 0.25 * (lc[1] - ec[1])) * shape
    opening = ((yy > upper) & (yy < lower)).astype(np.float32)
    opening = cv2.GaussianBlur(opening, (0, 0), 0.7 * width / 64.0)
    skin = app.skin + app.skin_slope[0] * (xx - width / 2) + app.skin_slope[1] * (yy - height / 2)
    img = skin * (1 - opening) + eye * opening
    lash_sigma = 0.02 * width
    img = img - app.lash * np.exp(-((yy - upper) ** 2) / (2 * lash_sigma**2)) * (shape > 0)

    # Photometry: vignetting, gain, gamma, blur, sensor noise.
    r2 = ((xx - width / 2) / (width / 2)) ** 2 + ((yy - height / 2) / (width / 2)) ** 2
    img = img * (1 - app.vignetting * r2)
    img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** app.gamma * app.gain
    if app.blur_sigma > 0.2:
        img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), app.blur_sigma)
    img = img + rng.normal(0.0, app.noise_sigma, size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _glints(app: Appearance, g: np.ndarray, cam: _Camera, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Corneal reflections of the LED ring (camera at the origin, LEDs in the z = 0 plane)."""
    out = np.zeros_like(xx)
    if len(app.led_angles) == 0:
        return out
    c = app.eye_center + CORNEA_OFFSET_MM * g
    leds = np.stack([LED_RING_RADIUS_MM * np.cos(app.led_angles), LED_RING_RADIUS_MM * np.sin(app.led_angles),
                     np.zeros_like(app.led_angles)], axis=1)
    normals = _unit(_unit(leds - c) + _unit(-c))  # half-vector: mirror reflection towards the camera
    visible = normals @ g > np.cos(np.radians(40.0))  # on the corneal cap only
    for pt in cam.project(c + CORNEA_RADIUS_MM * normals[visible]):
        out = np.maximum(out, 255.0 * np.exp(-((xx - pt[0]) ** 2 + (yy - pt[1]) ** 2) / (2 * app.glint_sigma**2)))
    return out
