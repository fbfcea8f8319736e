"""Per-layer counts read from an ONNX artifact: MACs by arithmetic precision, bytes of weights and activations.

A layer's precision is what its weights are stored as: int8 (behind DequantizeLinear, with a quantized input),
float16 or float32. Activations are counted once written by a layer and once read by its consumer(s), at
their stored element size (int8 between QDQ pairs, float otherwise).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit._optional import require
from edgekit.backends.onnx.graph import node_macs, shape_inferred
from edgekit.quant.plan import layer_name

_BYTES = {1: 4, 10: 2, 3: 1, 2: 1, 6: 4, 7: 8, 11: 8}  # onnx TensorProto types: FLOAT, FLOAT16, INT8, UINT8, INT32, INT64, DOUBLE


def onnx_layer_counts(path: Path) -> list[dict]:
    """[{'layer', 'op', 'precision', 'macs', 'weight_bytes', 'act_in_elems', 'act_out_elems', 'act_bytes_per_elem'}]."""
    require("onnx", "energy counts")
    model, shapes = shape_inferred(path)
    inits = {i.name: i for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    macs = node_macs(model, shapes)
    rows = []
    for node in model.graph.node:
        if node.name not in macs:
            continue
        weight = _weight(node, inits, producers)
        stored = weight.data_type if weight is not None else 1
        quantized_input = node.input[0] in producers and producers[node.input[0]].op_type == "DequantizeLinear"
        precision = "int8" if stored in (2, 3) and quantized_input else {10: "fp16", 1: "fp32"}.get(stored, "fp32")
        params = sum(int(np.prod(inits[i].dims)) * _BYTES.get(inits[i].data_type, 4) for i in _param_inputs(node, inits, producers))
        rows.append({"layer": layer_name(node.name), "op": node.op_type, "precision": precision, "macs": macs[node.name],
                     "weight_bytes": params, "act_in_elems": int(np.prod(shapes.get(node.input[0]) or [0])),
                     "act_out_elems": int(np.prod(shapes.get(node.output[0]) or [0])),
                     "act_bytes_per_elem": 1 if precision == "int8" else (2 if precision == "fp16" else 4)})
    return rows


def _trace_initializer(name: str, inits: dict, producers: dict):
    """The initializer behind a weight input, looking through DequantizeLinear and Cast."""
    while name not in inits and name in producers and producers[name].op_type in ("DequantizeLinear", "Cast"):
        name = producers[name].input[0]
    return inits.get(name)


def _weight(node, inits, producers):
    return _trace_initializer(node.input[1], inits, producers) if len(node.input) > 1 else None


def _param_inputs(node, inits, producers) -> list[str]:
    names = []
    for i in node.input[1:]:
        init = _trace_initializer(i, inits, producers)
        if init is not None:
            names.append(init.name)
    return names
