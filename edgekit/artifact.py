"""Artifacts: immutable handles to a model on disk (a file or a folder), its format and content digest.

A pass reads one artifact and writes a new one; the parent digest links them into a chain.
"""

from __future__ import annotations

import hashlib
from enum import Enum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class Format(str, Enum):
    torch = "torch"  # folder: weights.safetensors + module.json (how to rebuild the nn.Module)
    torchscript = "torchscript"  # a TorchScript .pt file
    exported_program = "exported_program"  # a torch.export .pt2 file
    onnx = "onnx"
    coreml = "coreml"
    tflite = "tflite"
    snn = "snn"
    lava = "lava"


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


class Artifact(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: Path
    format: Format
    sha256: str
    parent: str | None = None
    meta: dict = Field(default_factory=dict)  # precision, input spec, producing pass, ...

    @classmethod
    def create(cls, path: Path, format: Format, parent: Artifact | None = None, **meta) -> Artifact:
        return cls(path=Path(path), format=format, sha256=digest_path(Path(path)),
                   parent=parent.sha256 if parent else None, meta=meta)

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
