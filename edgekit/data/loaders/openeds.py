"""OpenEDS2020 gaze-prediction sequences -> GazeSet.

Layout: `<root>/<split>/sequences/<seq_id>/<frame>.png` (gray 640x400 IR) and
`<root>/<split>/labels/<seq_id>.txt`, no header, lines `frame_id,x,y,z` (id zero-padded, kept as a string).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgekit.data.npz import GazeSet, make_meta
from edgekit.errors import BadInputError

FPS = 100.0  # OpenEDS2020 sequences are recorded at 100 Hz


def _read_labels(path: Path) -> dict[str, np.ndarray]:
    """frame id string -> raw (x, y, z); the id stays a string so '007' matches '007.png'."""
    labels = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split(",")
        try:
            if len(parts) != 4:
                raise ValueError(f"{len(parts)} fields")
            labels[parts[0].strip()] = np.array([float(v) for v in parts[1:]])
        except ValueError as exc:
            raise BadInputError(f"{path}: line {lineno} is not 'frame_id,x,y,z' ({exc}); fix: repair the label file") from None
    return labels


def _frame_key(stem: str):
    return (0, int(stem), stem) if stem.isdigit() else (1, 0, stem)


def load_openeds2020(root, split: str = "train", size: tuple[int, int] | None = None,
                     limit: int | None = None) -> GazeSet:
    """Labelled frames of one split; `size=(H, W)` resizes with INTER_AREA, `limit` keeps the first N frames."""
    root = Path(root)
    seq_dir, label_dir = root / split / "sequences", root / split / "labels"
    if not root.is_dir():
        raise BadInputError(f"{root}: no such directory; fix: point root at the OpenEDS2020 folder holding {split}/sequences")
    if not seq_dir.is_dir():
        raise BadInputError(f"{seq_dir}: no such directory; fix: point root at the folder holding {split}/sequences and {split}/labels")
    seq_names = sorted(p.name for p in seq_dir.iterdir() if p.is_dir())
    if not seq_names:
        raise BadInputError(f"{seq_dir}: no sequence folders found; fix: check the OpenEDS2020 layout <root>/{split}/sequences/<seq_id>/")

    images, gaze, seq_ids, frames = [], [], [], []
    skipped = 0
    for seq_index, name in enumerate(seq_names):
        pngs = sorted((seq_dir / name).glob("*.png"), key=lambda p: _frame_key(p.stem))
        label_path = label_dir / f"{name}.txt"
        labels = _read_labels(label_path) if label_path.is_file() else {}
        for position, png in enumerate(pngs):
            if limit is not None and len(images) >= limit:
                break
            vec = labels.get(png.stem)
            if vec is None:  # unlabelled frames (e.g. the frames to forecast) cannot calibrate or evaluate
                skipped += 1
                continue
            norm = np.linalg.norm(vec)
            if not np.isfinite(norm) or norm == 0:
                raise BadInputError(f"{label_path}: frame {png.stem} has a zero or non-finite gaze vector; fix: drop or relabel it")
            img = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
            if img is None:
                raise BadInputError(f"{png}: not a readable image; fix: replace or delete the file")
            if size is not None:
                img = cv2.resize(img, (int(size[1]), int(size[0])), interpolation=cv2.INTER_AREA)
            if images and img.shape != images[0].shape:
                raise BadInputError(f"{png}: size {img.shape} differs from {images[0].shape}; fix: pass size=(H, W) to resize")
            images.append(img)
            # OpenEDS gives the 3-D gaze vector in the eye camera frame; the reference note (gaze.md s4/s5) does not
            # document its axis signs, so it is taken as-is (no conversion to edgekit's frame), only normalised.
            gaze.append(vec / norm)
            seq_ids.append(seq_index)
            frames.append(int(png.stem) if png.stem.isdigit() else position)
    if not images:
        raise BadInputError(f"{seq_dir}: no labelled frames found ({skipped} without a label in {label_dir}); "
                            f"fix: use a split with labels (train/validation)")

    frame_idx = np.asarray(frames, dtype=np.int32)
    prep = "none" if size is None else f"resize to {int(size[0])}x{int(size[1])} (cv2.INTER_AREA)"
    meta = make_meta(source=f"openeds2020:{root.resolve().name}", layout="NHW", color="gray", fps=FPS,
                     preprocessing=prep, loader="openeds2020", split=split, sequences=seq_names,
                     skipped_unlabelled=skipped, gaze_axes="as given by OpenEDS2020 (not converted)")
    return GazeSet(images=np.stack(images).astype(np.uint8), gaze=np.asarray(gaze, dtype=np.float32), meta=meta,
                   seq_id=np.asarray(seq_ids, dtype=np.int32), frame_idx=frame_idx,
                   timestamp_s=frame_idx.astype(np.float64) / FPS)
