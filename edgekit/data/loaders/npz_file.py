"""An edgekit `.npz` (or a plain numpy one) as a dataset: `edgekit data convert npz IN.npz OUT.npz --size HxW` writes a
resized copy once, where `compile --resize` would resize on every run."""

from __future__ import annotations

from edgekit.data.fit import resized_set
from edgekit.data.npz import GazeSet, read_gazeset


def load_npz(path, size: tuple[int, int] | None = None, limit: int | None = None) -> GazeSet:
    """The set in `path`; `limit` keeps the first N samples, `size=(H, W)` resizes the eye images (INTER_AREA)."""
    gs = read_gazeset(path)
    if limit is not None:
        gs = gs.subset(slice(0, limit))
    return resized_set(gs, size) if size is not None else gs
