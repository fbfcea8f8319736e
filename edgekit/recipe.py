"""Target recipes: data in YAML (`edgekit/targets/<name>.yaml` or any path) validated against one schema.

A recipe names a backend, its passes with options, gates and verification settings. Errors name the
file, the key path and its line: `onnx.yaml: passes[1].export_onnx.opsett (line 7): extra inputs are not permitted`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgekit import userfile
from edgekit.energy.estimate import device_names
from edgekit.errors import BadInputError
from edgekit.backends import REGISTRY as BACKENDS
from edgekit.backends import check_last_pass
from edgekit.passes import REGISTRY, Pass
from edgekit.pipeline import Pipeline

TARGETS_DIR = Path(__file__).parent / "targets"


class Gates(BaseModel):
    """Limits a target must meet; None = not checked. Differences are from the reference, per sample."""

    model_config = ConfigDict(extra="forbid")
    max_error_deg: float | None = Field(None, gt=0, description="mean angular error of the artifact")
    max_error_increase_deg: float | None = Field(None, description="artifact mean error minus reference mean error")
    max_diff_deg: float | None = Field(None, gt=0, description="largest per-sample difference from the reference")
    p95_diff_deg: float | None = Field(None, gt=0, description="95th percentile of the per-sample difference")
    max_size_mb: float | None = Field(None, gt=0, description="artifact size on disk, all files")
    max_lava_mismatched_spikes: int | None = Field(
        None, ge=0, description="spikes and readout values that differ between Lava's simulator and edgekit's fixed-point model")
    max_increase_over_ann_deg: float | None = Field(
        None, gt=0, description="loihi-sdnn: fixed-point error minus the error of the float ANN it was converted from")
    max_lava_mismatched_messages: int | None = Field(
        None, ge=0, description="loihi-sdnn: graded messages (readout included) that differ between Lava's simulator and "
                                "edgekit's fixed-point mirror")
    min_int8_mac_fraction: float | None = Field(None, ge=0, le=1, description="share of the MACs of the layers the plan "
                                                "quantizes executed in INT8 (TFLite, ExecuTorch: conv and linear; ONNX: "
                                                "also matmuls of two activations)")
    min_delegated_mac_fraction: float | None = Field(
        None, ge=0, le=1, description="executorch: share of MACs run by the XNNPACK delegate, not the portable kernels")


class Verify(BaseModel):
    model_config = ConfigDict(extra="forbid")
    eval_images: int = Field(512, ge=1, description="synthetic evaluation images when no --eval-set is given")
    latency_runs: int = Field(200, ge=1)
    warmup_runs: int = Field(20, ge=0)
    threads: int = Field(1, ge=1, description="runtime threads for latency (accuracy runs use the same)")
    batch: int = Field(1, ge=1, description="samples per call when the artifact and the reference run the evaluation set: "
                                            "both run at the same batch; 1 (default) is how a tracker calls a model, and "
                                            "keeps batch statistics or value-dependent branches from agreeing with themselves")


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    backend: str
    passes: list[Any]
    gates: Gates = Gates()
    verify: Verify = Verify()
    device: str = Field("host-cpu", description="device profile the artifact is meant for: chooses its energy estimates "
                                                "(edgekit/targets/devices/<device>.yaml)")
    calibration: str | None = Field(None, description="calibration set (edgekit/calibration/<name>.yaml or a path)")

    @field_validator("backend", mode="before")
    @classmethod
    def _backend_named(cls, v):
        if v is None:  # YAML reads a bare `null` (or nothing) as no value, not as the null backend
            raise ValueError(f"no backend named (known: {', '.join(BACKENDS)}); fix: name one, and quote the null "
                             "backend as 'null'")
        return v

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        if v not in BACKENDS:
            raise ValueError(f"unknown backend {v!r} (known: {', '.join(BACKENDS)})")
        return v

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        if v not in device_names():
            raise ValueError(f"unknown device {v!r} (known: {', '.join(device_names())}; edgekit/targets/devices/)")
        return v

    @field_validator("passes")
    @classmethod
    def _build_passes(cls, entries: list) -> list[Pass]:
        return [_pass_from_entry(e, i) for i, e in enumerate(entries)]

    @model_validator(mode="after")
    def _difference_targets_from_gates(self) -> Recipe:
        """INT8 passes aim at every accuracy gate, not only the error increase: p95/max difference targets they leave
        unset come from the recipe's gates (so mixed precision and QAT act on a model that fails only those)."""
        from_gates = {"target_p95_diff_deg": self.gates.p95_diff_deg, "target_max_diff_deg": self.gates.max_diff_deg}
        self.passes = [p.model_copy(update={k: v for k, v in from_gates.items()
                                            if k in type(p).model_fields and getattr(p, k) is None and v is not None})
                       if getattr(p, "precision", "int8") == "int8" else p  # to_tflite fp32/fp16 quantizes nothing
                       for p in self.passes]
        return self

    @model_validator(mode="after")
    def _backend_runs_last_format(self) -> Recipe:
        """Refuse at load time what would otherwise fail after the whole pipeline ran: the backend cannot load the artifact."""
        if not self.passes:
            raise ValueError("passes: a recipe needs at least one pass; fix: list passes (see `edgekit passes`)")
        problem = check_last_pass(self.backend, self.passes[-1])
        if problem:  # "key: message; fix: ..." (a whole-recipe error has no location of its own: load_recipe uses the key)
            raise ValueError(f"backend: {problem}")
        return self

    def pipeline(self):
        return Pipeline(self.passes)

    def resolved(self) -> dict:
        """The recipe as run: every pass with all its options, defaults included."""
        data = self.model_dump(mode="json", exclude={"passes"})
        data["passes"] = [{p.name: p.model_dump(mode="json")} for p in self.passes]
        return data


