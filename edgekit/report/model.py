"""The report schema: one pydantic model for every target, rendered to JSON, Markdown and HTML.

Every number is a Measurement saying whether it was measured, estimated or static, and how.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from edgekit.data.metrics import AngularSummary

REPORT_SCHEMA_VERSION = 1


class Measurement(BaseModel):
    model_config = ConfigDict(frozen=True)
    value: float | None
    unit: str
    method: Literal["measured", "estimated", "static", "not_measured"]
    how: str


class DiffSummary(BaseModel):
    """Per-sample angular difference between artifact and reference outputs, degrees."""

    mean_deg: float
    p95_deg: float
    max_deg: float
    worst_sample: int


class Accuracy(BaseModel):
    set: dict  # source, n, digest
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
    model: dict  # source, kind, name, inputs, output, preprocessing, digest
    target: dict  # name, backend, device, recipe path
    recipe: dict  # resolved recipe
    pipeline: str
    artifact: dict  # path, format, sha256, files, sidecar
    steps: list[Step]
    accuracy: Accuracy | None = None
    latency: dict[str, Measurement] = Field(default_factory=dict)
    memory: dict[str, Measurement] = Field(default_factory=dict)
    size: dict[str, Measurement] = Field(default_factory=dict)
    compute: dict[str, Measurement] = Field(default_factory=dict)  # params, MACs
    runtime: dict = Field(default_factory=dict)  # how the artifact ran here (or why it could not)
    parity: dict | None = None  # first diverging layer when a gate fails
    quantization: dict | None = None  # plan summary, per-layer table, INT8 fractions, calibration
    comparison: dict = Field(default_factory=dict)  # against the FP32 artifact of the same pipeline, measured in one run
    spiking: dict | None = None  # spiking targets: timesteps, error vs T (and a naive baseline), rates, synaptic ops
    energy: dict = Field(default_factory=dict)  # estimates (profile, level, low-high uJ, sources) and the measured reading
    gates: list[Gate] = Field(default_factory=list)
    passed: bool = True
    host: dict = Field(default_factory=dict)
    tools: dict[str, str] = Field(default_factory=dict)
    inputs_digest: dict[str, str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
