"""ETH-XGaze normalised face patches -> GazeSet.

Layout: `<root>/{train,test}/subjectNNNN.h5` with `face_patch` (N,H,W,3 BGR uint8), `face_gaze` (N,2 pitch/yaw rad),
`face_head_pose` (N,2); the test split ships no labels.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgekit._optional import require
from edgekit.data.gaze import pitchyaw_to_vector
from edgekit.data.npz import GazeSet, make_meta
from edgekit.errors import BadInputError

_KEYS = ("face_patch", "face_gaze", "face_head_pose")


def _files(path: Path, split: str) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise BadInputError(f"{path}: no such file or directory; fix: give the ETH-XGaze root or one subjectNNNN.h5")
    if split not in ("train", "test"):
        raise BadInputError(f"{path}: split {split!r} is not 'train' or 'test'; fix: use split='train'")
    if split == "test":
        raise BadInputError(f"{path / 'test'}: ETH-XGaze test files have no gaze labels; fix: use split='train'")
    files = sorted((path / split).glob("subject*.h5"))
    if not files:
        raise BadInputError(f"{path / split}: no subject*.h5 files found; fix: point root at the ETH-XGaze folder holding {split}/")
    return files


def load_ethxgaze(root_or_file, split: str = "train", size: tuple[int, int] | None = None, gray: bool = True,
                  limit: int | None = None) -> GazeSet:
    """Face patches with gaze and head pose; gray=True converts BGR to gray, `size=(H, W)` resizes (INTER_AREA)."""
    h5py = require("h5py", "reading ETH-XGaze .h5 files")
    path = Path(root_or_file)
    files = _files(path, split)
    images, pitchyaw, head, seq = [], [], [], []
    total = 0
    for index, file in enumerate(files):
        if limit is not None and total >= limit:
            break
        try:
            h5 = h5py.File(file, "r")
        except OSError as exc:
            raise BadInputError(f"{file}: not a readable HDF5 file ({exc}); fix: re-download or delete it") from None
        with h5:
            if "face_patch" in h5 and "face_gaze" not in h5:
                raise BadInputError(f"{file}: no 'face_gaze' labels (ETH-XGaze test files are unlabelled); fix: use train files")
            for key in _KEYS:
                if key not in h5:
                    raise BadInputError(f"{file}: missing key '{key}' (has {sorted(h5.keys())}); fix: use an ETH-XGaze subject file")
            n = h5["face_patch"].shape[0]
            if h5["face_gaze"].shape != (n, 2) or h5["face_head_pose"].shape != (n, 2):
                raise BadInputError(f"{file}: {n} face patches but face_gaze {h5['face_gaze'].shape} and face_head_pose "
                                    f"{h5['face_head_pose'].shape}; fix: use an intact subject file")
            take = n if limit is None else min(n, limit - total)
            # slice before reading: a subject file holds thousands of patches
            patches = np.asarray(h5["face_patch"][:take])
            pitchyaw.append(np.asarray(h5["face_gaze"][:take], dtype=np.float64))
            head.append(np.asarray(h5["face_head_pose"][:take], dtype=np.float32))
        if patches.ndim != 4 or patches.shape[-1] != 3:
            raise BadInputError(f"{file}: face_patch has shape {patches.shape}, expected (N,H,W,3) BGR; fix: use an ETH-XGaze subject file")
        for img in patches.astype(np.uint8):
            if gray:
                img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
            if size is not None:
                img = cv2.resize(img, (int(size[1]), int(size[0])), interpolation=cv2.INTER_AREA)
            images.append(img)
        seq.append(np.full(take, index, dtype=np.int32))
        total += take
    if not images:
        raise BadInputError(f"{path}: no samples found; fix: check the files are non-empty and limit > 0")

    py = np.concatenate(pitchyaw)
    # ETH-XGaze pitch/yaw use edgekit's convention (pitch = arcsin(-g_y), yaw = atan2(-g_x, -g_z)): no sign change
    gaze = pitchyaw_to_vector(py).astype(np.float32)
    steps = ["BGR->gray (cv2.COLOR_BGR2GRAY)"] if gray else []
    if size is not None:
        steps.append(f"resize to {int(size[0])}x{int(size[1])} (cv2.INTER_AREA)")
    meta = make_meta(source=f"ethxgaze:{path.resolve().name}", layout="NHW" if gray else "NHWC",
                     color="gray" if gray else "bgr", fps=None, preprocessing="; ".join(steps) or "none",
                     loader="ethxgaze", split=split, subjects=[f.stem for f in files[:len(seq)]])
    return GazeSet(images=np.stack(images), gaze=gaze, meta=meta, pitchyaw=py.astype(np.float32),
                   head_pose=np.concatenate(head), seq_id=np.concatenate(seq))
