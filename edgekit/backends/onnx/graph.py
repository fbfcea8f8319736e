"""Static counts read from an ONNX graph: parameters and multiply-accumulates per op (batch 1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit._optional import require


def _dims(vi) -> list[int] | None:
    dims = [d.dim_value if d.dim_value > 0 else 1 for d in vi.type.tensor_type.shape.dim]  # symbolic batch -> 1
    return dims or None


def shape_inferred(path: Path):
    """(model, shapes) of an ONNX file with symbolic dims (batch) pinned to 1 so shapes propagate through reshapes;
    a QDQ weight's DequantizeLinear output gets its initializer's shape."""
    onnx = require("onnx", "counting ONNX parameters and MACs")
    model = onnx.load(str(path))
    for inp in model.graph.input:
        for d in inp.type.tensor_type.shape.dim:
            if not d.dim_value:
                d.dim_value = 1
    model = onnx.shape_inference.infer_shapes(model)
    graph = model.graph
    inits = {i.name: list(i.dims) for i in graph.initializer}
    shapes = {vi.name: _dims(vi) for vi in list(graph.value_info) + list(graph.input) + list(graph.output)}
    shapes.update(inits)
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            shapes[node.output[0]] = inits[node.input[0]]
    return model, shapes


def node_macs(model, shapes: dict) -> dict[str, int]:
    """MACs of every Conv, Gemm, MatMul, GRU and LSTM node, by node name (batch 1)."""
    return {node.name: macs for node in model.graph.node if (macs := _node_macs(node, shapes))}


def onnx_counts(path: Path) -> dict:
    """{'params', 'macs', 'macs_by_op': {op: MACs}, 'macs_by_node': {node name: MACs}} for Conv, Gemm, MatMul,
    GRU and LSTM nodes (QDQ models count the same: DequantizeLinear'd weights are traced back)."""
    model, shapes = shape_inferred(path)
    params = int(sum(np.prod(i.dims) if i.dims else 1 for i in model.graph.initializer))
    by_node = node_macs(model, shapes)
    ops = {n.name: n.op_type for n in model.graph.node}
    by_op: dict[str, int] = {}
    for name, macs in by_node.items():
        by_op[ops[name]] = by_op.get(ops[name], 0) + macs
    return {"params": params, "macs": int(sum(by_op.values())), "macs_by_op": by_op, "macs_by_node": by_node}


def _node_macs(node, shapes: dict) -> int:
    get = lambda name: shapes.get(name)  # noqa: E731
    if node.op_type == "Conv":
        w, out = get(node.input[1]), get(node.output[0])
        if w and out:
            return int(np.prod(out)) * int(np.prod(w[1:]))  # each output: Cin/groups * kh * kw
    elif node.op_type in ("Gemm", "MatMul"):
        a, out = get(node.input[0]), get(node.output[0])
        if a and out:
            return int(np.prod(out)) * int(a[-1] if node.op_type == "MatMul" or not _attr(node, "transA") else a[-2])
    elif node.op_type in ("GRU", "LSTM"):
        x, w, r = get(node.input[0]), get(node.input[1]), get(node.input[2])
        if x and w and r:
            steps = x[0]  # layout 0: (seq, batch, input)
            return int(steps * x[1] * (np.prod(w[1:]) + np.prod(r[1:])) * w[0])
    return 0


def _attr(node, name: str) -> int:
    return next((a.i for a in node.attribute if a.name == name), 0)
