"""to_netx: write a reset-to-zero SNN as a netx HDF5 network for Lava / Loihi 2 (edgekit/snn/netx.py).

The lava artifact keeps a copy of the snn artifact in `snn/` (float SNN, naive baseline, NIR graph) so verification can
report the fixed-point-vs-float gap and the error-vs-T curves.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from edgekit.artifact import Artifact, Format
from edgekit.fileio import atomic_write_text
from edgekit.passes.base import Pass
from edgekit.snn.net import ANN, SpikingNet
from edgekit.snn.netx import SPEC, write_artifact


class ToNetx(Pass):
    name: ClassVar[str] = "to_netx"
    version: ClassVar[int] = 4  # 2: the snn copy keeps the naive baseline; 3: readout_start (warm-up) in lava.json;
    # 4: output_convention and layer names in lava.json
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.snn})
    produces: ClassVar[Format] = Format.lava
    summary: ClassVar[str] = "SNN -> netx HDF5 for Lava/Loihi 2: 8-bit weights, CUBA neurons (reset to zero), host-side encoder"

    lava_samples: int = Field(16, ge=1, description="evaluation images also run through Lava's simulator and compared spike for spike")

    def run(self, src: Artifact, ctx, out_dir: Path) -> Artifact:
        net = SpikingNet.load(src.path)
        folder, quant = write_artifact(net, out_dir / "model.lava")
        # float SNN, its naive baseline and NIR graph: the report's curves (not the ANN finetune_snn learnt from)
        shutil.copytree(src.path, folder / "snn", ignore=shutil.ignore_patterns(ANN))
        spec = json.loads((folder / SPEC).read_text())
        spec["lava_samples"] = self.lava_samples
        atomic_write_text(folder / SPEC, json.dumps(spec, indent=2, sort_keys=True) + "\n")
        notes = [f"netx HDF5 with {len(spec['layers'])} layers, 8-bit weights ({quant['clipped_weights']} clipped), "
                 f"{quant['clipped_biases']} biases clipped to 13 bits; readout lags the input by {spec['delay_steps']} steps"]
        return Artifact.create(folder, Format.lava, src, notes=notes, timesteps=net.timesteps)