class _PassEntryError(ValueError):
    def __init__(self, index: int, sub: list, message: str):
        super().__init__(message)
        self.loc = [index, *sub]


def _pass_from_entry(entry, index: int) -> Pass:
    if isinstance(entry, Pass):
        return entry
    if isinstance(entry, str):
        name, options = entry, {}
    elif isinstance(entry, dict) and len(entry) == 1:
        name, options = next(iter(entry.items()))
        options = {} if options is None else options
        if not isinstance(options, dict):
            raise ValueError(f"passes[{index}].{name}: options must be a mapping (key: value), got "
                             f"{type(options).__name__} {options!r}")
    else:
        raise ValueError(f"passes[{index}] must be a pass name or {{name: {{options}}}}")
    if name not in REGISTRY:
        raise ValueError(f"passes[{index}]: unknown pass {name!r} (known: {', '.join(sorted(REGISTRY))})")
    try:
        return REGISTRY[name](**options)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join([name, *(str(p) for p in err["loc"])])  # no option named: a check across the pass's options
        raise ValueError(f"passes[{index}].{where}: {err['msg'].removeprefix('Value error, ')}") from None


def _line_of(text: str, loc: list) -> int | None:
    """Line number (1-based) of the YAML node at a key path, or of its deepest existing parent."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(key)), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


def load_recipe(target: str | Path) -> Recipe:
    """A target name (shipped recipe) or a path to a YAML recipe."""
    path = Path(target)
    try:
        exists = path.exists()
    except OSError:  # no permission to look: the read below says so
        exists = True
    if not (path.suffix in (".yaml", ".yml") or exists):
        path = TARGETS_DIR / f"{target}.yaml"
        if not path.is_file():
            raise BadInputError(f"unknown target {target!r}; fix: use one of {', '.join(list_targets())} or a recipe .yaml path")
    text = userfile.read_text(path, "recipe", "check the path")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise BadInputError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}; fix: correct the syntax") from None
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: a recipe is a mapping (name, backend, passes, ...); fix: see edgekit schema")
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = list(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if not loc:  # a whole-recipe check: its message starts with the key it is about
            key_path, msg = msg.split(": ", 1)
            loc = [key_path]
        elif loc[0] == "passes" and msg.startswith("passes["):
            key_path = msg.split(":", 1)[0]
            msg = msg.split(":", 1)[1].strip()
            loc = _loc_from_path(key_path)
        else:
            key_path = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")
        line = _line_of(text, loc)
        fix = "" if "; fix: " in msg else "; fix: see `edgekit schema`"
        raise BadInputError(f"{path}: {key_path}{f' (line {line})' if line else ''}: {msg}{fix}") from None


def _loc_from_path(key_path: str) -> list:
    loc: list = []
    for part in key_path.replace("]", "").replace("[", ".").split("."):
        if part:
            loc.append(int(part) if part.isdigit() else part)
    return loc


def list_targets() -> list[str]:
    """The names of the shipped target recipes (`edgekit targets`), e.g. onnx, onnx-int8, coreml, tflite-int8, loihi."""
    return sorted(p.stem for p in TARGETS_DIR.glob("*.yaml"))


def recipe_schema() -> dict:
    """JSON Schema of a recipe, with each pass's options spelled out."""
    schema = Recipe.model_json_schema()
    entries = []
    for name, cls in sorted(REGISTRY.items()):
        opts = cls.model_json_schema()
        opts.pop("title", None)
        entries.append({"const": name, "description": cls.summary})
        entries.append({"type": "object", "properties": {name: {**opts, "type": ["object", "null"]}},
                        "required": [name], "additionalProperties": False, "description": cls.summary})
    schema["properties"]["passes"] = {"type": "array", "minItems": 1, "items": {"anyOf": entries}}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
