"""MPIIGaze eye patches -> GazeSet: the raw `Data/Normalized/pXX/dayYY.mat` files or hysts' `MPIIGaze.h5`.

Follows hysts/pytorch_mpiigaze tools/preprocess_mpiigaze.py (commit 19096f8): right eyes are mirrored
(image[:, ::-1], gaze and head yaw negated) so every sample looks like a left eye; head pose (Rodrigues) becomes
(pitch, yaw) of the rotated z axis.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgekit._optional import require
from edgekit.data.gaze import pitchyaw_to_vector
from edgekit.data.npz import GazeSet, make_meta
from edgekit.errors import BadInputError

EVAL_DIR = Path("Evaluation Subset") / "sample list for eye image"


def _person_ids(persons, available: list[str], where: Path) -> list[str]:
    if persons is None:
        return available
    ids = [p if isinstance(p, str) else f"p{int(p):02d}" for p in persons]
    missing = [p for p in ids if p not in available]
    if missing:
        raise BadInputError(f"{where}: persons {missing} not found (has {available}); fix: pass persons from that list")
    return ids


def head_pose_pitchyaw(rodrigues: np.ndarray) -> np.ndarray:
    """(N,3) Rodrigues head rotations -> (N,2) pitch, yaw of the head's z axis, as hysts' convert_pose."""
    out = np.empty((len(rodrigues), 2), dtype=np.float64)
    for i, vec in enumerate(np.asarray(rodrigues, dtype=np.float64)):
        z = cv2.Rodrigues(vec)[0][:, 2]
        out[i] = np.arcsin(np.clip(z[1], -1.0, 1.0)), np.arctan2(z[0], z[2])
    return out


def _read_day(path: Path, scipy_io) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]:
    """filenames and {side: {image, gaze, pose}}; squeeze_me turns a one-sample day into scalars, so reshape back."""
    try:
        mat = scipy_io.loadmat(str(path), struct_as_record=False, squeeze_me=True)
    except (ValueError, OSError, NotImplementedError) as exc:
        raise BadInputError(f"{path}: not a readable .mat file ({exc}); fix: re-extract MPIIGaze") from None
    for key in ("data", "filenames"):
        if key not in mat:
            raise BadInputError(f"{path}: missing key '{key}'; fix: use MPIIGaze Data/Normalized day files")
    names = np.atleast_1d(np.asarray(mat["filenames"], dtype=object)).astype(str)
    n = len(names)
    sides = {}
    for side in ("left", "right"):
        struct = getattr(mat["data"], side, None)
        fields = {}
        for key, shape in (("image", (36, 60)), ("gaze", (3,)), ("pose", (3,))):
            arr = getattr(struct, key, None) if struct is not None else None
            if arr is None:
                raise BadInputError(f"{path}: missing key 'data.{side}.{key}'; fix: use MPIIGaze Data/Normalized day files")
            arr = np.asarray(arr)
            if arr.size != n * int(np.prod(shape)):
                raise BadInputError(f"{path}: data.{side}.{key} has shape {arr.shape} for {n} filenames; fix: use an intact day file")
            fields[key] = arr.reshape(n, *shape)
        sides[side] = fields
    return names, sides


def _eval_list(path: Path) -> list[tuple[str, str, str]]:
    """(day, filename, side) rows of an evaluation-subset list."""
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[1] not in ("left", "right") or parts[0].count("/") != 1:
            raise BadInputError(f"{path}: line {lineno} is not 'dayYY/NNNN.jpg left|right'; fix: repair the list")
        day, name = parts[0].split("/")
        rows.append((day, name, parts[1]))
    return rows


def load_mpiigaze_mat(root, persons=None, eval_subset: bool = True, limit: int | None = None) -> GazeSet:
    """Raw MPIIGaze (`<root>/Data/Normalized/pXX/dayYY.mat`); eval_subset keeps the 3,000-per-person listed samples."""
    scipy_io = require("scipy.io", "reading MPIIGaze .mat files")
    root = Path(root)
    norm_dir = root / "Data" / "Normalized"
    if not root.is_dir():
        raise BadInputError(f"{root}: no such directory; fix: point root at the MPIIGaze folder holding Data/Normalized")
    if not norm_dir.is_dir():
        raise BadInputError(f"{norm_dir}: no such directory; fix: point root at the MPIIGaze folder holding Data/Normalized")
    available = sorted(p.name for p in norm_dir.iterdir() if p.is_dir() and p.name.startswith("p"))
    if not available:
        raise BadInputError(f"{norm_dir}: no pXX folders found; fix: extract MPIIGaze Data/Normalized there")
    ids = _person_ids(persons, available, norm_dir)

    images, gaze, pose, seq = [], [], [], []
    for pindex, pid in enumerate(ids):
        if limit is not None and len(images) >= limit:
            break
        days = sorted((norm_dir / pid).glob("day*.mat"))
        if not days:
            raise BadInputError(f"{norm_dir / pid}: no dayYY.mat files found; fix: extract MPIIGaze Data/Normalized there")
        data = {d.stem: _read_day(d, scipy_io) for d in days}
        if eval_subset:
            list_path = root / EVAL_DIR / f"{pid}.txt"
            if not list_path.is_file():
                raise BadInputError(f"{list_path}: evaluation list not found; fix: extract it or pass eval_subset=False")
            picks = []
            for day, name, side in _eval_list(list_path):
                hits = np.flatnonzero(data[day][0] == name) if day in data else []
                if len(hits) == 0:
                    raise BadInputError(f"{list_path}: sample {day}/{name} is not in {norm_dir / pid / (day + '.mat')}; fix: use the matching lists")
                picks.append((day, int(hits[0]), side))
        else:
            picks = [(day, i, side) for day, (names, _) in data.items() for side in ("left", "right") for i in range(len(names))]
        for day, i, side in picks:
            if limit is not None and len(images) >= limit:
                break
            fields = data[day][1][side]
            img, g = fields["image"][i], fields["gaze"][i].astype(np.float64)
            hp = head_pose_pitchyaw(fields["pose"][i][None])[0]
            norm = np.linalg.norm(g)
            if not np.isfinite(norm) or norm == 0:
                raise BadInputError(f"{norm_dir / pid / (day + '.mat')}: {side} sample {i} has a zero gaze vector; fix: drop it")
            g = g / norm  # stored gaze already uses edgekit's frame (pitch = arcsin(-y)); only normalise
            if side == "right":  # mirror to a left eye: flip columns, negate x (= yaw * -1) and head yaw
                img, g, hp = img[:, ::-1], g * np.array([-1.0, 1.0, 1.0]), hp * np.array([1.0, -1.0])
            images.append(np.ascontiguousarray(img, dtype=np.uint8))
            gaze.append(g)
            pose.append(hp)
            seq.append(pindex)
    if not images:
        raise BadInputError(f"{norm_dir}: no samples selected; fix: check persons, the evaluation lists and limit > 0")

    meta = make_meta(source=f"mpiigaze:{root.resolve().name}", layout="NHW", color="gray", fps=None,
                     preprocessing="MPIIGaze normalisation; right eyes mirrored (hysts preprocess_mpiigaze)",
                     loader="mpiigaze-mat", persons=ids, eval_subset=bool(eval_subset))
    return GazeSet(images=np.stack(images), gaze=np.asarray(gaze, dtype=np.float32), meta=meta,
                   head_pose=np.asarray(pose, dtype=np.float32), seq_id=np.asarray(seq, dtype=np.int32))


def load_mpiigaze_h5(path, persons=None, limit: int | None = None) -> GazeSet:
    """hysts' preprocessed `MPIIGaze.h5` (groups pXX/image, pXX/pose, pXX/gaze as pitch/yaw radians)."""
    h5py = require("h5py", "reading MPIIGaze.h5")
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: no such file; fix: give the MPIIGaze.h5 written by hysts' preprocess_mpiigaze.py")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise BadInputError(f"{path}: not a readable HDF5 file ({exc}); fix: regenerate MPIIGaze.h5") from None
    images, pitchyaw, pose, seq = [], [], [], []
    with h5:
        available = sorted(k for k in h5.keys() if k.startswith("p"))
        if not available:
            raise BadInputError(f"{path}: no pXX groups found; fix: regenerate MPIIGaze.h5 with preprocess_mpiigaze.py")
        ids = _person_ids(persons, available, path)
        total = 0
        for pindex, pid in enumerate(ids):
            if limit is not None and total >= limit:
                break
            group = h5[pid]
            for key in ("image", "pose", "gaze"):
                if key not in group:
                    raise BadInputError(f"{path}: missing key '{pid}/{key}'; fix: regenerate MPIIGaze.h5")
            n = group["image"].shape[0]
            if group["gaze"].shape != (n, 2) or group["pose"].shape != (n, 2):
                raise BadInputError(f"{path}: {pid} has {n} images but gaze {group['gaze'].shape} and pose "
                                    f"{group['pose'].shape}; fix: regenerate MPIIGaze.h5")
            take = n if limit is None else min(n, limit - total)
            images.append(np.asarray(group["image"][:take], dtype=np.uint8))
            pitchyaw.append(np.asarray(group["gaze"][:take], dtype=np.float64))
            pose.append(np.asarray(group["pose"][:take], dtype=np.float32))
            seq.append(np.full(take, pindex, dtype=np.int32))
            total += take
    if not images or total == 0:
        raise BadInputError(f"{path}: no samples selected; fix: check persons and limit > 0")
    py = np.concatenate(pitchyaw)
    meta = make_meta(source=f"mpiigaze-h5:{path.name}", layout="NHW", color="gray", fps=None,
                     preprocessing="MPIIGaze normalisation; right eyes mirrored (hysts preprocess_mpiigaze)",
                     loader="mpiigaze-h5", persons=ids[:len(seq)])
    return GazeSet(images=np.concatenate(images), gaze=pitchyaw_to_vector(py).astype(np.float32), meta=meta,
                   pitchyaw=py.astype(np.float32), head_pose=np.concatenate(pose), seq_id=np.concatenate(seq))
