"""Artifacts: immutable handles to a model on disk (a file or a folder), its format and content digest.

A pass reads one artifact and writes a new one; the parent digest links them into a chain.
"""

from __future__ import annotations

import hashlib
from enum import Enum
from pathlib import Path

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edgekit.quant.plan import QuantPlan


class Format(str, Enum):
    torch = "torch"  # folder: weights.safetensors + module.json (how to rebuild the nn.Module)
    torchscript = "torchscript"  # a TorchScript .pt file
    exported_program = "exported_program"  # a torch.export .pt2 file
    onnx = "onnx"
    coreml = "coreml"
    tflite = "tflite"
    pte = "pte"  # an ExecuTorch program
    snn = "snn"
    lava = "lava"
    sdnn = "sdnn"  # a sigma-delta netx network (folder: network.net + sdnn.json)


def digest_path(path: Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, in sorted order).

    Core ML packages are hashed canonically: their Manifest.json names items by random UUIDs on every save, so its
    identifiers are replaced by the items' paths before hashing; two saves of the same model hash the same.
    """
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode() + b"\0")
        if path.suffix == ".mlpackage" and f == path / "Manifest.json":
            h.update(_canonical_manifest(f))
            continue
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _canonical_manifest(path: Path) -> bytes:
    import json

    manifest = json.loads(path.read_text())
    entries = manifest.get("itemInfoEntries", {})
    by_path = {v.get("path", k): v for k, v in entries.items()}
    root = entries.get(manifest.get("rootModelIdentifier"), {}).get("path")
    return json.dumps({**manifest, "itemInfoEntries": by_path, "rootModelIdentifier": root}, sort_keys=True).encode()


class ArtifactMeta(BaseModel):
    """What a pass records about its output, for the passes after it, the report and the I/O sidecar.

    Unknown keys are refused: a pass that needs to hand on something new names it here, with its type.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    notes: list[str] = Field(default_factory=list)  # for the report's steps and notes
    precision: str | None = None  # fp32, fp16, int8 (ONNX/TFLite); Core ML: int8-weights, w8a8, palettized-4bit, ...
    quant_plan: QuantPlan | None = None  # the INT8 plan applied (ptq, to_tflite int8): the report's Quantization section
    bn_folds: list[list[str]] = Field(default_factory=list)  # [conv, batchnorm] pairs folded before export (parity)
    opset: int | None = None
    ops: list[str] | None = None  # ONNX op types in the graph
    nodes: int | None = None
    io: dict[str, list[dict[str, Any]]] | None = None  # TFLite inputs/outputs: dtype, shape, quantization (sidecar)
    deployment_target: str | None = None  # Core ML
    input_type: Literal["tensor", "image"] | None = None  # Core ML: image input puts preprocessing in the model
    timesteps: int | None = None  # spiking
    reset: str | None = None  # spiking
    qcfs_thresholds: dict[str, float] | None = None  # learned by qcfs, read by to_snn
    qcfs_levels: int | None = None
    teacher: str | None = None  # distill
    student: str | None = None
    folded: int | None = None  # fold_bn: how many BatchNorm layers
    params_before: int | None = None  # prune
    params_after: int | None = None
    zero_fraction: float | None = None
    qat_before_deg: float | None = None  # qat: PTQ error increase before and after fine-tuning
    qat_after_deg: float | None = None

    def carried(self, *drop: str) -> dict:
        """The fields a pass that transforms this artifact hands on unchanged (all set ones except notes and `drop`)."""
        return self.model_dump(exclude={"notes", *drop}, exclude_defaults=True)


class Artifact(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: Path
    format: Format
    sha256: str
    parent: str | None = None
    meta: ArtifactMeta = Field(default_factory=ArtifactMeta)

    @classmethod
    def create(cls, path: Path, format: Format, parent: Artifact | None = None, **meta) -> Artifact:
        return cls(path=Path(path), format=format, sha256=digest_path(Path(path)),
                   parent=parent.sha256 if parent else None, meta=ArtifactMeta(**meta))

    def with_note(self, note: str) -> Artifact:
        return self.model_copy(update={"meta": self.meta.model_copy(update={"notes": [*self.meta.notes, note]})})

    def files(self) -> list[Path]:
        """Every file that makes up the artifact (an .onnx with external data has two)."""
        if self.path.is_dir():
            return sorted(p for p in self.path.rglob("*") if p.is_file())
        extra = [Path(str(self.path) + ".data")] if self.format == Format.onnx else []
        return [self.path] + [p for p in extra if p.is_file()]

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files())

    def short(self) -> str:
        return f"{self.format.value}:{self.sha256[:12]}"
