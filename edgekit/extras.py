"""The one table of edgekit's optional dependencies: each pip extra, the Python modules it provides and the
distributions whose versions go into cache keys and reports.

Everything that needs these facts reads them from here: `_optional.require` (the install hint of a missing module),
the backend registry (`Backend.available()`), `edgekit doctor`, and `environment.tool_versions()`. pyproject.toml's
`[project.optional-dependencies]` must name the same distributions: tests/test_extras.py checks both ways.
"""

from __future__ import annotations

from typing import NamedTuple


class Extra(NamedTuple):
    purpose: str
    modules: tuple[str, ...]  # import names the extra provides (doctor checks them)
    distributions: tuple[str, ...]  # pip distributions the extra installs, as named in pyproject.toml
    also_versioned: tuple[str, ...] = ()  # distributions pulled in indirectly whose version changes artifacts
    versioned: bool = True  # False: it runs builds but never shapes an artifact, so it stays out of cache keys and reports


CORE = Extra("core (torch, renderer)", ("torch", "numpy", "cv2", "safetensors", "pydantic", "yaml"),
             ("torch", "numpy"))
EXTRAS: dict[str, Extra] = {
    "datasets": Extra("dataset loaders (MPIIGaze, ETH-XGaze, OpenEDS)", ("h5py", "scipy"), ("h5py", "scipy")),
    "onnx": Extra("ONNX export and onnxruntime", ("onnx", "onnxruntime", "onnxslim", "onnxconverter_common"),
                  ("onnx", "onnxruntime", "onnxslim", "onnxconverter-common")),
    "coreml": Extra("Core ML conversion", ("coremltools", "sklearn"), ("coremltools", "scikit-learn")),
    "tflite": Extra("TFLite conversion and the LiteRT interpreter", ("litert_torch", "ai_edge_litert", "ai_edge_quantizer"),
                    ("litert-torch", "ai-edge-litert"), ("ai-edge-quantizer", "torchao")),
    # executorch pins torchao<0.19 and coremltools==9.0 (Linux x86-64), the versions the other extras use
    "executorch": Extra("ExecuTorch lowering (XNNPACK) and its runtime", ("executorch",), ("executorch",), ("torchao",)),
    "snn": Extra("spiking export (netx HDF5, NIR) and fine-tuning (snntorch)", ("h5py", "nir", "snntorch"),
                 ("h5py", "nir", "snntorch")),
    "prune": Extra("structured pruning", ("torch_pruning",), ("torch-pruning",)),
    "ray": Extra("distributed builds (edgekit build --executor ray)", ("ray",), ("ray",), versioned=False),
}


def install_hint(extra: str) -> str:
    return f"pip install 'edgekit[{extra}]'"


def extra_for_module(module: str) -> str | None:
    """The extra that installs the top-level module `module` (the first extra naming it), or None."""
    top = module.split(".")[0]
    return next((name for name, e in EXTRAS.items() if top in e.modules), None)


def versioned_distributions() -> tuple[str, ...]:
    """Every distribution whose version is recorded with an artifact: edgekit, the core, then each extra's."""
    names = ["edgekit", *CORE.distributions]
    for e in EXTRAS.values():
        names += [d for d in e.distributions + e.also_versioned if d not in names and e.versioned]
    return tuple(names)
