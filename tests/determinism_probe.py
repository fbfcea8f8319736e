"""Run target pipelines on built-in models, through a pass cache of their own (empty at the start), and print each
artifact's sha256 as JSON.

Used in subprocesses by tests/test_determinism.py, whose environment forces other CPU kernels (ATEN_CPU_CAPABILITY,
MKL_ENABLE_INSTRUCTIONS, ONEDNN_MAX_CPU_ISA) to check that artifact bytes do not depend on the host's instruction set,
and by tests/backends/executorch/test_rebuild.py.

    python tests/determinism_probe.py MODEL[,MODEL] TARGET[,TARGET]   prints {"model/target": sha256} (what
                                                                      in_fresh_process runs)
    python -m tests.determinism_probe --write                         rewrites tests/float_digests.json (FLOAT below,
                                                                      this host's own kernels)
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# the float artifacts whose bytes must not depend on the ISA, and their digests as committed
FLOAT_MODELS = ("tinygaze", "gazeresnet18", "temporalgaze")
FLOAT_TARGETS = ("onnx", "onnx-fp16", "tflite", "tflite-fp16", "coreml", "coreml-fp32", "coreml-int8", "executorch")
COMMITTED = Path(__file__).with_name("float_digests.json")


def digests(models, targets, cache_dir: Path | None = None) -> dict[str, str]:
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


def _fresh_digests(models, targets) -> dict[str, str]:
    # a pass cache of its own, empty at the start: every pass runs here, under this process's kernels, once (the
    # targets of a model share their first passes: 64 -> 57 s for the 24 float artifacts)
    with tempfile.TemporaryDirectory() as cache:
        return digests(models, targets, Path(cache))


def in_fresh_process(models, targets, log: Path, kernels: dict[str, str] | None = None, timeout: int = 900) -> dict:
    """digests() in a new Python process (its own kernels, `kernels` forcing others), from an empty pass cache; its
    stderr goes to `log` (converters log a lot: a full pipe would stall it). RuntimeError with the log's end if it fails."""
    env = {**os.environ, **(kernels or {}), "OMP_NUM_THREADS": "1"}
    with open(log, "w") as err:
        proc = subprocess.run([sys.executable, __file__, ",".join(models), ",".join(targets)], env=env,
                              stdout=subprocess.PIPE, stderr=err, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"determinism probe exited {proc.returncode}: {log.read_text()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_committed() -> None:
    from edgekit.environment import host_info

    host = host_info()
    found = _fresh_digests(FLOAT_MODELS, FLOAT_TARGETS)
    COMMITTED.write_text(json.dumps({"made_by": "python -m tests.determinism_probe --write",
                                     "host": {k: host.get(k) for k in ("cpu", "machine", "isa_flags")},
                                     "sha256": found}, indent=1) + "\n")


if __name__ == "__main__":
    from edgekit._optional import freeze_imports

    freeze_imports()  # a process of edgekit's own, as the CLI's (its bytes do not depend on it)
    if sys.argv[1:] == ["--write"]:
        write_committed()
    else:
        print(json.dumps(_fresh_digests(sys.argv[1].split(","), sys.argv[2].split(","))))
