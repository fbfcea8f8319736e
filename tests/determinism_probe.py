"""Run target pipelines on built-in models, through a pass cache of their own (empty at the start), and print each
artifact's sha256 as JSON.

Used by tests/test_determinism.py in subprocesses whose environment forces other CPU kernels
(ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS, ONEDNN_MAX_CPU_ISA), to check that artifact bytes do
not depend on the host's instruction set. Usage: python determinism_probe.py MODEL[,MODEL] TARGET[,TARGET]
"""

import json
import sys
import tempfile
from pathlib import Path


def digests(models: list[str], targets: list[str], cache_dir: Path | None = None) -> dict[str, str]:
    """cache_dir: a pass cache to read and fill (None: every pass runs here)."""
    from edgekit.compiler import _recipe_calibration
    from edgekit.context import Context
    from edgekit.recipe import load_recipe
    from edgekit.source import load_source

    out = {}
    for model in models:
        for target in targets:
            with tempfile.TemporaryDirectory() as work:
                src = load_source(model, Path(work))
                recipe = load_recipe(target)
                ctx = Context(work_dir=Path(work) / "passes", card=src.card, cache_dir=cache_dir,
                              calib=_recipe_calibration(recipe, src.card))  # INT8 and spiking targets calibrate
                steps = recipe.pipeline().run(src.artifact, ctx)
                out[f"{model}/{target}"] = steps[-1].artifact.sha256
    return out


if __name__ == "__main__":
    # a pass cache of its own, empty at the start: every pass runs here, under this process's kernels, once (the
    # targets of a model share their first passes; 64 -> 57 s for the determinism test's 24 artifacts)
    with tempfile.TemporaryDirectory() as cache:
        print(json.dumps(digests(sys.argv[1].split(","), sys.argv[2].split(","), Path(cache))))
