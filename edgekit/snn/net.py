"""The `snn` artifact: a folder with weights.safetensors (normalised weights, threshold 1) and snn.json (structure,
neuron model, timesteps, calibration). Loading rebuilds plain tensors: nothing is unpickled."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from edgekit.errors import BadInputError
from edgekit.fileio import atomic_write_text
from edgekit.snn.graph import PASSTHROUGH, WEIGHTED

WEIGHTS, SPEC = "weights.safetensors", "snn.json"
ANN = "ann"  # the torch module the SNN was converted from, when to_snn keeps it (keep_ann)
FORMAT_VERSION = 1


@dataclass
class SpikingNet:
    """layers: the graph's nodes in execution order (edgekit/snn/graph.py): dicts with kind (conv | linear | scale | add |
    flatten | pool), name, neuron (if | integrator | none) for synapses and adds, stride/padding/kernel for conv and pool,
    in_shape/out_shape (without batch), and `inputs` (node indices, -1 the image) where a node does not read the one
    before. weights/biases: one tensor per node (None for add, flatten, pool)."""

    layers: list[dict]
    weights: list[torch.Tensor | None]
    biases: list[torch.Tensor | None]
    input_shape: list[int]  # (C, H, W)
    timesteps: int
    reset: str  # subtract | zero
    v_init: float  # initial membrane potential, in thresholds
    normalize_output: bool
    meta: dict = field(default_factory=dict)  # calibration details, thresholds (lambda) per layer
    delay: bool = False  # one step of synaptic delay per layer, as Lava runs the network (readout lags by the depth)
    warmup: int = 0  # steps run after the lag before the readout window opens (the delays leave transients)
    output_convention: str = "unit_vector"  # the readout's meaning: a gaze vector, or pitchyaw_rad (pitch, yaw in radians)

    @property
    def weighted(self) -> list[int]:
        """Nodes with synapses (conv, linear, per-channel shortcut scale)."""
        return [i for i, lay in enumerate(self.layers) if lay["kind"] in WEIGHTED]

    @property
    def counted(self) -> list[int]:
        """Nodes the spiking counts have a row for: synapses and residual adds (whose neurons sum both branches)."""
        return [i for i, lay in enumerate(self.layers) if lay["kind"] in WEIGHTED or lay["kind"] == "add"]

    def sources(self, i: int) -> list[int]:
        """Node indices node i reads (-1: the image); a sequential net's nodes read the one before."""
        return self.layers[i].get("inputs", [i - 1])

    def consumers(self, i: int) -> list[tuple[int, list[int]]]:
        """The synapse nodes reading population i's spikes, each with the flatten/pool nodes in between."""
        out = []
        for j in range(i + 1, len(self.layers)):
            if i not in self.sources(j):
                continue
            if self.layers[j]["kind"] in PASSTHROUGH:
                out += [(k, [j] + chain) for k, chain in self.consumers(j)]
            elif self.layers[j]["kind"] in WEIGHTED:
                out.append((j, []))
        return out

    def feeders(self, i: int) -> list[int]:
        """The synapse nodes whose current node i's neurons integrate: itself, or a residual add's branches."""
        return self.sources(i) if self.layers[i]["kind"] == "add" else [i]

    def bias_of(self, i: int) -> int:
        """The node whose bias carries node i's constant current: a conv/linear feeder, never an identity shortcut's
        scale (bias-free, as NIR's Scale is)."""
        return next(f for f in self.feeders(i) if self.layers[f]["kind"] != "scale")

    @property
    def sequential(self) -> bool:
        return all(lay["kind"] in ("conv", "linear", "flatten") and "inputs" not in lay for lay in self.layers)

    def spec(self) -> dict:
        return {"format_version": FORMAT_VERSION, "input_shape": self.input_shape, "timesteps": self.timesteps,
                "reset": self.reset, "v_init": self.v_init, "normalize_output": self.normalize_output,
                "readout": "integrator: y = V_T / T (no threshold, no reset)", "threshold": 1.0,
                "output_convention": self.output_convention,
                "layers": self.layers, "meta": self.meta} | ({"synaptic_delay": 1} if self.delay else {}) \
            | ({"readout_warmup": self.warmup} if self.warmup else {})

    def save(self, folder: Path) -> Path:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            if w is not None:
                tensors[f"{i}.weight"] = w.detach().float().contiguous()
                tensors[f"{i}.bias"] = b.detach().float().contiguous()
        save_file(tensors, str(folder / WEIGHTS))
        atomic_write_text(folder / SPEC, json.dumps(self.spec(), indent=2, sort_keys=True) + "\n")
        return folder

    @classmethod
    def load(cls, folder: Path) -> SpikingNet:
        from safetensors.torch import load_file

        try:
            spec = json.loads((folder / SPEC).read_text())
            tensors = load_file(str(folder / WEIGHTS))
        except (OSError, ValueError) as exc:
            raise BadInputError(f"{folder}: not an edgekit snn artifact ({exc}); fix: produce it with the to_snn pass") from None
        n = len(spec["layers"])
        return cls(layers=spec["layers"], weights=[tensors.get(f"{i}.weight") for i in range(n)],
                   biases=[tensors.get(f"{i}.bias") for i in range(n)], input_shape=spec["input_shape"],
                   timesteps=spec["timesteps"], reset=spec["reset"], v_init=spec["v_init"],
                   normalize_output=spec["normalize_output"], meta=spec.get("meta", {}),
                   delay=bool(spec.get("synaptic_delay", 0)), warmup=int(spec.get("readout_warmup", 0)),
                   output_convention=spec.get("output_convention", "unit_vector"))
