"""Gaze sets from numpy arrays handed to the Python API, validated exactly as an `.npz` file would be."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from edgekit.data.gaze import pitchyaw_to_vector
from edgekit.data.npz import GazeSet, make_meta, read_gazeset
from edgekit.errors import BadInputError

FORWARD = (0.0, 0.0, -1.0)  # the label given to calibration images that come without one (labels are never read there)


def as_gazeset(value, role: str) -> GazeSet | None:
    """None, a GazeSet, a path to an `.npz`, a dict of arrays with the `.npz` keys (images, gaze or pitchyaw, head_pose,
    extra_<name>...), a tuple (images, gaze), or (calibration only) an images array."""
    if value is None or isinstance(value, GazeSet):
        return value
    if isinstance(value, (str, Path)):
        return read_gazeset(value)
    if isinstance(value, tuple) and len(value) == 2:
        value = {"images": value[0], "gaze": value[1]}
    if isinstance(value, np.ndarray):
        if role != "calibration":
            raise BadInputError(f"the {role} set is an array of images without labels; fix: pass a dict "
                                "{'images': ..., 'gaze': ...} (or (images, gaze)), so accuracy can be measured")
        value = {"images": value, "gaze": np.tile(np.float32(FORWARD), (len(value), 1)),
                 "meta": make_meta("arrays (in memory)", labels="none: calibration images only")}
    if not isinstance(value, Mapping):
        raise BadInputError(f"the {role} set is a {type(value).__name__}; fix: pass a path to an .npz, a dict of arrays "
                            "{'images': ..., 'gaze': ...}, a tuple (images, gaze) or a GazeSet")
    return _from_mapping(dict(value), role)


def _from_mapping(arrays: dict, role: str) -> GazeSet:
    meta = arrays.pop("meta", None)
    if meta is None:
        meta = make_meta(f"arrays (in memory, {role})")
    elif not isinstance(meta, dict):
        meta = json.loads(str(meta))
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    if "gaze" not in arrays and "pitchyaw" in arrays:
        arrays["gaze"] = pitchyaw_to_vector(arrays["pitchyaw"].astype(np.float64)).astype(np.float32)
    if "images" in arrays and arrays["images"].ndim == 4 and arrays["images"].shape[-1] == 1:
        arrays["images"] = arrays["images"][..., 0]  # (N,H,W,1) from a channels-last pipeline: the gray layout
    with tempfile.TemporaryDirectory(prefix="edgekit-arrays-") as tmp:
        path = Path(tmp) / f"{role}.npz"
        np.savez(path, meta=np.array(json.dumps(meta)), **arrays)
        try:
            return read_gazeset(path)
        except BadInputError as exc:  # name the argument, not the temporary file
            raise BadInputError(str(exc).replace(str(path), f"the {role} arrays")) from None
