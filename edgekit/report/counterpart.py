"""The FP32 counterpart of an INT8 artifact: the model the quantization plan was applied to, in the artifact's own
format, so both run in the same runtime for the report's interleaved comparison.

ONNX (ptq): the FP32 .onnx the ptq pass read is already a step. TFLite and ExecuTorch (to_tflite / to_executorch
precision=int8): the plan is applied inside the conversion, so the FP32 module that pass read is converted again with the
same pass at precision fp32, through the pass cache (the same key as the `tflite` or `executorch` target's conversion
of that module, so either reuses the other).
"""

from __future__ import annotations

from pathlib import Path

from edgekit import progress
from edgekit.artifact import Artifact
from edgekit.errors import EdgekitError, first_line


def _quantizing_step(steps) -> int | None:
    """Index of the step that applied the quantization plan (the first artifact carrying one)."""
    return next((i for i, s in enumerate(steps) if s.artifact.meta.quant_plan is not None), None)


def fp32_counterpart(art: Artifact, steps, pipeline, source: Artifact, card, work: Path, cache: bool = True,
                     log=lambda message: None) -> tuple[Artifact | None, str | None]:
    """(the FP32 artifact in `art`'s format, None) or (None, why there is none)."""
    index = _quantizing_step(steps)
    if index is None:
        return None, "no pass of this run applied the quantization plan (the input was already INT8)"
    fp32 = steps[index - 1].artifact if index else source  # what the quantizing pass read
    if fp32.format == art.format:
        return fp32, None
    quantizer = pipeline.passes[len(pipeline.passes) - len(steps) + index]
    if "precision" not in type(quantizer).model_fields:
        return None, f"{quantizer.name} has no FP32 precision to convert the float model with"
    from edgekit.context import Context
    from edgekit.environment import cache_root
    from edgekit.pipeline import Pipeline

    # a fresh pass with only precision set: the same options, hence the same cache key, as an FP32 target's conversion
    fp32_pass = type(quantizer)(precision="fp32")
    ctx = Context(work_dir=work / "fp32-counterpart", card=card, cache_dir=cache_root() / "passes" if cache else None)
    progress.info(f"converting the FP32 model with {fp32_pass} for the interleaved FP32 vs INT8 latency")
    try:
        return Pipeline([fp32_pass]).run(fp32, ctx)[-1].artifact, None
    except EdgekitError as exc:  # the report says so; the INT8 artifact itself is verified all the same
        return None, f"the FP32 counterpart could not be converted ({first_line(exc, 160)})"
