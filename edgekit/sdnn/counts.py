"""A sigma-delta network's work per frame, from the messages the fixed-point mirror measured, next to the ANN's MACs.

- messages: nonzero graded messages the input and hidden layers send (the readout's sigma goes to the host);
- synaptic ops: messages x fan-out (nonzero weights each message drives), NeuroBench's effective ops;
- neuron updates: every neuron of every layer, every step of the frame.
"""

from __future__ import annotations

import numpy as np

from edgekit.sdnn.mirror import SdnnLayer


def layer_macs(lay: SdnnLayer, before: SdnnLayer) -> int:
    """The ANN's multiply-accumulates of one layer (a conv: per output, input channels x kernel)."""
    if lay.kind == "conv":
        return lay.neurons * int(np.prod(lay.weight.shape[1:]))
    return lay.neurons * before.neurons if lay.kind == "dense" else 0


def ann_macs(layers: list[SdnnLayer]) -> int:
    return sum(layer_macs(lay, before) for before, lay in zip(layers, layers[1:]))


def message_counts(net, messages: np.ndarray, synops: np.ndarray, frames: int) -> dict:
    """Per-frame counts: messages[k] sent by layer k, synops[k] driven into layer k by layer k - 1's messages."""
    layers, steps = net.layers, net.steps_per_frame
    rows = []
    for k, lay in enumerate(layers):
        out = float(synops[k + 1]) if k + 1 < len(layers) else 0.0
        rows.append({"layer": net.names[k], "kind": lay.kind, "neuron": lay.neuron, "neurons": lay.neurons,
                     "threshold": net.thresholds[k], "vth_mantissa": lay.vth,
                     "messages": float(messages[k]) if lay.neuron != "sigma" else None,
                     "messages_per_neuron": float(messages[k]) / lay.neurons if lay.neuron != "sigma" else None,
                     "synops_out": out, "ann_macs_in": layer_macs(lay, layers[k - 1]) if k else 0})
    total_synops = float(np.sum(synops))
    macs = ann_macs(layers)
    return {"frames": int(frames), "steps_per_frame": steps,
            "messages": float(sum(r["messages"] or 0 for r in rows)), "synops": total_synops,
            "neuron_updates": float(sum(lay.neurons for lay in layers) * steps),
            "synops_per_ann_mac": total_synops / macs if macs else 0.0, "layers": rows,
            "how": (f"measured by the fixed-point mirror, {steps} steps per frame, averaged over {frames} frames; synaptic "
                    "ops = nonzero messages x nonzero fan-out")}
