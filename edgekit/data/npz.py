"""The calibration / evaluation set format: one `.npz` readable without edgekit.

Keys: `images` uint8 (N,H,W) or (N,H,W,C); `gaze` float32 (N,3) unit vectors in the convention of
`edgekit.data.gaze`, or instead `pitchyaw` float32 (N,2) radians in that convention (gaze is derived from it);
optional `head_pose` float32 (N,2), `seq_id` int32, `frame_idx` int32, `timestamp_s` float64; optional `meta` a
JSON string (format_version, layout, color, gaze_convention, source, fps, preprocessing; a missing meta or key takes
its default, source = the file name). Loaders for real datasets convert into this; a plain
`numpy.savez(path, images=..., gaze=...)` is a valid set too. Labels stored in another float or integer dtype are cast
on read (float64 gaze -> float32, int64 seq_id -> int32), images never are.

Inputs beyond the eye image and head pose (a second eye crop, a face crop, a face grid) are named extra arrays:
key `extra_<name>`, one row per image, fed to the model input whose card declares `source: <name>`. A uint8 extra
of shape (N,H,W) or (N,H,W,C) is an image (preprocessed like the eye image); any other numeric extra is fed as
float32, reshaped to the input's shape.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgekit.data.gaze import CONVENTION, pitchyaw_to_vector, vector_to_pitchyaw
from edgekit import userfile
from edgekit.errors import BadInputError
from edgekit.fileio import atomic_write

FORMAT_VERSION = 1
UNIT_TOLERANCE = 1e-3  # |norm - 1| allowed for stored gaze vectors
PITCHYAW_AGREEMENT_DEG = 0.1  # gaze and pitchyaw both stored: how far apart they may point (float32 rounding is ~1e-5)
_OPTIONAL = {"pitchyaw": (np.float32, 2), "head_pose": (np.float32, 2), "seq_id": (np.int32, 1),
             "frame_idx": (np.int32, 1), "timestamp_s": (np.float64, 1)}
_REQUIRED_META = ("format_version", "layout", "color", "gaze_convention", "source")
EXTRA_PREFIX = "extra_"


@dataclass(frozen=True, eq=False)
class GazeSet:
    """Eye images with their gaze labels; the in-memory form of the `.npz` format."""

    images: np.ndarray
    gaze: np.ndarray
    meta: dict = field(default_factory=dict)
    pitchyaw: np.ndarray | None = None
    head_pose: np.ndarray | None = None
    seq_id: np.ndarray | None = None
    frame_idx: np.ndarray | None = None
    timestamp_s: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (N, ...) extra input arrays

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

    def subset(self, index) -> GazeSet:
        """Rows selected by a slice, boolean mask or integer index array."""
        pick = {k: (v[index] if v is not None else None) for k, v in self._arrays().items() if k in _FIELDS}
        return replace(self, **pick, extras={k: v[index] for k, v in self.extras.items()})

    def digest(self) -> str:
        """sha256 over the arrays and meta: identifies the set in cache keys and reports."""
        h = hashlib.sha256()
        for name, arr in sorted(self._arrays().items()):
            if arr is not None:
                h.update(name.encode())
                h.update(str(arr.dtype).encode() + str(arr.shape).encode())
                h.update(np.ascontiguousarray(arr).tobytes())
        h.update(json.dumps(self.meta, sort_keys=True).encode())
        return h.hexdigest()

    def _arrays(self) -> dict[str, np.ndarray | None]:
        """Every array by its key in the .npz (extras as extra_<name>)."""
        return {"images": self.images, "gaze": self.gaze, **{k: getattr(self, k) for k in _OPTIONAL},
                **{EXTRA_PREFIX + k: v for k, v in self.extras.items()}}


_FIELDS = ("images", "gaze", *_OPTIONAL)


def make_meta(source: str, *, layout: str = "NHW", color: str = "gray", fps: float | None = None,
              preprocessing: str = "none", **extra) -> dict:
    """Metadata with every required key filled in."""
    meta = {"format_version": FORMAT_VERSION, "layout": layout, "color": color,
            "gaze_convention": CONVENTION, "source": source, "fps": fps, "preprocessing": preprocessing}
    meta.update(extra)
    return meta


def write_gazeset(gazeset: GazeSet, path: str | os.PathLike) -> Path:
    """Validate and write atomically (a temporary file renamed into place); returns the path."""
    validate(gazeset, where=str(path))
    path = Path(path)
    if path.suffix != ".npz":
        raise BadInputError(f"{path}: gaze sets are written as .npz; fix: give a path ending in .npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: v for k, v in gazeset._arrays().items() if v is not None}
    if "pitchyaw" not in arrays:
        arrays["pitchyaw"] = vector_to_pitchyaw(gazeset.gaze).astype(np.float32)
    meta = np.array(json.dumps(gazeset.meta, sort_keys=True))

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: given a name, numpy would append ".npz"
            np.savez_compressed(fh, meta=meta, **arrays)

    return atomic_write(path, write)


def read_gazeset(path: str | os.PathLike) -> GazeSet:
    """Read and validate a gaze-set `.npz`; every problem is one BadInputError naming the file and the fix."""
    path = Path(path)
    fix_missing = "check the path (make one with `edgekit demo dataset`)"
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such gaze-set file; fix: {fix_missing}") from None
    except OSError as exc:
        raise userfile.fail(path, exc, "gaze-set .npz") from None
    with fh:
        _check_zip(path, fh.read(8), os.fstat(fh.fileno()).st_size)
        fh.seek(0)
        contents = _read_arrays(path, fh)
    _require_labels(path, contents)
    meta = _meta(path, contents.pop("meta"), contents["images"]) if "meta" in contents else None
    meta = meta or default_meta(path, contents["images"])
    extras = {k[len(EXTRA_PREFIX):]: contents.pop(k) for k in list(contents) if k.startswith(EXTRA_PREFIX)}
    unknown = set(contents) - set(_FIELDS)
    if unknown:
        raise BadInputError(f"{path}: unknown keys {sorted(unknown)}; fix: keep only images, gaze, meta and {sorted(_OPTIONAL)}, "
                            f"and name extra model inputs {EXTRA_PREFIX}<name> (e.g. {EXTRA_PREFIX}face)")
    contents = _cast_labels(path, contents)
    if "gaze" not in contents:  # labelled by pitch and yaw only: the vectors follow from edgekit's convention
        contents["gaze"] = _derived_gaze(path, contents["pitchyaw"])
    gazeset = GazeSet(meta=meta, extras=extras, **contents)
    validate(gazeset, where=str(path))
    if gazeset.pitchyaw is None:
        # filled in as write_gazeset does, so a set read from a plain file and its edgekit-written copy share a digest
        gazeset = replace(gazeset, pitchyaw=vector_to_pitchyaw(gazeset.gaze).astype(np.float32))
    return gazeset


_WANT = {"images": "'images' (uint8, N,H,W or N,H,W,C)", "gaze": "'gaze' (float32, N,3 unit vectors)"}
_CASTS = {"gaze": np.float32, **{k: dtype for k, (dtype, _) in _OPTIONAL.items()}}  # label key -> the format's dtype


def default_meta(path: Path, images: np.ndarray) -> dict:
    """The meta of a file that stores none: named after the file, layout and colour read off the images."""
    color_images = images.ndim == 4 and images.shape[-1] == 3
    return make_meta(Path(path).name, layout="NHWC" if images.ndim == 4 else "NHW", color="bgr" if color_images else "gray")


def _require_labels(path: Path, contents: dict[str, np.ndarray]) -> None:
    if "images" not in contents:
        raise BadInputError(f"{path}: missing key 'images' (has {sorted(contents)}); fix: add {_WANT['images']}")
    if "gaze" not in contents and "pitchyaw" not in contents:
        raise BadInputError(f"{path}: missing key 'gaze' (has {sorted(contents)}); fix: add {_WANT['gaze']} "
                            "or 'pitchyaw' (float32, N,2 pitch and yaw in radians)")


def _cast_labels(path: Path, contents: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """numpy writes float64 and int64 by default: labels in another float (or integer) dtype become the format's dtype;
    a cast that would change integer values is refused, and images are never cast (their scale would be a guess)."""
    out = dict(contents)
    for key, dtype in _CASTS.items():
        arr = out.get(key)
        if arr is None or arr.dtype == dtype:
            continue
        want = np.dtype(dtype)
        if want.kind == "f" and arr.dtype.kind == "f":
            out[key] = arr.astype(want)
        elif want.kind == "i" and arr.dtype.kind in "iu":
            info = np.iinfo(want)
            if arr.size and (arr.min() < info.min or arr.max() > info.max):
                raise BadInputError(f"{path}: '{key}' holds values outside {want.name}; fix: renumber {key} from 0")
            out[key] = arr.astype(want)
    return out


def _derived_gaze(path: Path, pitchyaw: np.ndarray) -> np.ndarray:
    """Unit gaze vectors from (N, 2) pitch, yaw in radians; a malformed array is named here, before any maths."""
    if pitchyaw.ndim != 2 or pitchyaw.shape[1] != 2 or pitchyaw.dtype.kind != "f":
        raise BadInputError(f"{path}: 'pitchyaw' must be float32 (N, 2), got {pitchyaw.dtype} of shape {pitchyaw.shape}; "
                            "fix: store one (pitch, yaw) pair in radians per image")
    _check_pitchyaw(pitchyaw, str(path))
    return pitchyaw_to_vector(pitchyaw.astype(np.float64)).astype(np.float32)


def _check_pitchyaw(pitchyaw: np.ndarray, where: str) -> None:
    """Radians within pitch +-pi/2 and yaw +-pi; degrees are the usual mistake."""
    if not np.isfinite(pitchyaw).all():
        bad = int(np.flatnonzero(~np.isfinite(pitchyaw).all(axis=1))[0])
        raise BadInputError(f"{where}: 'pitchyaw' has NaN or inf (first at row {bad}); fix: drop or relabel those rows")
    outside = (np.abs(pitchyaw[:, 0]) > np.pi / 2 + 1e-4) | (np.abs(pitchyaw[:, 1]) > np.pi + 1e-4)
    if outside.any():
        bad = int(np.flatnonzero(outside)[0])
        p, y = (float(v) for v in pitchyaw[bad])
        raise BadInputError(f"{where}: 'pitchyaw' row {bad} is ({p:.4g}, {y:.4g}), beyond pitch +-pi/2 and yaw +-pi "
                            "radians (degrees?); fix: store radians (numpy.radians)")


_FIX_NPZ = "write the set with edgekit.data.write_gazeset (or numpy.savez_compressed)"


def _check_zip(path: Path, head: bytes, size: int) -> None:
    """An npz is a zip of .npy files: say what the file is instead, before numpy tries to unpickle it."""
    if size == 0:
        raise BadInputError(f"{path}: not a readable .npz: empty file (0 bytes); fix: {_FIX_NPZ}")
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return
    if head.startswith(b"\x93NUMPY"):
        raise BadInputError(f"{path}: not a readable .npz: a single .npy array, not an npz (zip) archive; fix: {_FIX_NPZ}")
    if all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        raise BadInputError(f"{path}: not a readable .npz: a text file (starts {head.decode('ascii')!r}), not an npz (zip) "
                            f"archive; fix: {_FIX_NPZ}")
    raise BadInputError(f"{path}: not a readable .npz: not an npz (zip) archive (starts with bytes {head!r}, a zip starts "
                        f"with 'PK'); fix: {_FIX_NPZ}")


def _read_arrays(path: Path, fh) -> dict[str, np.ndarray]:
    """Every array, read now (a truncated member fails here, not later); object arrays are refused, never unpickled."""
    try:
        npz = np.load(fh, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        raise BadInputError(f"{path}: not a readable .npz: truncated or corrupt zip archive ({exc}); fix: {_FIX_NPZ}") from None
    contents = {}
    with npz:
        for key in npz.files:
            try:
                contents[key] = npz[key]
            except ValueError as exc:
                if "allow_pickle" in str(exc):
                    raise BadInputError(f"{path}: key '{key}' holds Python objects (pickled), which edgekit never loads; "
                                        f"fix: store it as a plain numeric array (meta as a JSON string)") from None
                raise BadInputError(f"{path}: key '{key}' is unreadable ({exc}); fix: {_FIX_NPZ}") from None
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
                raise BadInputError(f"{path}: not a readable .npz: key '{key}' is truncated or corrupt ({exc}); fix: {_FIX_NPZ}") from None
    return contents


def _meta(path: Path, raw: np.ndarray, images: np.ndarray) -> dict:
    """The stored meta JSON; keys it lacks take their defaults (default_meta)."""
    if raw.dtype.kind not in "US" or raw.ndim != 0:
        raise BadInputError(f"{path}: 'meta' must be one JSON string, got a {raw.dtype} array of shape {raw.shape}; "
                            "fix: store meta=numpy.array(json.dumps(make_meta(...))) or leave meta out")
    try:
        meta = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{path}: 'meta' is not valid JSON ({exc}); fix: store meta as a JSON string") from None
    if not isinstance(meta, dict):
        raise BadInputError(f"{path}: 'meta' must be a JSON object, got {type(meta).__name__}; "
                            "fix: build it with edgekit.data.make_meta")
    return {**default_meta(path, images), **meta}


def validate(gs: GazeSet, where: str = "gaze set") -> None:
    """Raise BadInputError on the first problem: shapes, dtypes, NaN, non-unit gaze, meta keys."""
    def fail(problem: str, fix: str) -> None:
        raise BadInputError(f"{where}: {problem}; fix: {fix}")

    images, gaze = gs.images, gs.gaze
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        fail(f"'images' must be uint8, got {getattr(images, 'dtype', type(images).__name__)}", "convert images to uint8 0-255")
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
        fail(f"'images' must be (N,H,W) or (N,H,W,C) with C in 1 or 3, got shape {images.shape}", "store one image per row")
    n = images.shape[0]
    if n == 0:
        fail("the set is empty", "store at least one image")
    if not isinstance(gaze, np.ndarray) or gaze.shape != (n, 3):
        fail(f"'gaze' must have shape ({n}, 3) to match {n} images, got {getattr(gaze, 'shape', None)}", "store one 3-D gaze vector per image")
    if gaze.dtype != np.float32:
        fail(f"'gaze' must be float32, got {gaze.dtype}", "store gaze as float32")
    if not np.isfinite(gaze).all():
        bad = int(np.flatnonzero(~np.isfinite(gaze).all(axis=1))[0])
        fail(f"'gaze' has NaN or inf (first at row {bad})", "drop or relabel those rows")
    norms = np.linalg.norm(gaze.astype(np.float64), axis=1)
    off = np.abs(norms - 1.0) > UNIT_TOLERANCE
    if off.any():
        bad = int(np.flatnonzero(off)[0])
        fail(f"'gaze' row {bad} has norm {norms[bad]:.4f}, not a unit vector", "normalise gaze vectors (g / |g|)")
    for key, (dtype, width) in _OPTIONAL.items():
        arr = getattr(gs, key)
        if arr is None:
            continue
        want = (n, width) if width > 1 else (n,)
        if arr.shape != want:
            fail(f"'{key}' must have shape {want}, got {arr.shape}", f"store one {key} entry per image")
        if arr.dtype != dtype:
            fail(f"'{key}' must be {np.dtype(dtype).name}, got {arr.dtype}", f"cast {key} to {np.dtype(dtype).name}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            fail(f"'{key}' has NaN or inf", "drop or fix those rows")
    if gs.pitchyaw is not None:
        _check_pitchyaw(gs.pitchyaw, where)
        _check_agreement(gs, where)
    for name, arr in gs.extras.items():
        key = EXTRA_PREFIX + name
        if not name.isidentifier():
            fail(f"extra array name {name!r} is not an identifier", "name extra arrays with letters, digits and _")
        if not isinstance(arr, np.ndarray) or arr.ndim < 2 or arr.shape[0] != n:
            fail(f"'{key}' must have one row per image ({n}, ...), got shape {getattr(arr, 'shape', None)}",
                 f"store one {name} entry per image")
        if arr.dtype.kind not in "uif":
            fail(f"'{key}' must be numeric, got {arr.dtype}", f"store {name} as uint8 (an image) or float32")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            fail(f"'{key}' has NaN or inf", "drop or fix those rows")
    missing = [k for k in _REQUIRED_META if k not in gs.meta]
    if missing:
        fail(f"meta lacks {missing}", "build meta with edgekit.data.make_meta")
    layout = "NHW" if images.ndim == 3 else "NHWC"
    if gs.meta["layout"] != layout:
        fail(f"meta says layout {gs.meta['layout']!r} but images are {layout}", f"set meta layout to {layout!r}")


def _check_agreement(gs: GazeSet, where: str) -> None:
    """Stored both ways, gaze and pitchyaw must describe the same direction: another sign convention (GazeML's) or
    swapped columns would otherwise score the model against whichever one a reader happens to use."""
    from_pitchyaw = pitchyaw_to_vector(gs.pitchyaw.astype(np.float64))
    cos = np.clip(np.sum(from_pitchyaw * gs.gaze.astype(np.float64), axis=1), -1.0, 1.0)
    apart = np.degrees(np.arccos(cos))
    if (apart > PITCHYAW_AGREEMENT_DEG).any():
        bad = int(np.argmax(apart > PITCHYAW_AGREEMENT_DEG))
        raise BadInputError(f"{where}: 'pitchyaw' row {bad} points {apart[bad]:.2f} deg away from 'gaze' row {bad}; fix: "
                            "store pitchyaw in edgekit's convention (edgekit.data.vector_to_pitchyaw(gaze)), or leave it out")
