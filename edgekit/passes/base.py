"""The pass contract: a frozen pydantic model whose fields are its options, validated on construction.

A pass consumes one artifact format, writes a new artifact into `out_dir` and never mutates its input.
Subclasses register themselves by `name`; `version` goes into the cache key, so bump it when a pass's
output changes for the same input.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from edgekit.artifact import Artifact, Format
from edgekit.errors import BadInputError

REGISTRY: dict[str, type[Pass]] = {}


class Pass(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ClassVar[str]
    version: ClassVar[int] = 1
    consumes: ClassVar[frozenset[Format]]
    produces: ClassVar[Format]
    summary: ClassVar[str] = ""
    # False only for a pass that never reads ctx.calib: its cache key leaves the calibration set out, so targets
    # calibrated on different sets (or none) share its output
    uses_calibration: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            REGISTRY[cls.name] = cls

    def run(self, src: Artifact, ctx, out_dir: Path) -> Artifact:
        raise NotImplementedError

    def preflight(self, card) -> None:
        """Raise BadInputError when the model card alone shows this pass cannot take the model, so the refusal comes
        before earlier passes spend minutes (fine-tuning, distillation) on a compile that cannot finish."""

    def host_dependence(self) -> str | None:
        """Why this pass's output bytes can differ between CPUs for the same input (None: they cannot).

        Passes that calibrate or train run float32 kernels whose summation order depends on the instruction set,
        so their ranges, thresholds or weights may differ in the last bit from one host to the next.
        """
        return None

    def gpus(self) -> int:
        """GPUs this pass trains on: a scheduler reserves them for its task (edgekit build --executor ray)."""
        return 0

    def options(self) -> dict:
        """Options that differ from their defaults (what the one-line form shows)."""
        return self.model_dump(exclude_defaults=True)

    def __str__(self) -> str:
        opts = self.options()
        return f"{self.name}({', '.join(f'{k}={v}' for k, v in opts.items())})" if opts else self.name


class TrainingPass(Pass):
    """A pass that trains (fine-tuning, distillation), on the CPU or, with `device: cuda`, on a GPU. The device is an
    option, so it is in the cache key: CPU- and GPU-trained outputs never stand in for each other."""

    trains: ClassVar[str] = "fine-tunes"  # what it does in float32 (host_dependence says it)

    device: Literal["cpu", "cuda"] = Field("cpu", description="where it trains: cuda needs a GPU and a CUDA build of "
                                           "torch (edgekit build --executor ray reserves one GPU for the task)")

    def gpus(self) -> int:
        return 1 if self.device == "cuda" else 0

    def host_dependence(self) -> str | None:
        where = "the GPU (CUDA and cuDNN versions, GPU model)" if self.device == "cuda" else "the CPU"
        return f"{self.trains} in float32 with torch kernels chosen for {where}"

    def training_device(self) -> str:
        """The torch device to train on; a one-line error, before any training, when cuda is asked for and this
        process has no CUDA GPU (a CPU build of torch, no GPU, or none assigned to it)."""
        import torch

        if self.device == "cuda" and not torch.cuda.is_available():
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            seen = f", CUDA_VISIBLE_DEVICES={visible}" if visible is not None else ""
            raise BadInputError(f"{self.name}: device cuda, but torch {torch.__version__} here has no CUDA GPU{seen}; fix: "
                                f"set device: cpu in the recipe, or build where a GPU and a CUDA build of torch are "
                                f"(edgekit build --executor ray on a cluster with GPU nodes)")
        return self.device
