"""Core ML backend: verify .mlpackage artifacts on any OS with edgekit's MIL reference interpreter.

Core ML's own runtime (MLModel.predict) exists only on macOS. Off macOS the report says so: latency and
memory are not measured, and accuracy is measured with the interpreter and labelled as such. On macOS
the runtime's output on one sample is also compared with the interpreter's.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from edgekit._optional import require
from edgekit.backends.coreml.mil_interpreter import MilInterpreter

WHY_NO_SPEED = "not measured: Core ML predicts only on macOS/iOS, and the numpy reference interpreter's speed says nothing about a device"


class ImageInputRunner:
    """Feeds an image-input package what a caller feeds it: pixel values, not the preprocessed tensor."""

    def __init__(self, interp: MilInterpreter, scale: float, offset: float):
        self.interp, self.scale, self.offset = interp, scale, offset
        self.macs = 0

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        pixels = {k: np.clip(np.rint((v - self.offset) / self.scale), 0, 255).astype(np.float32) for k, v in inputs.items()}
        out = self.interp.run(pixels)
        self.macs = self.interp.macs
        return out

    def describe(self) -> str:
        return self.interp.describe() + "; fed pixel values (image input: preprocessing inside the model)"

    def __getattr__(self, name):
        return getattr(self.interp, name)


def open_runner(path: Path, threads: int = 1):
    import json

    interp = MilInterpreter(path)
    spec = interp.spec
    if spec.description.input[0].type.HasField("imageType"):
        pre = json.loads(spec.description.metadata.userDefined["edgekit.preprocessing"])
        return ImageInputRunner(interp, pre["scale"], pre["offset"])
    return interp


def macos_check(path: Path, interp: MilInterpreter) -> dict:
    if platform.system() != "Darwin":
        return {"status": "Core ML runtime not run: MLModel.predict needs macOS, so the artifact is unverified on Core ML itself"}
    ct = require("coremltools", "running Core ML on macOS")
    model = ct.models.MLModel(str(path))
    spec = model.get_spec()
    feed = {i.name: np.zeros(tuple(i.type.multiArrayType.shape), np.float32) for i in spec.description.input}
    got = np.asarray(next(iter(model.predict(feed).values())), np.float64)
    ref = interp.run(feed)
    return {"status": f"MLModel.predict on this Mac: max |difference| from the interpreter {float(np.abs(got - ref).max()):.2e}"}
