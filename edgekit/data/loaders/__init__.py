"""Real-dataset loaders: each converts a dataset on disk into a `GazeSet` (edgekit's .npz form)."""

from __future__ import annotations

from typing import Callable

from edgekit.data.loaders.ethxgaze import load_ethxgaze
from edgekit.data.loaders.mpiigaze import load_mpiigaze_h5, load_mpiigaze_mat
from edgekit.data.loaders.openeds import load_openeds2020
from edgekit.data.npz import GazeSet
from edgekit.errors import BadInputError

LOADERS: dict[str, Callable[..., GazeSet]] = {
    "openeds2020": load_openeds2020,
    "ethxgaze": load_ethxgaze,
    "mpiigaze-mat": load_mpiigaze_mat,
    "mpiigaze-h5": load_mpiigaze_h5,
}


def load_dataset(name: str, root, **kwargs) -> GazeSet:
    """Load dataset `name` from `root` with the loader's keyword arguments."""
    if name not in LOADERS:
        raise BadInputError(f"unknown dataset {name!r}; fix: use one of {sorted(LOADERS)}")
    return LOADERS[name](root, **kwargs)


__all__ = ["LOADERS", "load_dataset", "load_ethxgaze", "load_mpiigaze_h5", "load_mpiigaze_mat", "load_openeds2020"]
