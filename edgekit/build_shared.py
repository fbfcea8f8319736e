"""Passes that several targets of one model share (fold_bn, export_onnx, ...): `edgekit build --executor ray` runs
them once per model, in one task before that model's targets, so that no two tasks compute them side by side.

The prefix a target shares is the longest run of leading passes (with the same options and, for a pass that reads
it, the same calibration set: both are in the pass-cache key) that another target of the same model also starts
with. `warm` runs the model's shared prefixes into the pass cache (rendering its sets on the way); `pack` and `unpack`
carry a folder (a task's private cache, or its output) through Ray's object store where the nodes share no path.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections import defaultdict
from pathlib import Path

from edgekit.build import model_and_options, recipe_path
from edgekit.recipe import load_recipe


def shared_prefixes(todo: list) -> dict[str, list[tuple[str, int]]]:
    """model name -> [(target, n)]: run the first n passes of that target's pipeline once; every target of the model
    that starts with the same passes then finds them cached. Only the longest of nested prefixes is listed."""
    by_model = defaultdict(list)
    for job in todo:
        if job.cache:  # --no-cache: every task runs everything again, by request
            by_model[job.model.name].append(job)
    plans = {}
    for model, jobs in by_model.items():
        keys = {job.target: _pass_keys(job) for job in jobs}
        keys = {t: k for t, k in keys.items() if k is not None}
        prefixes: dict[tuple, str] = {}
        for target, own in keys.items():
            longest = max((len(os.path.commonprefix([own, other])) for t, other in keys.items() if t != target),
                          default=0)
            if longest:
                prefixes.setdefault(own[:longest], target)
        plans[model] = [(target, len(p)) for p, target in prefixes.items()
                        if not any(q != p and q[:len(p)] == p for q in prefixes)]
    return {m: p for m, p in plans.items() if p}


def _pass_keys(job) -> tuple | None:
    """Each pass with its options and, if it reads one, the calibration set, as the pass-cache key sees it; None if
    the recipe does not load (its task reports why)."""
    recipe = _recipe(job)
    if recipe is None:
        return None
    calibration = str(job.model.calib_set or recipe.calibration)
    return tuple((str(p), calibration if p.uses_calibration else None) for p in recipe.passes)


def gpus(job, upto: int | None = None) -> int:
    """GPUs the job's passes (its first `upto`) train on: the task reserves them (0 if the recipe does not load)."""
    recipe = _recipe(job)
    return max((p.gpus() for p in recipe.passes[:upto]), default=0) if recipe is not None else 0


def _recipe(job):
    try:
        return load_recipe(recipe_path(job))
    except Exception:  # noqa: BLE001  a bad recipe is the target's own error, reported by its task
        return None


def warm(jobs_by_target: dict, plan: list[tuple[str, int]]) -> None:
    """Run one model's shared prefixes into the pass cache (the current EDGEKIT_CACHE_DIR)."""
    from edgekit.compiler import run_shared_passes  # why: imports torch

    for target, n in plan:
        job = jobs_by_target[target]
        model, options = model_and_options(job)
        run_shared_passes(model, recipe_path(job), n, **options)


def pack(folder: Path) -> bytes:
    """FOLDER's contents as an uncompressed tar (weights barely compress; time matters more)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    return buf.getvalue()


def unpack(blob: bytes, folder: Path) -> None:
    """Extract a `pack` into FOLDER; tarfile's "data" filter refuses links out of it, absolute paths and devices."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar:
        tar.extractall(folder, filter="data")
