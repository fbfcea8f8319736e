"""Calibration: resolve the declared set, and collect every tensor's statistics in one calibration run.

The run exposes every intermediate tensor of the FP32 ONNX model, sweeps the calibration inputs once
for ranges and once for 2048-bin histograms (of the tensors whose ranges can be read: folded_activation_inputs; from
the tensors the range sweep kept within a memory budget, running the model again only for the rest), and keeps all
observers' inputs, so min-max, percentile, entropy and MSE ranges all come from the same collection.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgekit import userfile
from edgekit._optional import require
from edgekit.data.npz import GazeSet, read_gazeset
from edgekit.environment import spare_memory_bytes
from edgekit.errors import BadInputError
from edgekit.evalset import default_eval_set
from edgekit.progress import track
from edgekit.quant.observers import TensorStats

CALIBRATION_DIR = Path(__file__).resolve().parents[1] / "calibration"


class CalibrationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    source: Literal["synthetic", "npz"]
    seed_role: Literal["calib", "train", "val"] = "calib"
    size: int = Field(512, ge=16)
    path: str | None = None
    preprocessing: Literal["model-card"] = "model-card"


def load_calibration_spec(name_or_path: str) -> CalibrationSpec:
    path = Path(name_or_path)
    if not path.is_file():
        path = CALIBRATION_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CALIBRATION_DIR.glob("*.yaml")))
        raise BadInputError(f"unknown calibration set {name_or_path!r}; fix: use one of {known} or a .yaml path")
    text = userfile.read_text(path, "calibration spec")
    try:
        spec = CalibrationSpec.model_validate(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise BadInputError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}; fix: correct the syntax") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise BadInputError(f"{path}: invalid calibration spec: {key}: {err['msg']}; fix: see calibration/README.md") from None
    if spec.source == "npz" and spec.path and not Path(spec.path).is_absolute():
        spec = spec.model_copy(update={"path": str(path.parent / spec.path)})
    return spec


def resolve_calibration(spec: CalibrationSpec, card) -> GazeSet:
    if spec.source == "npz":
        if not spec.path:
            raise BadInputError(f"calibration {spec.name}: source npz needs a path; fix: add path: file.npz")
        gs = read_gazeset(spec.path)
        return gs.subset(slice(0, spec.size))
    return default_eval_set(card, spec.size, role=spec.seed_role)


def _fitted_rows(value: np.ndarray, fitted: np.ndarray) -> np.ndarray | None:
    """The rows of one batch's tensor that belong to the fitted samples; None when its first axis cannot be split by
    sample. A temporal model folds its frames into the first axis sample by sample (x.view(B * T, ...))."""
    if fitted.all():
        return value
    if value.ndim == 0 or len(value) % len(fitted):
        return None
    return value[np.repeat(fitted, len(value) // len(fitted))]


def exposed_model(model):
    """The ONNX model (loaded, left as it is) with every typed intermediate tensor added as a graph output."""
    onnx = require("onnx", "calibration")
    model = onnx.shape_inference.infer_shapes(model)
    typed = {vi.name: vi for vi in model.graph.value_info}
    present = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for out in node.output:
            if out in typed and out not in present:
                model.graph.output.append(typed[out])
                present.add(out)
    return model


def folded_activation_inputs(model) -> set[str]:
    """Tensors read only by one Relu and not graph outputs: onnxruntime's QDQ quantizer (asymmetric activations) folds
    such a Relu into its producer (QDQRemovableActivation), which then writes the Relu's output tensor quantized with
    the Relu's range, so nothing reads these tensors' ranges and the calibration run collects no histogram of them. A
    conv's or residual add's output before its ReLU: 20 of GazeResNet18's 54 tensors, 58% of its histogram time."""
    readers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in model.graph.output}
    return {name for name, nodes in readers.items()
            if len(nodes) == 1 and nodes[0].op_type == "Relu" and name not in outputs}


def collect(path: Path, arrays: dict[str, np.ndarray], batch: int = 64) -> dict[str, TensorStats]:
    """Statistics of every graph input and intermediate float tensor over the calibration inputs."""
    return calibration_run(path, arrays, batch)[0]


