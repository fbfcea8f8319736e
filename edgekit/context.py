"""What a pipeline run needs besides its input artifact: explicit, no globals."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgekit.data.npz import GazeSet
from edgekit.models.card import ModelCard


@dataclass(frozen=True)
class Context:
    """Frozen: a pass reads it and never changes it (the pipeline hands each run a copy with its own one-line form)."""

    work_dir: Path
    card: ModelCard
    calib: GazeSet | None = None
    eval: GazeSet | None = None
    seed: int = 0
    cache_dir: Path | None = None  # None: no caching
    pipeline: str = ""  # the one-line pipeline, for artifact metadata (passes report progress through edgekit.progress)

    @property
    def calib_digest(self) -> str | None:
        return self.calib.digest() if self.calib is not None else None
