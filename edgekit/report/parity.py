"""Per-layer parity: find the first layer whose output in the artifact departs from the reference.

Reference values come from forward hooks on the PyTorch modules; artifact values from the ONNX graph
with every node output exposed, matched to modules by the exporter's scope names
(`/features/features.0/features.0.2/Relu` belongs to module `features.0.2` and its parents). A conv
whose BatchNorm was folded is compared with that BatchNorm's output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit._optional import require
from edgekit.quant.plan import module_paths

REL_TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2, "int8": 0.1}  # relative to the layer's largest reference value


def _onnx_values_by_module(path: Path, sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    onnx = require("onnx", "the per-layer parity check")
    ort = require("onnxruntime", "the per-layer parity check")
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    known = {vi.name: vi for vi in model.graph.value_info}
    last_by_scope: dict[str, str] = {}
    for node in model.graph.node:
        for path in module_paths(node.name):
            last_by_scope[path] = node.output[0]
    outputs = {o.name for o in model.graph.output}
    for name in set(last_by_scope.values()) - outputs:
        if name in known:
            model.graph.output.append(known[name])
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    values = dict(zip(names, sess.run(None, dict(zip([i.name for i in sess.get_inputs()], sample.values())))))
    return {scope: values[v] for scope, v in last_by_scope.items() if v in values}


def _torch_values(module, sample: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    import torch

    captured: list[tuple[str, np.ndarray]] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: captured.append((name, out.detach().numpy().copy()))
                                     if isinstance(out, torch.Tensor) else None)
             for name, m in module.named_modules() if name]
    try:
        with torch.no_grad():
            module(*(torch.from_numpy(v) for v in sample.values()))
    finally:
        for h in hooks:
            h.remove()
    return captured


def first_divergence(src, art, sample: dict[str, np.ndarray]) -> dict:
    """Compare layer by layer on one sample (the worst one); {} when the artifact is not an ONNX graph."""
    if art.format.value != "onnx" or src.module is None:
        return {"checked": False, "why": "per-layer parity needs a PyTorch reference and an ONNX artifact"}
    bn_to_conv = {bn: conv for conv, bn in art.meta.bn_folds}
    onnx_vals = _onnx_values_by_module(art.path, sample)
    tol = REL_TOLERANCE.get(art.meta.precision or "fp32", 1e-4)
    checked = 0
    for name, ref in _torch_values(src.module, sample):
        if name in bn_to_conv.values():
            continue  # a folded conv's own output is pre-BatchNorm: compared through its BatchNorm instead
        got = onnx_vals.get(bn_to_conv.get(name, name))
        if got is None or got.size != ref.size:
            continue
        checked += 1
        rel = float(np.abs(got.reshape(ref.shape) - ref).max() / (np.abs(ref).max() + 1e-12))
        if rel > tol:
            return {"checked": True, "first_divergent_layer": name, "relative_error": rel, "tolerance": tol,
                    "layers_compared": checked}
    return {"checked": True, "first_divergent_layer": None, "tolerance": tol, "layers_compared": checked,
            "why": "no single layer exceeds the tolerance: the difference accumulates across layers"}
