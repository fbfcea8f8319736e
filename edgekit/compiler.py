"""`edgekit.compile`: model in, verified artifact and report out. The CLI is a thin layer over this.

Steps: load the model (the reference), run the target's pipeline (cached), verify the artifact in its
runtime on the evaluation set against the reference, check the gates, and write the artifact, its I/O
sidecar and the report into the output folder atomically (a staging folder renamed into place; see edgekit.outdir
for which folders edgekit may write and how a killed run's leftovers are removed).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from edgekit import outdir
from edgekit import progress as _progress
from edgekit._version import __version__
from edgekit.artifact import Artifact, Format
from edgekit.context import Context
from edgekit.data.arrays import as_gazeset
from edgekit.data.npz import GazeSet
from edgekit.errors import BadInputError, from_os_error
from edgekit.environment import cache_root
from edgekit.evalset import default_eval_set, fit_to_model, model_inputs, small_set_warning
from edgekit.models.card import ModelCard
from edgekit.quant.calibration import load_calibration_spec, resolve_calibration
from edgekit.recipe import Recipe, load_recipe
from edgekit.report import cache as report_cache
from edgekit.report import reference_cache, reference_prefetch
from edgekit.report.model import Report
from edgekit.report.render import write_reports
from edgekit.source import load_source

if TYPE_CHECKING:
    import torch

@dataclass(frozen=True)
class CompileResult:
    """What `edgekit.compile` returns: the artifact in its output folder and its verified report."""

    artifact: Path  #: the artifact (model.onnx, model.mlpackage, model.tflite, ...) in `out_dir`
    report: Report  #: the full report (the schema of report.json: `edgekit schema --kind report`)
    out_dir: Path  #: the output folder: artifact, io.json, report.json, report.md, report.html

    @property
    def passed(self) -> bool:
        """Every gate of the target's recipe held."""
        return self.report.passed

    @property
    def target(self) -> str:
        return self.report.target.name

    @property
    def error_deg(self) -> float:
        """Mean angular error of the artifact on the evaluation set, in degrees."""
        return self.report.accuracy.artifact.mean_deg

    @property
    def max_diff_deg(self) -> float:
        """Largest per-sample angle between the artifact's and the reference model's outputs, in degrees."""
        return self.report.accuracy.diff_from_reference.max_deg

    @property
    def size_bytes(self) -> int:
        return int(self.report.size["artifact"].value)

    @property
    def sidecar(self) -> Path:
        """io.json: the artifact's inputs and outputs (shapes, dtypes, normalisation, quantization)."""
        return self.out_dir / "io.json"

    @property
    def report_path(self) -> Path:
        return self.out_dir / "report.json"

    def __repr__(self) -> str:
        return (f"CompileResult(target={self.target!r}, passed={self.passed}, error_deg={self.error_deg:.3f}, "
                f"max_diff_deg={self.max_diff_deg:.4f}, artifact={str(self.artifact)!r})")


ModelLike = Union[str, Path, "torch.nn.Module", "torch.export.ExportedProgram", None]
DataLike = Union[GazeSet, str, Path, dict, tuple, np.ndarray, None]


def default_out_dir(model, recipe: Recipe) -> Path:
    if model is None:
        name = "tinygaze"
    elif isinstance(model, (str, Path)):
        name = Path(model).stem
    else:
        name = type(model).__name__.lower()
    return Path("build") / name / recipe.name


def _shapes(input_shape) -> list[str] | None:
    """input_shape=(1, 1, 40, 64), "1x1x40x64", or a list of those / of "name=1x2" strings (one per input)."""
    if input_shape is None:
        return None
    if isinstance(input_shape, str):
        return [input_shape]
    items = list(input_shape)
    if items and all(isinstance(d, int) for d in items):
        return ["x".join(map(str, items))]
    return [s if isinstance(s, str) else "x".join(map(str, s)) for s in items]


