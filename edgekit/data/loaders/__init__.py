"""Real-dataset loaders: each converts a dataset on disk into a `GazeSet` (edgekit's .npz form)."""

from __future__ import annotations

import inspect
from typing import Callable

from edgekit.data.fit import resized_set
from edgekit.data.loaders.ethxgaze import load_ethxgaze
from edgekit.data.loaders.mpiigaze import load_mpiigaze_h5, load_mpiigaze_mat
from edgekit.data.loaders.npz_file import load_npz
from edgekit.data.loaders.openeds import load_openeds2020
from edgekit.data.npz import GazeSet
from edgekit.errors import BadInputError

LOADERS: dict[str, Callable[..., GazeSet]] = {
    "openeds2020": load_openeds2020,
    "ethxgaze": load_ethxgaze,
    "mpiigaze-mat": load_mpiigaze_mat,
    "mpiigaze-h5": load_mpiigaze_h5,
    "npz": load_npz,
}


def load_dataset(name: str, root, **kwargs) -> GazeSet:
    """Load dataset `name` from `root` with the loader's keyword arguments."""
    if name not in LOADERS:
        raise BadInputError(f"unknown dataset {name!r}; fix: use one of {sorted(LOADERS)}")
    loader = LOADERS[name]
    size = kwargs.pop("size", None) if "size" not in inspect.signature(loader).parameters else None
    gs = loader(root, **kwargs)
    # a loader without its own resize (MPIIGaze ships 36x60 crops) is resized afterwards, the same way
    return resized_set(gs, size) if size is not None else gs


__all__ = ["LOADERS", "load_dataset", "load_ethxgaze", "load_mpiigaze_h5", "load_mpiigaze_mat", "load_npz", "load_openeds2020"]
