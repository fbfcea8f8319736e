"""Exports the TorchScript ONNX exporter lacks below some opset, written with older ONNX ops.

affine_grid: ONNX has AffineGrid only from opset 20 (onnxruntime 1.x runs it from 20 too); a spatial transformer's
2-D grid is base @ theta^T, where the base grid of normalised pixel centres is a constant for the traced height and
width, so MatMul + Reshape express it at any opset (GridSample, which samples it, is opset 16).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

AFFINE_GRID_OPSET = 20  # the first opset with AffineGrid


def _base_grid(height: int, width: int, align_corners: bool) -> np.ndarray:
    """(1, H*W, 3) rows (x, y, 1) of normalised pixel positions, as torch's affine_grid places them."""
    def positions(n: int) -> np.ndarray:
        return np.linspace(-1.0, 1.0, n) if align_corners else (2.0 * np.arange(n) + 1.0) / n - 1.0

    ys, xs = np.meshgrid(positions(height), positions(width), indexing="ij")
    return np.stack([xs, ys, np.ones_like(xs)], axis=-1).reshape(1, height * width, 3).astype(np.float32)


def _affine_grid(g, theta, size, align_corners):
    import torch
    from torch.onnx import symbolic_helper as sh

    dims = [sh._get_const(v, "i", "size") if sh._is_constant(v) else None for v in sh._unpack_list(size)]
    if len(dims) != 4 or None in dims[2:]:
        raise RuntimeError("affine_grid needs a 4-D size with a fixed height and width to export below opset "
                           f"{AFFINE_GRID_OPSET} (got {dims})")
    height, width = dims[2], dims[3]
    base = g.op("Constant", value_t=torch.from_numpy(_base_grid(height, width, bool(sh._get_const(align_corners, "b", "align_corners")))))
    grid = g.op("MatMul", base, g.op("Transpose", theta, perm_i=[0, 2, 1]))  # (N, H*W, 2)
    return g.op("Reshape", grid, g.op("Constant", value_t=torch.tensor([-1, height, width, 2], dtype=torch.int64)))


@contextmanager
def older_opset_symbolics(opset: int):
    """Register the symbolics above for an export at `opset` (where the exporter has none), and remove them after."""
    import torch

    added = []
    if opset < AFFINE_GRID_OPSET:
        torch.onnx.register_custom_op_symbolic("aten::affine_grid_generator", _affine_grid, opset)
        added.append("aten::affine_grid_generator")
    try:
        yield
    finally:
        for name in added:
            torch.onnx.unregister_custom_op_symbolic(name, opset)
