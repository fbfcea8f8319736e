"""Typed sections of the report: every top-level field of a Report is one of these (or a Measurement map).

Sections forbid unknown keys, so a backend that starts reporting something new must name it here, and
`edgekit schema --kind report` shows it. Per-layer tables whose columns depend on the runtime (ONNX nodes, TFLite
ops, spiking layers) stay lists of rows; every number a reader compares across targets is a typed field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edgekit.models.card import InputSpec, OutputSpec, Preprocessing
from edgekit.quant.plan import LayerPlan


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Measurement(BaseModel):
    """One number and how it was obtained."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    value: float | None
    unit: str
    method: Literal["measured", "estimated", "static", "not_measured"]
    how: str


# -- what was compiled --------------------------------------------------------------------------------------------


class ModelInfo(Section):
    source: str | None  # the path or name the user gave; None for the built-in demo
    kind: str  # how it was loaded: builtin, weights, module, torchscript, exported_program, onnx
    name: str
    arch: str
    inputs: list[InputSpec]
    output: OutputSpec
    preprocessing: Preprocessing
    digest: str  # sha256 of the model as loaded


class TargetInfo(Section):
    name: str
    backend: str
    device: str  # the device profile: chooses the energy estimates (edgekit/targets/devices/)
    description: str = ""


class Reproducibility(Section):
    across_hosts: bool  # whether a rebuild on another x86-64 host gives the same bytes
    why: str


class ArtifactInfo(Section):
    path: str
    format: str
    sha256: str
    files: list[str]
    sidecar: str
    precision: str
    reproducible: Reproducibility


class HostInfo(Section):
    cpu: str
    isa_flags: list[str]
    cores: int | None
    machine: str
    os: str
    python: str


# -- how it ran ---------------------------------------------------------------------------------------------------


class Fp16Execution(Section):
    weights_fp16_fraction_after_ort_optimisation: float
    cast_nodes: int
    note: str


class CoreMLRuntimeCheck(Section):
    status: str  # MLModel.predict compared with the interpreter on macOS, or why it was not run


class WeightPrecision(Section):
    name: str
    op: str
    dtype: str  # as stored (int8, uint8, lut-uint4, fp16, ...)
    elements: int
    value_dtype: str  # what the interpreter computes with


class FloatOp(Section):
    op: str
    layer: str
    macs: int
    activation_dtype: str


class Runtime(Section):
    """How the artifact ran on this machine; the fields after `executed_here` belong to one backend each."""

    runtime: str
    executed_here: bool
    fp16_execution: Fp16Execution | None = None  # onnx fp16
    core_ml_runtime: CoreMLRuntimeCheck | None = None  # coreml
    op_histogram: dict[str, int] | None = None  # coreml, tflite
    weight_dtypes: dict[str, float] | None = None  # coreml: share of weight elements per stored dtype
    int8_weight_fraction: float | None = None  # coreml
    weights: list[WeightPrecision] | None = None  # coreml
    io: dict[str, list[dict[str, Any]]] | None = None  # tflite, executorch: inputs/outputs with dtype, shape, quantization
    int8_mac_fraction_measured: float | None = None  # tflite, executorch int8: read from the converted artifact
    float_ops: list[FloatOp] | None = None  # tflite, executorch int8: compute ops that stay float
    delegated_mac_fraction: float | None = None  # executorch: share of MACs inside XNNPACK delegate calls
    portable_ops: dict[str, int] | None = None  # executorch: every op left to the portable kernels, with its count
    netx: dict[str, Any] | None = None  # lava: the netx spec written beside the network


# -- accuracy -----------------------------------------------------------------------------------------------------


class EvalSetInfo(Section):
    """The evaluation set the accuracy was measured on."""

    source: str | None
    n_images: int
    digest: str
    seed: int | None = None
    n_samples: int  # model inputs made from it (sequence windows for temporal models, else n_images)


class Parity(Section):
    """First layer whose output departs from the PyTorch reference, on the worst sample (when a gate fails)."""

    checked: bool
    why: str | None = None
    first_divergent_layer: str | None = None
    relative_error: float | None = None
    tolerance: float | None = None
    layers_compared: int | None = None


# -- quantization -------------------------------------------------------------------------------------------------


class PlanSummary(Section):
    weights: dict[str, Any]  # scheme: bits, granularity, symmetric
    activations: dict[str, Any]  # observer, granularity
    isa_profile: str
    calibration: dict[str, Any]  # set source, size, digest
    decisions: list[str]  # how the mixed-precision plan got here, step by step


class FloatLayer(Section):
    name: str
    reason: str


class Quantization(Section):
    plan: PlanSummary
    int8_mac_fraction: float  # what the gate min_int8_mac_fraction checks (measured from the artifact where possible)
    int8_mac_fraction_planned: float | None = None  # the plan's own figure, when a measured one replaced it
    int8_weight_fraction: float
    float_layers: list[FloatLayer]
    layers: list[LayerPlan]
    host_vs_profile: str


class Comparison(Section):
    """The INT8 artifact against the FP32 artifact of the same pipeline, measured in one interleaved run."""

    fp32_sha256: str
    size_fp32_bytes: int
    size_int8_bytes: int
    size_ratio: float
    latency_fp32: dict[str, Measurement]
    latency_int8: dict[str, Measurement]
    speedup_p50: float