def compile(model: ModelLike = None, target: str | Path = "onnx", *, calib: DataLike = None, eval: DataLike = None,
            out: str | Path | None = None, input_shape=None, arch: str | None = None, arch_config: dict | None = None,
            output_convention: str | None = None, output_frame: str | None = None, card: str | Path | None = None,
            cache: bool = True, remeasure: bool = False, resize: bool = False, force: bool = False,
            progress: bool = False, log=lambda msg: None) -> CompileResult:
    """Compile MODEL for TARGET, verify the artifact in its runtime against the model, and write its report.

    model: a built-in name ("tinygaze", "gazeresnet18", "temporalgaze"), a path (weights + `arch`, TorchScript,
        torch.export .pt2, .onnx, an edgekit module folder), a `torch.nn.Module` (with `input_shape=`), or a
        `torch.export.ExportedProgram`; None is the shipped demo (tinygaze).
    target: a target name (`edgekit targets`) or a recipe .yaml.
    calib, eval: an `.npz` path, a dict of arrays with the .npz keys ({"images": uint8 (N,H,W), "gaze": (N,3) or
        "pitchyaw": (N,2), ...}), a tuple (images, gaze), a GazeSet, or (calib only) an images array. Default:
        synthetic eyes, each from its own seed.
    input_shape: the shape of one sample with batch 1, e.g. (1, 1, 40, 64), or one "name=1x2" string per input.
    out: the output folder (default build/<model>/<target>); a non-empty folder edgekit did not write is refused
        unless force=True, and even then nothing in it is deleted or replaced.
    cache: reuse pass results and the report of an identical earlier verification; remeasure: reuse it but time
        the artifact again; resize: resize sets whose image size differs from the model's input (noted in the report).
    progress: draw progress (see edgekit.progress.configure for the level).

    Returns a CompileResult; raises edgekit.errors.EdgekitError subclasses (BadInputError: exit 2, ...) with a
    one-line message naming the problem and the fix. A failed gate is not an exception: check `result.passed`.
    """
    recipe = load_recipe(target)
    out_dir = Path(out) if out else default_out_dir(model, recipe)
    # the run's inputs: never replaced, even when they lie inside OUT
    inputs = [p for p in (model, card, target, eval, calib) if isinstance(p, (str, Path)) and Path(p).exists()]
    calib, eval = as_gazeset(calib, "calibration"), as_gazeset(eval, "evaluation")
    if progress and _progress.level() < _progress.NORMAL:
        _progress.configure(_progress.NORMAL)
    try:
        with outdir.output_folder(out_dir, force=force, protect=inputs) as output, outdir.work_folder() as work:
            return _compile_into(output, work, model, recipe, calib=calib, eval=eval, arch=arch, arch_config=arch_config,
                                 input_shape=_shapes(input_shape), output_convention=output_convention,
                                 output_frame=output_frame, card=card, cache=cache, remeasure=remeasure, resize=resize,
                                 progress=progress, log=log)
    except OSError as exc:
        err = from_os_error(exc)
        if err is None:
            raise
        raise err from None


@dataclass(frozen=True)
class _Run:
    """What a compile runs on: the loaded model, the target's pipeline, the sets and the passes' context."""

    src: object  # source.LoadedModel
    pipeline: object  # pipeline.Pipeline
    eval_set: GazeSet
    calib_set: GazeSet | None
    data_notes: list
    ctx: Context
    reference: object = None  # reference_prefetch.ReferencePrefetch, waiting for its inputs


def _prepare(work: Path, model, recipe: Recipe, *, calib, eval, arch, arch_config, input_shape, output_convention,
             output_frame, card, cache: bool, resize: bool, log, prefetch: bool = False) -> _Run:
    """Load the model, check that the target can take it, and resolve the sets, as every compile of it does;
    `prefetch`: start the reference's worker (reference_prefetch) before rendering the sets."""
    src = load_source(model, work, arch=arch, arch_config=arch_config, input_shapes=input_shape,
                      output_convention=output_convention, output_frame=output_frame, card=Path(card) if card else None,
                      eval_samples=len(eval) if eval is not None else recipe.verify.eval_images)
    pipeline = recipe.pipeline()
    pipeline.runnable_from(src.artifact.format)  # exit 2 before any work if this input cannot reach the target
    pipeline.preflight(src.card)  # or if a pass cannot take this model's inputs
    reference = reference_prefetch.start(src, recipe.verify.batch, work) if prefetch else None
    try:
        return _resolve_sets(src, pipeline, work, recipe, calib=calib, eval=eval, cache=cache, resize=resize, log=log,
                             reference=reference)
    except BaseException:
        if reference is not None:
            reference.cancel()
        raise


def _resolve_sets(src, pipeline, work: Path, recipe: Recipe, *, calib, eval, cache: bool, resize: bool, log,
                  reference) -> _Run:
    eval_set = eval or default_eval_set(src.card, recipe.verify.eval_images)
    calib_set = calib or _recipe_calibration(recipe, src.card)
    eval_set, calib_set, data_notes = _fit_sets(eval_set, calib_set, src.card, resize)
    for note in data_notes:
        log(f"note: {note}")
    _refuse_overlap(calib_set, eval_set)
    ctx = Context(work_dir=work / "passes", card=src.card, calib=calib_set, eval=eval_set,
                  cache_dir=cache_root() / "passes" if cache else None)
    return _Run(src, pipeline, eval_set, calib_set, data_notes, ctx, reference)


