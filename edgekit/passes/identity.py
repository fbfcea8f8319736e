"""identity: copy a torch artifact unchanged. With the null backend it exercises the pipeline, the pass cache, the
gates and the report without any converter, in milliseconds (tests), and shows the smallest possible pass."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar

from edgekit.artifact import Artifact, Format
from edgekit.passes.base import Pass


class Identity(Pass):
    name: ClassVar[str] = "identity"
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.torch})
    produces: ClassVar[Format] = Format.torch
    summary: ClassVar[str] = "copy the torch model unchanged (tests the pipeline without a converter)"

    def run(self, src: Artifact, ctx, out_dir: Path) -> Artifact:
        shutil.copytree(src.path, out_dir / "module")
        return Artifact.create(out_dir / "module", Format.torch, src, **src.meta.carried(), notes=["copied unchanged"])
