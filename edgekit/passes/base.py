"""The pass contract: a frozen pydantic model whose fields are its options, validated on construction.

A pass consumes one artifact format, writes a new artifact into `out_dir` and never mutates its input.
Subclasses register themselves by `name`; `version` goes into the cache key, so bump it when a pass's
output changes for the same input.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from edgekit.artifact import Artifact, Format

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

    def options(self) -> dict:
        """Options that differ from their defaults (what the one-line form shows)."""
        return self.model_dump(exclude_defaults=True)

    def __str__(self) -> str:
        opts = self.options()
        return f"{self.name}({', '.join(f'{k}={v}' for k, v in opts.items())})" if opts else self.name