def run_shared_passes(model: ModelLike, target: str | Path, passes: int, *, calib: DataLike = None,
                      eval: DataLike = None, input_shape=None, arch: str | None = None, output_convention: str | None = None,
                      output_frame: str | None = None, card: str | Path | None = None) -> None:
    """Run the first `passes` passes of TARGET's pipeline for MODEL into the pass cache, exactly as `compile` would
    (same model, sets and context), so that every target sharing them finds them cached. Writes no output folder."""
    recipe = load_recipe(target)
    with outdir.work_folder() as work:
        run = _prepare(work, model, recipe, calib=as_gazeset(calib, "calibration"), eval=as_gazeset(eval, "evaluation"),
                       arch=arch, arch_config=None, input_shape=_shapes(input_shape), output_convention=output_convention,
                       output_frame=output_frame, card=card, cache=True, resize=False, log=lambda msg: None)
        run.pipeline.run(run.src.artifact, run.ctx, upto=passes)


def _compile_into(output: outdir.Output, work: Path, model, recipe: Recipe, *, calib, eval, arch, arch_config, input_shape,
                  output_convention, output_frame, card, cache: bool, remeasure: bool, resize: bool, progress: bool,
                  log) -> CompileResult:
    # the reference's outputs do not depend on the passes: on a spare core they are computed while the passes run
    run = _prepare(work, model, recipe, calib=calib, eval=eval, arch=arch, arch_config=arch_config,
                   input_shape=input_shape, output_convention=output_convention, output_frame=output_frame, card=card,
                   cache=cache, resize=resize, log=log, prefetch=True)
    src, pipeline, eval_set, calib_set, data_notes, ctx, reference = (
        run.src, run.pipeline, run.eval_set, run.calib_set, run.data_notes, run.ctx, run.reference)
    try:
        inputs = model_inputs(src.card, eval_set)
        _progress.detail(f"pipeline: {pipeline}")
        if reference is not None:
            key = reference_cache.cache_key(src, eval_set.digest(), recipe.verify.batch, cache)
            if reference_cache.is_cached(key, len(inputs)):
                reference.cancel()
            else:
                reference.feed(inputs.arrays)
        steps = pipeline.run(src.artifact, ctx)
        final = steps[-1].artifact if steps else src.artifact
        shipped = _place_artifact(final, output.staging)
        report = _verify_or_reuse(src, recipe, pipeline, steps, shipped, inputs, eval_set, calib_set, work, cache, log,
                                  remeasure=remeasure, reference=reference)
    finally:
        if reference is not None:  # a failed pass or a reused report leaves it unused
            reference.cancel()
    if data_notes:  # about this run's sets: added after the cache, which keys on the sets' digests
        report = report.model_copy(update={"notes": data_notes + report.notes})
    _write_sidecar(src.card, shipped, output.staging, str(pipeline))
    write_reports(report, output.staging)
    output.commit()
    return CompileResult(artifact=output.shown / shipped.path.name, report=report, out_dir=output.shown)


def _verify_or_reuse(src, recipe, pipeline, steps, shipped, inputs, eval_set, calib_set, work, cache: bool, log,
                     remeasure: bool = False, reference=None):
    """Verify the artifact, or reuse the cached report of an identical earlier verification (`cache`); `remeasure`
    measures a reused report's timing (latency, memory, FP32 comparison) again and stores it back in the cache."""
    from edgekit.report.build import verify  # why: looked up per call, so edgekit.report.build.verify can be patched
    from edgekit.report.timing import remeasure as measure_again

    root = cache_root() / "reports"
    key = report_cache.report_key(src, recipe, pipeline, shipped, eval_set, calib_set) if cache else None
    cached = report_cache.load(root, key, shipped, log) if key else None
    if cached is not None and remeasure:
        log("verification: reusing the cached accuracy of this artifact, measuring its timing again")
        cached = measure_again(cached, recipe, pipeline, steps, shipped, inputs, src.artifact, src.card, work, cache, log)
        report_cache.store(root, key, cached)
        return report_cache.reused(cached, steps, timing_reused=False)
    if cached is not None:
        log("verification: reusing the cached report of this artifact")
        return report_cache.reused(cached, steps)
    with _progress.step("verifying the artifact against the reference"):
        report = verify(src, recipe, pipeline, steps, shipped, inputs, eval_set, calib_set, work, cache=cache, log=log,
                        reference=reference)
    if key:
        report_cache.store(root, key, report)
    return report


def _fit_sets(eval_set: GazeSet, calib_set: GazeSet | None, card: ModelCard, resize: bool):
    """Refuse (or, with resize, resize and note) sets of another image size; warn about sets too small to mean much."""
    eval_set, notes = fit_to_model(eval_set, card, "eval", resize)
    if calib_set is not None:
        calib_set, more = fit_to_model(calib_set, card, "calib", resize)
        notes += more
    notes += [w for w in (small_set_warning(eval_set, "eval"),
                          small_set_warning(calib_set, "calib") if calib_set is not None else None) if w]
    return eval_set, calib_set, notes


