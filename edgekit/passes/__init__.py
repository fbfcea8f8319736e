"""Passes: one artifact in, one new artifact out. Importing this package registers them all."""

from edgekit.passes import distill, export_onnx, fold_bn, prune, ptq, qat, qcfs, to_coreml, to_netx, to_snn, to_tflite  # noqa: F401  (registration)
from edgekit.passes.base import REGISTRY, Pass

__all__ = ["REGISTRY", "Pass"]