# -- energy -------------------------------------------------------------------------------------------------------


class EnergyEstimate(Section):
    """A cited estimate per inference: counts x per-op constants of one profile, as a low-high range in uJ."""

    profile: str
    device: str
    level: str  # compute, or compute+memory
    arithmetic: str | None = None  # float, integer, integer-accumulate: rows compare only within one kind
    low_uj: float
    high_uj: float
    method: Literal["estimated"]
    source: str
    assumptions: str


class EnergyReading(Section):
    """A meter reading on this host while the artifact ran (values None when nothing was measured, with why)."""

    dynamic_uj_per_inference: float | None
    total_uj_per_inference: float | None
    inferences: int
    window_s: float
    how: str
    meter: str
    runtime: str


class Energy(Section):
    macs_by_precision: dict[str, int | float] = Field(default_factory=dict)
    layers: list[dict[str, Any]] = Field(default_factory=list)  # the per-layer counts the estimates use
    estimates: list[EnergyEstimate] = Field(default_factory=list)
    measured: EnergyReading | None = None
    why: str | None = None  # when the section is filled in elsewhere or not at all


# -- spiking ------------------------------------------------------------------------------------------------------


class CurvePoint(Section):
    timesteps: int
    error_deg: float
    increase_deg: float
    diff_from_ann_mean_deg: float


class NaiveBaseline(Section):
    what: str | None
    error_vs_timesteps: list[CurvePoint]


class SpikingCounts(Section):
    steps: int
    layers: list[dict[str, Any]]  # per spiking layer: spikes, rate, dense MACs, effective ACs, neuron updates
    total: dict[str, int | float]
    how: str


class FixedPointError(Section):
    error_deg: float
    samples: int
    increase_deg: float


class FloatSnnError(Section):
    error_deg: float
    samples: int
    fixed_minus_float_deg: float


class SimulatorCheck(Section):
    """Lava's CPU simulator against edgekit's fixed-point mirror on a few images (ran False: why not, in summary)."""

    ran: bool
    summary: str
    samples: int | None = None
    match: bool | None = None
    lava_error_deg: float | None = None
    fixed_point_error_deg: float | None = None
    simulator_seconds: float | None = None
    subprocess_seconds: float | None = None
    ms_per_step: float | None = None


class LavaCheck(SimulatorCheck):
    """The CUBA network, spike for spike and the readout's value."""

    spikes_per_layer: list[int] | None = None
    mismatched_spikes_per_layer: list[int] | None = None
    readout_equal: bool | None = None


class MessageCounts(Section):
    """A sigma-delta network's traffic per frame: messages (graded changes sent), synaptic ops (messages x fan-out)
    and neuron updates, against the ANN's MACs for the same frame."""

    frames: int  # frames these averages are over
    steps_per_frame: int
    messages: float
    synops: float
    neuron_updates: float
    synops_per_ann_mac: float
    layers: list[dict[str, Any]]  # per layer: name, neurons, threshold, messages, synops into the next layer
    error_deg: float | None = None  # mean angular error on these frames (sequences: every frame after the first)
    ann_error_deg: float | None = None  # the converted float ANN's on the same frames
    energy: list[dict[str, Any]] = Field(default_factory=list)  # estimates per frame from the same cited constants
    how: str


class SigmaDeltaLavaCheck(SimulatorCheck):
    """The sigma-delta network, message for message (the readout's sigma included), over one stream of frames."""

    steps: int | None = None
    messages_per_layer: list[int] | None = None
    mismatched_messages_per_layer: list[int] | None = None


class SigmaDelta(Section):
    """A sigma-delta network (loihi-sdnn): single frames from rest, 60 Hz sequences, and Lava's check."""

    steps_per_frame: int
    delay_steps: int
    reference_error_deg: float
    fixed_point: FixedPointError  # increase over the reference (the model as loaded: a distilled student's teacher)
    ann_error_deg: float  # the float ANN the network was converted from (after distillation and BN folding)
    increase_over_ann_deg: float  # what the conversion itself costs (the 0.3 deg goal)
    ann_macs: int
    single_frame: MessageCounts
    sequence: MessageCounts | None = None
    sequence_set: dict[str, Any] | None = None  # what the sequences were: renderer, fps, count, length
    conversion: dict[str, Any]  # scales, thresholds and how they were chosen (sdnn.json)
    simulator_time: Measurement
    lava: SigmaDeltaLavaCheck


class Spiking(Section):
    timesteps: int
    latency_steps: int
    reset: str
    v_init: float | None = None
    reference_error_deg: float
    error_vs_timesteps: list[CurvePoint]
    curve_of: str | None = None
    conversion: dict[str, Any]  # how the network was converted and balanced (the SNN's own metadata)
    naive_baseline: NaiveBaseline | None = None
    counts: SpikingCounts
    simulator_time: Measurement
    fixed_point: FixedPointError | None = None  # lava
    float_snn: FloatSnnError | None = None  # lava
    lava: LavaCheck | None = None  # lava