def _recipe_calibration(recipe: Recipe, card: ModelCard) -> GazeSet | None:
    if recipe.calibration is None:
        return None
    return resolve_calibration(load_calibration_spec(recipe.calibration), card)


def _refuse_overlap(calib: GazeSet | None, eval_set: GazeSet) -> None:
    """Calibration and evaluation must not share images: same digest, same synthetic seed, or any identical image."""
    if calib is None:
        return
    if calib.digest() == eval_set.digest():
        raise BadInputError("the calibration set is the evaluation set; fix: pass disjoint --calib-set and --eval-set")
    synthetic_seed = lambda gs: gs.meta.get("seed") if str(gs.meta.get("source", "")).startswith("synthetic") else None  # noqa: E731
    if synthetic_seed(calib) is not None and synthetic_seed(calib) == synthetic_seed(eval_set):
        raise BadInputError(f"calibration and evaluation sets share renderer seed {synthetic_seed(calib)}; fix: use disjoint seeds")
    import hashlib

    seen = {hashlib.sha256(im.tobytes()).digest() for im in eval_set.images}
    shared = sum(hashlib.sha256(im.tobytes()).digest() in seen for im in calib.images)
    if shared:
        raise BadInputError(f"{shared} calibration images also appear in the evaluation set; fix: use disjoint sets")


def _place_artifact(art: Artifact, staging: Path) -> Artifact:
    name = {Format.onnx: "model.onnx", Format.coreml: "model.mlpackage"}.get(art.format, art.path.name)
    dest = staging / name
    if art.path.is_dir():
        shutil.copytree(art.path, dest)
    else:
        shutil.copyfile(art.path, dest)
    return art.model_copy(update={"path": dest})


def sidecar(card: ModelCard, art: Artifact, pipeline: str) -> dict:
    """The machine-readable I/O contract of an artifact: what a caller must feed and what comes back."""
    pre = card.preprocessing
    if art.meta.input_type == "image":
        return {**_tensor_sidecar(card, art, pipeline, __version__, pre),
                "inputs": [{"name": s.name, "kind": "image", "shape": s.shape, "color": s.color, "pixel_range": [0, 255],
                            "normalization": {"applied": "inside the model", "scale": pre.scale, "offset": pre.offset},
                            "quantization": None} for s in card.inputs]}
    return _tensor_sidecar(card, art, pipeline, __version__, pre)


def _io_quantization(art: Artifact, side: str, index: int) -> tuple[str | None, dict | None]:
    """(dtype, quantization) of an artifact's I/O tensor where the artifact declares them (TFLite int8 I/O)."""
    entries = (art.meta.io or {}).get(side) or []
    if index >= len(entries):
        return None, None
    q = entries[index]["quantization"]
    return entries[index]["dtype"], ({**q, "formula": "q = clip(round(x / scale) + zero_point); x = (q - zero_point) * scale"}
                                     if q else None)


def _tensor_sidecar(card: ModelCard, art: Artifact, pipeline: str, version: str, pre) -> dict:
    io = {(side, i): _io_quantization(art, side, i) for side, n in (("inputs", len(card.inputs)), ("outputs", 1))
          for i in range(n)}
    return {
        "artifact": art.path.name, "format": art.format.value, "sha256": art.sha256, "pipeline": pipeline,
        "edgekit": version,
        "inputs": [{"name": s.name, "shape": s.shape, "dtype": io["inputs", i][0] or s.dtype, "layout": s.layout,
                    "source": s.source,
                    "normalization": ({"formula": "x = pixel * scale + offset", "scale": pre.scale, "offset": pre.offset,
                                       "equalize_hist": pre.equalize_hist, "color": s.color, "pixel_range": [0, 255]}
                                      if s.takes_pixels else {"formula": s.meaning()}),
                    "quantization": io["inputs", i][1]} for i, s in enumerate(card.inputs)],
        "outputs": [{"name": card.output.name, "shape": card.output.shape, "dtype": io["outputs", 0][0] or "float32",
                     "convention": card.output.convention,
                     "gaze_frame": "x right, y down, z forward; (0,0) -> (0,0,-1)", "quantization": io["outputs", 0][1]}],
        "precision": art.meta.precision or "fp32",
    }


def _write_sidecar(card: ModelCard, art: Artifact, staging: Path, pipeline: str) -> None:
    (staging / "io.json").write_text(json.dumps(sidecar(card, art, pipeline), indent=2) + "\n")
