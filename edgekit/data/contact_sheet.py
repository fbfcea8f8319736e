"""A contact sheet of rendered eyes with their gaze arrows, so a person can see what the renderer makes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgekit.data.npz import GazeSet
from edgekit.fileio import atomic_write_bytes


def contact_sheet(gs: GazeSet, path: str | Path, columns: int = 6, scale: int = 4) -> Path:
    """Tile up to the whole set; each tile shows the image, its gaze arrow (x, y of g) and pitch/yaw."""
    tiles = []
    for i in range(len(gs)):
        img = gs.images[i] if gs.images.ndim == 3 else cv2.cvtColor(gs.images[i], cv2.COLOR_BGR2GRAY)
        tile = cv2.cvtColor(cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR)
        h, w = tile.shape[:2]
        g = gs.gaze[i].astype(np.float64)
        centre = np.array([w / 2, h / 2])
        tip = centre + 0.45 * min(h, w) * g[:2] / max(np.linalg.norm([g[0], g[1], g[2]]), 1e-9) * 1.5
        cv2.arrowedLine(tile, tuple(int(v) for v in centre), tuple(int(v) for v in tip), (0, 200, 255), 2, cv2.LINE_AA,
                        tipLength=0.2)
        if gs.pitchyaw is not None:
            p, y = np.degrees(gs.pitchyaw[i])
            cv2.putText(tile, f"p{p:+.0f} y{y:+.0f}", (4, h - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.35 * scale / 4 + 0.1,
                        (80, 255, 80), 1, cv2.LINE_AA)
        tiles.append(cv2.copyMakeBorder(tile, 2, 2, 2, 2, cv2.BORDER_CONSTANT, value=(0, 0, 0)))
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    sheet = np.vstack([np.hstack(tiles[r:r + columns]) for r in range(0, len(tiles), columns)])
    ok, png = cv2.imencode(".png", sheet)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return atomic_write_bytes(path, png.tobytes())
