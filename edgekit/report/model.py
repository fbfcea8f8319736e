"""The report schema: one pydantic model for every target, rendered to JSON, Markdown and HTML.

Every number is a Measurement saying whether it was measured, estimated or static, and how.
"""

from __future__ import annotations


from pydantic import BaseModel, ConfigDict, Field

from edgekit.data.metrics import AngularSummary
from edgekit.report.sections import (ArtifactInfo, Comparison, Energy, EvalSetInfo, HostInfo, Measurement, ModelInfo,
                                     Parity, Quantization, Runtime, Spiking, TargetInfo)

REPORT_SCHEMA_VERSION = 2  # 2: every section typed (edgekit/report/sections.py)


class DiffSummary(BaseModel):
    """Per-sample angular difference between artifact and reference outputs, degrees."""

    mean_deg: float
    p95_deg: float
    max_deg: float
    worst_sample: int


class Accuracy(BaseModel):
    set: EvalSetInfo
    truth: str  # what the error is measured against
    reference: AngularSummary
    artifact: AngularSummary
    predict_mean_baseline: AngularSummary
    error_increase_deg: float
    diff_from_reference: DiffSummary
    how: str


class Gate(BaseModel):
    name: str
    limit: float
    value: float | None
    passed: bool
    detail: str = ""


class Step(BaseModel):
    pass_: str = Field(alias="pass")
    format: str
    sha256: str
    cached: bool
    seconds: float
    size_bytes: int | None = None
    notes: list[str] = Field(default_factory=list)

    model_config = ConfigDict(populate_by_name=True)


class Report(BaseModel):
    schema_version: int = REPORT_SCHEMA_VERSION
    created: str
    model: ModelInfo
    target: TargetInfo
    recipe: dict  # the resolved recipe, every pass with all its options (its own schema: `edgekit schema --kind recipe`)
    pipeline: str
    artifact: ArtifactInfo
    steps: list[Step]
    accuracy: Accuracy | None = None
    latency: dict[str, Measurement] = Field(default_factory=dict)
    memory: dict[str, Measurement] = Field(default_factory=dict)
    size: dict[str, Measurement] = Field(default_factory=dict)
    compute: dict[str, Measurement] = Field(default_factory=dict)  # params, MACs
    runtime: Runtime
    parity: Parity | None = None  # first diverging layer when a gate fails
    quantization: Quantization | None = None  # plan summary, per-layer table, INT8 fractions, calibration
    comparison: Comparison | None = None  # against the FP32 artifact of the same pipeline, measured in one run
    spiking: Spiking | None = None  # spiking targets: timesteps, error vs T (and a naive baseline), rates, synaptic ops
    energy: Energy = Field(default_factory=Energy)  # cited estimates (profile, level, low-high uJ) and a meter reading
    gates: list[Gate] = Field(default_factory=list)
    passed: bool = True
    host: HostInfo
    tools: dict[str, str] = Field(default_factory=dict)
    inputs_digest: dict[str, str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
