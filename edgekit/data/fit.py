"""Fitting a gaze set to a model: its image size (refused, or resized when asked and then noted) and its size.

Resizing changes what the model sees (a 36x60 eye stretched to 40x64 changes its aspect ratio), so it is never done
silently: a set of another size is refused unless the caller asks for the resize, and then the report says so.
numpy and cv2 only (no torch): `edgekit data check` uses it too.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from edgekit.data.npz import GazeSet
from edgekit.errors import BadInputError

if TYPE_CHECKING:
    from edgekit.models.card import InputSpec, ModelCard

MIN_MEANINGFUL_SAMPLES = 100  # below this a mean error (and the predict-the-mean baseline) is mostly noise
_ROLE_NAMES = {"eval": "evaluation set", "calib": "calibration set", "train": "training set"}
_SMALL_SET_CONSEQUENCE = {
    "eval": f"the mean error and the predict-the-mean baseline are not meaningful under {MIN_MEANINGFUL_SAMPLES}",
    "calib": f"INT8 ranges calibrated on under {MIN_MEANINGFUL_SAMPLES} samples may not cover real inputs",
}


def role_name(role: str) -> str:
    """'eval' -> 'evaluation set', 'calib' -> 'calibration set'; any other role is used as it is."""
    return _ROLE_NAMES.get(role, role)


def small_set_warning(gs: GazeSet, role: str) -> str | None:
    """A one-line warning when the set has fewer than 100 samples, else None."""
    n = len(gs)
    if n >= MIN_MEANINGFUL_SAMPLES:
        return None
    consequence = _SMALL_SET_CONSEQUENCE.get(role, f"a mean error or INT8 calibration from under {MIN_MEANINGFUL_SAMPLES} "
                                                   "samples is not meaningful")
    return f"{role_name(role)} has {n} sample{'' if n == 1 else 's'}: {consequence}"


def hxw(size) -> str:
    return f"{int(size[0])}x{int(size[1])}"


def aspect_change(have, want) -> str:
    """'aspect ratio 1.67 -> 1.60' (width / height), or 'aspect ratio 1.60 kept'."""
    before, after = have[1] / have[0], want[1] / want[0]
    if f"{before:.2f}" == f"{after:.2f}":
        return f"aspect ratio {after:.2f} kept"
    return f"aspect ratio {before:.2f} -> {after:.2f}"


def resize_images(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (N,H,W) or (N,H,W,C) -> the same layout at size (H, W), cv2.INTER_AREA (as the card's preprocessing)."""
    import cv2  # why: lazy, keeps importing the format cheap

    h, w = (int(v) for v in size)
    resized = np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in images])
    return resized.reshape(len(images), h, w, *images.shape[3:])  # cv2 drops a trailing channel of 1


def resized_set(gs: GazeSet, size: tuple[int, int]) -> GazeSet:
    """The set with its eye images at size (H, W); meta's preprocessing records the resize."""
    if gs.image_shape[:2] == tuple(size):
        return gs
    step = f"resized from {hxw(gs.image_shape)} to {hxw(size)} (cv2.INTER_AREA)"
    return replace(gs, images=resize_images(gs.images, size), meta={**gs.meta, "preprocessing": _after(gs.meta, step)})


def fit_to_model(gs: GazeSet, card: ModelCard, role: str, resize: bool) -> tuple[GazeSet, list[str]]:
    """The set with every image at the size the model takes, and the report notes saying what was resized.

    Images of another size are refused (BadInputError naming the set, both sizes and the fix) unless `resize`; then
    they are resized (cv2.INTER_AREA) and each resize is one note. Extra image arrays (a face crop) are fitted to their
    own inputs the same way. A set that already fits comes back unchanged, with no notes."""
    mismatches = _mismatches(gs, card)
    if mismatches and not resize:
        raise _refusal(gs, role, *mismatches[0])
    notes = []
    for key, have, want in mismatches:
        if key is None:
            gs = resized_set(gs, want)
            notes.append(f"{role_name(role)} resized from {hxw(have)} to {hxw(want)} ({aspect_change(have, want)})")
        else:
            step = f"extra '{key}' resized from {hxw(have)} to {hxw(want)} (cv2.INTER_AREA)"
            gs = replace(gs, extras={**gs.extras, key: resize_images(gs.extras[key], want)},
                         meta={**gs.meta, "preprocessing": _after(gs.meta, step)})
            notes.append(f"{role_name(role)}'s extra '{key}' resized from {hxw(have)} to {hxw(want)} "
                         f"({aspect_change(have, want)})")
    return gs, notes


def _mismatches(gs: GazeSet, card: ModelCard) -> list[tuple[str | None, tuple[int, int], tuple[int, int]]]:
    """(extra name or None for the eye images, the set's size, the input's size) for each image not at its input's size."""
    out = []
    if card.image_input.takes_pixels and gs.image_shape[:2] != tuple(card.image_size):
        out.append((None, gs.image_shape[:2], tuple(card.image_size)))
    for spec in card.inputs[1:]:
        arr = gs.extras.get(spec.source)
        if arr is not None and _is_image_for(arr, spec) and arr.shape[1:3] != tuple(spec.shape[2:]):
            out.append((spec.source, tuple(arr.shape[1:3]), tuple(spec.shape[2:])))
    return out


def _is_image_for(arr: np.ndarray, spec: InputSpec) -> bool:
    """An extra array the card's preprocessing treats as an image (edgekit.evalset feeds it through Preprocessing)."""
    return arr.dtype == np.uint8 and arr.ndim in (3, 4) and len(spec.shape) == 4


def _refusal(gs: GazeSet, role: str, key: str | None, have, want) -> BadInputError:
    name = f"{role_name(role)} {gs.meta.get('source', '')!r}"
    if key is None:
        return BadInputError(
            f"{name} has {hxw(have)} images but the model takes {hxw(want)}; fix: pass --resize (resize=True in Python) to "
            f"resize them ({aspect_change(have, want)}), or write a resized copy once with "
            f"`edgekit data convert npz IN.npz OUT.npz --size {hxw(want)}`")
    return BadInputError(
        f"{name}: extra '{key}' has {hxw(have)} images but the model's input fed from it takes {hxw(want)}; fix: pass "
        f"--resize (resize=True in Python) to resize them ({aspect_change(have, want)}), or store '{key}' at {hxw(want)}")


def _after(meta: dict, step: str) -> str:
    """meta's preprocessing with one more step."""
    before = meta.get("preprocessing") or "none"
    return step if before == "none" else f"{before}; {step}"