def calibration_run(path: Path, arrays: dict[str, np.ndarray], batch: int = 64, mean_of: Collection[str] = (),
                    also_read: Mapping[str, Callable[[np.ndarray], None]] | None = None, fit: np.ndarray | None = None,
                    retain_bytes: int | None = None) -> tuple[dict[str, TensorStats], np.ndarray]:
    """(statistics of every graph input and intermediate float tensor, the model's first output on every sample): the
    range sweep runs the FP32 model on the calibration set anyway, so its outputs are the FP32 reference there. The
    tensors named in `mean_of` also get their mean over the samples (TensorStats.mean: bias correction's inputs), and
    each batch of a tensor named in `also_read` is handed to its function there (GPTQ's input correlations); both
    over the samples at the indices `fit` only, when given (what the weight edits fit: ptq judges them on the rest).

    The histograms need every tensor's whole range first. The range sweep keeps the batches' tensors it can within
    `retain_bytes` (default: retained_bytes_budget()), and the histogram sweep runs the model again only on the other
    batches: the same counts either way."""
    ort = require("onnxruntime", "calibration")
    opts = ort.SessionOptions()
    # basic optimisations only: every intermediate tensor is a graph output, so no fusion can remove one, and they ran
    # 8-15% faster than none on GazeResNet18 with the same tensors bit for bit (extended ones change the layout)
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    # idle threads sleep instead of spinning: the reference may run on the other core meanwhile (measured: spinning
    # 2 threads beside it took GazeResNet18's calibration from 8.9 to 10.7 s)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    model = require("onnx", "calibration").load(str(path))
    session = ort.InferenceSession(exposed_model(model).SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    # the histogram sweep leaves out the tensors whose ranges nothing reads (observe() gives them their min-max: the
    # QDQ quantizer looks their quantization parameters up before it folds the ReLU, so they need one)
    folded = folded_activation_inputs(model)
    hist_names = [name for name in names if name not in folded]
    input_names = [i.name for i in session.get_inputs()]
    stats: dict[str, TensorStats] = {}
    n = len(next(iter(arrays.values())))
    fitted = np.zeros(n, bool)
    fitted[np.arange(n) if fit is None else fit] = True
    budget = retained_bytes_budget() if retain_bytes is None else retain_bytes
    retained: dict[int, list[np.ndarray]] = {}  # start of a batch -> its hist_names tensors, kept by the range sweep
    sweeps = [(sweep, start) for sweep in ("range", "hist") for start in range(0, n, batch)]
    outputs = []
    for sweep, start in track(sweeps, description=f"calibrating on {n} samples (every tensor's range, then histograms)"):
        feed = {k: v[start:start + batch] for k, v in zip(input_names, arrays.values())}
        fetched = names if sweep == "range" else hist_names
        values = retained.pop(start) if sweep == "hist" and start in retained else session.run(fetched, feed)
        if sweep == "range":
            outputs.append(values[0])  # the graph's own outputs come first in the exposed model
            kept = [value for name, value in zip(names, values) if name not in folded]
            size = sum(value.nbytes for value in kept)
            if size <= budget:
                retained[start], budget = kept, budget - size
        for name, value in [*zip(fetched, values), *feed.items()]:
            if value.dtype.kind != "f":
                continue
            s = stats.setdefault(name, TensorStats())
            s.update_range(value) if sweep == "range" else s.update_hist(value)
            read = also_read.get(name) if also_read else None
            if sweep == "range" and (read or name in mean_of):
                part = _fitted_rows(value, fitted[start:start + batch])
                if part is not None and part.size and name in mean_of:
                    s.update_mean(part)
                if part is not None and part.size and read:
                    read(part)
    return stats, np.concatenate(outputs)


# What the range sweep may keep for the histogram sweep: at most a quarter of the memory to spare, and 1 GiB. Measured
# (2026-12-06, AMD EPYC, 2 cores): GazeResNet18 keeps all 8 batches (864 MB, 1.7 MB a sample) and skips the histogram
# sweep's second run of the model, its calibration 4.4-4.7 -> 3.3-3.5 s in a cold compile, the same artifact bytes.
RETAIN_CAP_BYTES = 1 << 30
RETAIN_SHARE = 4


def retained_bytes_budget() -> int:
    return min(RETAIN_CAP_BYTES, spare_memory_bytes() // RETAIN_SHARE)
