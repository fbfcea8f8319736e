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

from edgekit import outdir
from edgekit._version import __version__
from edgekit.artifact import Artifact, Format
from edgekit.context import Context
from edgekit.data.npz import GazeSet, read_gazeset
from edgekit.errors import BadInputError, from_os_error
from edgekit.environment import cache_root
from edgekit.evalset import default_eval_set, model_inputs
from edgekit.models.card import ModelCard
from edgekit.quant.calibration import load_calibration_spec, resolve_calibration
from edgekit.recipe import Recipe, load_recipe
from edgekit.report import cache as report_cache
from edgekit.report.model import Report
from edgekit.report.render import write_reports
from edgekit.source import load_source

@dataclass(frozen=True)
class CompileResult:
    artifact: Path  # the artifact in the output folder
    report: Report
    out_dir: Path

    @property
    def passed(self) -> bool:
        return self.report.passed


def _as_set(value: GazeSet | str | Path | None) -> GazeSet | None:
    if value is None or isinstance(value, GazeSet):
        return value
    return read_gazeset(value)


def default_out_dir(model: str | None, recipe: Recipe) -> Path:
    name = Path(model).stem if model else "tinygaze"
    return Path("build") / name / recipe.name


def compile(model: str | None = None, target: str | Path = "onnx", *, calib: GazeSet | str | Path | None = None,
            eval: GazeSet | str | Path | None = None, out: str | Path | None = None, arch: str | None = None,
            arch_config: dict | None = None, input_shape: list[str] | None = None, output_convention: str | None = None,
            output_frame: str | None = None, card: str | Path | None = None, cache: bool = True, progress: bool = False, force: bool = False,
            log=lambda msg: None) -> CompileResult:
    """Compile MODEL (None = the shipped demo) for TARGET; returns the artifact path and its report.

    OUT that is a file, or a non-empty folder edgekit did not write, is refused (BadInputError) before any work unless
    FORCE; even then only edgekit's own files are added there (see edgekit.outdir). A full disk or an unwritable
    folder is a BadInputError naming it and the fix.
    """
    recipe = load_recipe(target)
    out_dir = Path(out) if out else default_out_dir(model, recipe)
    # the run's inputs: never replaced, even when they lie inside OUT
    inputs = [p for p in (model, card, target, eval, calib) if isinstance(p, (str, Path)) and Path(p).exists()]
    try:
        with outdir.output_folder(out_dir, force=force, protect=inputs) as output, outdir.work_folder() as work:
            return _compile_into(output, work, model, recipe, calib=calib, eval=eval, arch=arch, arch_config=arch_config,
                                 input_shape=input_shape, output_convention=output_convention, output_frame=output_frame,
                                 card=card, cache=cache,
                                 progress=progress, log=log)
    except OSError as exc:
        err = from_os_error(exc)
        if err is None:
            raise
        raise err from None


def _compile_into(output: outdir.Output, work: Path, model, recipe: Recipe, *, calib, eval, arch, arch_config, input_shape,
                  output_convention, output_frame, card, cache: bool, progress: bool, log) -> CompileResult:
    given_eval = _as_set(eval)
    src = load_source(model, work, arch=arch, arch_config=arch_config, input_shapes=input_shape,
                      output_convention=output_convention, output_frame=output_frame, card=Path(card) if card else None,
                      eval_samples=len(given_eval) if given_eval is not None else recipe.verify.eval_images)
    pipeline = recipe.pipeline()
    pipeline.runnable_from(src.artifact.format)  # exit 2 before any work if this input cannot reach the target
    pipeline.preflight(src.card)  # or if a pass cannot take this model's inputs
    eval_set = given_eval or default_eval_set(src.card, recipe.verify.eval_images)
    calib_set = _as_set(calib) or _recipe_calibration(recipe, src.card)
    _refuse_overlap(calib_set, eval_set)
    inputs = model_inputs(src.card, eval_set)
    ctx = Context(work_dir=work / "passes", card=src.card, calib=calib_set, eval=eval_set,
                  cache_dir=cache_root() / "passes" if cache else None, progress=progress, log=log)
    log(f"pipeline: {pipeline}")
    steps = pipeline.run(src.artifact, ctx)
    final = steps[-1].artifact if steps else src.artifact
    shipped = _place_artifact(final, output.staging)
    report = _verify_or_reuse(src, recipe, pipeline, steps, shipped, inputs, eval_set, calib_set, work, cache, log)
    _write_sidecar(src.card, shipped, output.staging, str(pipeline))
    write_reports(report, output.staging)
    output.commit()
    return CompileResult(artifact=output.shown / shipped.path.name, report=report, out_dir=output.shown)


def _verify_or_reuse(src, recipe, pipeline, steps, shipped, inputs, eval_set, calib_set, work, cache: bool, log):
    """Verify the artifact, or reuse the cached report of an identical earlier verification (`cache`)."""
    from edgekit.report.build import verify  # why: looked up per call, so edgekit.report.build.verify can be patched

    root = cache_root() / "reports"
    key = report_cache.report_key(src, recipe, pipeline, shipped, eval_set, calib_set) if cache else None
    cached = report_cache.load(root, key, shipped, log) if key else None
    if cached is not None:
        log("verification: reusing the cached report of this artifact")
        return report_cache.reused(cached, steps)
    log("verifying the artifact against the reference")
    report = verify(src, recipe, pipeline, steps, shipped, inputs, eval_set, calib_set, work)
    if key:
        report_cache.store(root, key, report)
    return report


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
