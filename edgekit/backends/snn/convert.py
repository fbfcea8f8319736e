"""to_snn: convert a BN-folded gaze CNN (sequential, or with residual blocks) into a rate-coded spiking network (edgekit/snn/convert.py).

Writes the calibrated SNN, its NIR graph (model.nir, the portable neuromorphic form) and, in `baseline/`, the naive conversion of the same model (per-layer maximum,
no balancing, no initial charge) that reports compare against. Calibration uses the recipe's calibration set only.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from edgekit.artifact import Artifact, Format
from edgekit.errors import BadInputError
from edgekit.evalset import model_inputs
from edgekit.passes.base import Pass
from edgekit.progress import step
from edgekit.snn.convert import convert, populations
from edgekit.snn.net import ANN
from edgekit.snn.graph import extra_input_error
from edgekit.snn.nir_export import write_nir
from edgekit.torch_module import load_module


class ToSNN(Pass):
    name: ClassVar[str] = "to_snn"
    version: ClassVar[int] = 4  # 2: residual graphs, synaptic delay and readout warm-up; 3: the naive baseline gets the warm-up
    # too; 4: pitch/yaw readouts (output_convention in snn.json)
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.torch})
    produces: ClassVar[Format] = Format.snn
    summary: ClassVar[str] = "ANN -> rate-coded SNN: percentile thresholds, layer-wise balancing, IF neurons, integrator readout"

    timesteps: int = Field(32, ge=1, le=4096, description="simulation steps per inference (T)")
    reset: Literal["subtract", "zero"] = Field("subtract", description="subtract: exact rate coding; zero: what Lava's CUBA does")
    percentile: float | None = Field(99.9, gt=0, le=100, description="threshold percentile of each ReLU output; null = maximum")
    per_channel: bool = Field(True, description="one threshold per channel (else per layer)")
    balance: Literal["gain", "none", "bias", "scale"] = Field(
        "gain", description="layer-wise balancing by simulation at T on the calibration set: per-channel spike gain "
                            "(default), per-channel bias, per-layer threshold scale, or none")
    v_init: float = Field(0.5, ge=0, lt=1, description="initial membrane potential in thresholds (0.5 rounds rates instead of flooring)")
    threshold_scale: float = Field(1.0, gt=0, description="multiplies every threshold")
    calib_images: int = Field(256, ge=8, description="calibration images used")
    delay: bool = Field(False, description="simulate and balance with one step of synaptic delay per layer, as Lava runs "
                                           "the network (the loihi targets)")
    warmup: int = Field(0, ge=0, le=256, description="steps between the readout's lag and its T-step window (transients "
                                                     "the delays leave are not read)")
    keep_ann: bool = Field(False, description="keep the ANN it converted in ann/ (the teacher finetune_snn distils from)")

    def host_dependence(self) -> str | None:
        return "thresholds come from float32 calibration runs in torch, whose kernels depend on the CPU"

    def preflight(self, card) -> None:
        if len(card.inputs) > 1:  # the spiking network has one input population: refuse before qcfs or distill train
            raise BadInputError(extra_input_error(None, len(card.inputs), [s.name for s in card.inputs]))

    def run(self, src: Artifact, ctx, out_dir: Path) -> Artifact:
        import torch

        if ctx.calib is None:
            raise BadInputError("to_snn needs a calibration set; fix: declare `calibration:` in the recipe or pass --calib-set")
        if self.warmup and not self.delay:
            raise BadInputError(f"to_snn warmup {self.warmup} without delay: the warm-up counts from Lava's delays; fix: set "
                                "delay: true (the loihi targets) or warmup: 0")
        module, _ = load_module(src.path, trusted_arch=ctx.card.arch)
        if ctx.card.image_input.layout != "NCHW":
            raise BadInputError(_temporal_error(module, ctx.card))
        inputs = model_inputs(ctx.card, ctx.calib).take(self.calib_images)
        calib = torch.from_numpy(next(iter(inputs.arrays.values())))
        n_inputs, names = len(ctx.card.inputs), [s.name for s in ctx.card.inputs]
        convention = ctx.card.output.convention  # unit_vector or pitchyaw_rad: the readout carries it as it is
        with step(f"calibrating spiking thresholds on {len(calib)} images (T={self.timesteps}, reset by {self.reset}, "
                  f"balance {self.balance})"):
            net = convert(module, n_inputs, calib, timesteps=self.timesteps, reset=self.reset, percentile=self.percentile,
                          per_channel=self.per_channel, balance=self.balance, v_init=self.v_init,
                          threshold_scale=self.threshold_scale, thresholds=src.meta.qcfs_thresholds, delay=self.delay,
                          warmup=self.warmup, output_convention=convention, input_names=names)
        net.meta["calibration_set"] = {"source": ctx.calib.meta.get("source"), "digest": ctx.calib.digest(), "n": len(calib)}
        folder = net.save(out_dir / "snn")
        write_nir(net, folder / "model.nir")
        with step(f"converting the naive baseline (per-layer maximum) on {len(calib)} images"):
            naive = convert(module, n_inputs, calib, timesteps=self.timesteps, reset=self.reset, percentile=None,
                            per_channel=False, balance="none", v_init=0.0, delay=self.delay, warmup=self.warmup,
                            output_convention=convention, input_names=names)
        naive.meta["baseline"] = ("naive: per-layer maximum activation (Diehl 2015), no balancing, no initial charge"
                                  + ("; the same delays and readout window" if self.delay else ""))
        naive.save(folder / "baseline")
        if self.keep_ann:
            shutil.copytree(src.path, folder / ANN)
        how = ("thresholds learned by qcfs" if src.meta.qcfs_thresholds else
               f"thresholds p{self.percentile or 'max'} per {'channel' if self.per_channel else 'layer'}")
        notes = [f"converted {len(populations(net)) + 1} layers to IF neurons (T={self.timesteps}, reset by {self.reset}, {how}, "
                 f"balance {self.balance}) with an integrator readout"
                 + (" of pitch and yaw in radians (the host converts them to a gaze vector)" if convention == "pitchyaw_rad"
                    else "")]
        return Artifact.create(folder, Format.snn, src, notes=notes, timesteps=self.timesteps, reset=self.reset)


def _temporal_error(module, card) -> str:
    """One line for a sequence model: its input layout and the recurrent (or other temporal) layer by module path."""
    from torch import nn

    rec = next(((name, type(m).__name__) for name, m in module.named_modules()
                if isinstance(m, (nn.LSTM, nn.GRU, nn.RNN, nn.MultiheadAttention))), None)
    what = f"; layer {rec[0]} ({rec[1]}) runs across frames" if rec else ""
    return (f"input {card.image_input.name} is an {card.image_input.layout} frame sequence{what}: to_snn converts "
            "single-image (NCHW) models, whose rate code spends its timesteps on one image; fix: convert a per-frame "
            "model (such as TinyGaze, or this model's per-frame CNN exported as its own model) and run the temporal "
            "part on the host")
