"""The report schema: one pydantic model for every target, rendered to JSON, Markdown and HTML.

Every number is a Measurement saying whether it was measured, estimated or static, and how.
"""

from __future__ import annotations


from pydantic import BaseModel, ConfigDict, Field

from edgekit.data.metrics import AngularSummary
from edgekit.report.sections import (ArtifactInfo, Comparison, Energy, EvalSetInfo, HostInfo, Measurement, ModelInfo,
                                     Parity, Quantization, Runtime, SigmaDelta, Spiking, TargetInfo)

REPORT_SCHEMA_VERSION = 2  # 2: every section typed (edgekit/report/sections.py)


class DiffHistogram(BaseModel):
    """How the per-sample differences spread: counts per bin, bins from 0 to the largest difference, degrees."""

    edges_deg: list[float]  # one more than counts
    counts: list[int]


class DiffSummary(BaseModel):
    """Per-sample angular difference between artifact and reference outputs, degrees."""

    mean_deg: float
    p95_deg: float
    max_deg: float
    worst_sample: int
    histogram: DiffHistogram | None = None  # None in reports written before it was stored


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


class LatencyHistogram(BaseModel):
    """How the timed runs spread: counts per bin, bins from 0 to the slowest run, milliseconds."""

    edges_ms: list[float]  # one more than counts
    counts: list[int]


class Timing(BaseModel):
    """When, where and under which load latency, memory and the FP32 comparison were measured (edgekit.report.timing).
    A report served from the cache keeps the timing of the run that measured it: this says which run that was."""

    measured_at: str  # ISO 8601, UTC, when timing started
    host: str  # CPU model
    cores: int | None = None
    threads: int | None = None  # runtime threads the artifact ran with
    load_start: list[float] = Field(default_factory=list)  # os.getloadavg() (1, 5, 15 min) before timing
    load_end: list[float] = Field(default_factory=list)  # and after
    remeasured: bool = False  # measured again for a cached report (--remeasure); accuracy is the earlier verification's
    reused_from_cache: bool = False  # this run served the report from the cache: measured by an earlier run
    latency_histogram: LatencyHistogram | None = None  # every timed batch-1 run of the artifact


class Report(BaseModel):
    """One verified artifact: what was compiled how, its accuracy against the model, latency, size, energy and gates
    (report.json; `edgekit schema --kind report` prints the JSON Schema)."""

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
    sigma_delta: SigmaDelta | None = None  # loihi-sdnn: messages per frame (single frames, sequences), Lava's check
    energy: Energy = Field(default_factory=Energy)  # cited estimates (profile, level, low-high uJ) and a meter reading
    gates: list[Gate] = Field(default_factory=list)
    passed: bool = True
    host: HostInfo
    tools: dict[str, str] = Field(default_factory=dict)
    inputs_digest: dict[str, str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    timing: Timing | None = None  # when and under which load the timing was measured (None: nothing timed)
