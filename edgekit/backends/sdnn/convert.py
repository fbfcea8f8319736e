"""to_sdnn: a BN-folded chain CNN -> a sigma-delta network for Loihi 2, written as netx HDF5 (edgekit/sdnn/).

The artifact folder holds network.net (netx SDNN layers: Delta input, SigmaDelta ReLU layers, a Sigma readout; 8-bit
weights), sdnn.json (what the host does around it: input and readout scales, the readout's bias, the thresholds
chosen on the calibration set, steps per frame, how many images Lava's simulator checks) and ann/, the BN-folded
float network it was converted from (not deployed: the report measures the conversion's cost against it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from edgekit.artifact import Artifact, Format
from edgekit.errors import BadInputError
from edgekit.evalset import model_inputs
from edgekit.fileio import atomic_write_text
from edgekit.passes.base import Pass
from edgekit.progress import detail, step
from edgekit.sdnn.convert import SdnnNet, convert, sdnn_wording
from edgekit.sdnn.netx import write_network
from edgekit.snn.graph import extra_input_error
from edgekit.torch_module import load_module

NETWORK, SPEC, ANN = "network.net", "sdnn.json", "ann"


class ToSDNN(Pass):
    name: ClassVar[str] = "to_sdnn"
    version: ClassVar[int] = 1
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.torch})
    produces: ClassVar[Format] = Format.sdnn
    summary: ClassVar[str] = ("ANN -> sigma-delta network for Loihi 2 (netx SDNN): per-channel scales, 8-bit weights, "
                              "delta thresholds chosen per layer on the calibration set")

    budget_deg: float = Field(0.2, ge=0, description="the thresholds rise while the calibration error stays within this "
                                                     "many degrees of the ANN's (fixed point included)")
    percentile: float = Field(99.9, gt=0, le=100, description="each layer's threshold is a fraction of this percentile "
                                                              "of its activation")
    calib_images: int = Field(512, ge=8, description="calibration images for scales and activation statistics")
    search_images: int = Field(256, ge=8, description="calibration images the threshold search scores on")
    bias_correction: bool = Field(True, description="fold the mean shift the 8-bit weights cause into each channel's "
                                                    "bias (measured on the calibration set)")
    lava_samples: int = Field(16, ge=1, description="evaluation images also run through Lava's simulator (one stream "
                                                    "of frames) and compared message for message")
    sequences: int = Field(8, ge=0, description="rendered sequences the report runs as streams of frames (0: none)")
    sequence_frames: int = Field(30, ge=2, description="frames per rendered sequence")
    fps: float = Field(60.0, gt=0, description="frame rate of the rendered sequences")

    def host_dependence(self) -> str | None:
        return "scales and thresholds come from float64 calibration statistics whose rounding may differ across CPUs"

    def preflight(self, card) -> None:
        if len(card.inputs) > 1:
            raise BadInputError(sdnn_wording(extra_input_error(None, len(card.inputs), [s.name for s in card.inputs])))

    def run(self, src: Artifact, ctx, out_dir: Path) -> Artifact:
        import torch

        if ctx.calib is None:
            raise BadInputError("to_sdnn needs a calibration set; fix: declare `calibration:` in the recipe or pass "
                                "--calib-set")
        if ctx.card.image_input.layout != "NCHW":
            raise BadInputError(f"input {ctx.card.image_input.name} is an {ctx.card.image_input.layout} frame sequence: "
                                "to_sdnn converts a per-frame (NCHW) model and runs sequences frame by frame itself; "
                                "fix: convert the model's per-frame CNN, exported as its own model")
        module, _ = load_module(src.path, trusted_arch=ctx.card.arch)
        inputs = model_inputs(ctx.card, ctx.calib).take(self.calib_images)
        calib = torch.from_numpy(next(iter(inputs.arrays.values())))
        truth = ctx.calib.gaze[:len(calib)]
        with step(f"choosing sigma-delta scales and thresholds on {len(calib)} calibration images "
                  f"(error budget {self.budget_deg:g} deg)"):
            net = convert(module, calib, truth, budget_deg=self.budget_deg, percentile=self.percentile,
                          output_convention=ctx.card.output.convention, input_names=[s.name for s in ctx.card.inputs],
                          search_images=self.search_images, bias_correction=self.bias_correction, log=detail)
        net.meta["calibration_set"] = {"source": ctx.calib.meta.get("source"), "digest": ctx.calib.digest(),
                                       "n": len(calib)}
        folder = out_dir / "model.sdnn"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src.path, folder / ANN)
        write_network(net.layers, folder / NETWORK, net.steps_per_frame, net.names)
        plan = {"count": self.sequences, "frames": self.sequence_frames, "fps": self.fps}
        atomic_write_text(folder / SPEC, json.dumps(spec_of(net, self.lava_samples, plan), indent=2, sort_keys=True) + "\n")
        notes = [f"sigma-delta network of {len(net.layers)} netx layers, 8-bit weights, {net.steps_per_frame} steps per "
                 f"frame; thresholds {', '.join(f'{f:g}' for f in net.fractions[:-1])} of each layer's "
                 f"p{self.percentile:g} activation; calibration error +{net.meta['increase_deg']:.3f} deg over the ANN "
                 f"({net.meta['quantization_only_increase_deg']:+.3f} with zero thresholds)"]
        return Artifact.create(folder, Format.sdnn, src, notes=notes)


def spec_of(net: SdnnNet, lava_samples: int, sequences: dict) -> dict:
    """sdnn.json: everything the runner needs besides the netx file, and how the thresholds were chosen."""
    history = net.meta.get("history", [])
    return {"format_version": 1, "scales": net.scales, "thresholds": net.thresholds, "fractions": net.fractions,
            "names": net.names, "readout_bias": net.readout_bias, "normalize_output": net.normalize_output,
            "output_convention": net.output_convention, "steps_per_frame": net.steps_per_frame,
            "delay_steps": net.delay_steps, "input_shape": list(net.layers[0].shape), "lava_samples": lava_samples,
            "sequences": sequences,
            "conversion": {k: v for k, v in net.meta.items() if k != "history"} | {"search_steps": len(history)}}


def net_from(folder: Path) -> SdnnNet:
    """The network as the runner sees it: the netx file and sdnn.json (not the converter's memory)."""
    from edgekit.sdnn.netx import read_network

    spec = json.loads((Path(folder) / SPEC).read_text())
    return SdnnNet(read_network(Path(folder) / NETWORK), spec["names"], spec["scales"], spec["thresholds"],
                   spec["fractions"], spec["readout_bias"], spec["normalize_output"], spec["output_convention"],
                   {"spec": spec})
