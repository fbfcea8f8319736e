"""Content-addressed cache of pass outputs.

Key = sha256 of (pass name, pass version, options, input digest, calibration digest, card, tool
versions). An entry is a folder holding the pass's output and `artifact.json`; it is renamed into place
only when complete, so concurrent or interrupted runs never see half an entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from edgekit.artifact import Artifact

TOOLS = ("edgekit", "torch", "numpy", "onnx", "onnxruntime", "onnxslim", "onnxconverter-common", "coremltools",
         "litert-torch", "ai-edge-litert", "ai-edge-quantizer", "torchao", "h5py", "nir")


def tool_versions() -> dict[str, str]:
    versions = {}
    for dist in TOOLS:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def cache_key(pass_name: str, pass_version: int, options: dict, input_digest: str, calib_digest: str | None,
              card: dict, tools: dict[str, str]) -> str:
    blob = json.dumps({"pass": pass_name, "version": pass_version, "options": options, "input": input_digest,
                       "calib": calib_digest, "card": card, "tools": tools}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class Cache:
    def __init__(self, root: Path):
        self.root = Path(root)

    def get(self, key: str) -> Artifact | None:
        entry = self.root / key[:2] / key
        meta = entry / "artifact.json"
        if not meta.is_file():
            return None
        art = Artifact.model_validate_json(meta.read_text())
        # stored paths are relative to the entry, so the cache can move
        return art.model_copy(update={"path": entry / art.path})

    def put(self, key: str, art: Artifact, out_dir: Path) -> Artifact:
        """Move `out_dir` (which holds the artifact) into the cache; returns the artifact at its cached path."""
        entry = self.root / key[:2] / key
        entry.parent.mkdir(parents=True, exist_ok=True)
        rel = art.path.relative_to(out_dir)
        (out_dir / "artifact.json").write_text(art.model_copy(update={"path": rel}).model_dump_json(indent=2))
        staging = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{key[:12]}."))
        shutil.rmtree(staging)
        shutil.copytree(out_dir, staging)
        try:
            os.rename(staging, entry)
        except OSError:  # another process stored the same key first: theirs is equivalent
            shutil.rmtree(staging, ignore_errors=True)
        return self.get(key)
