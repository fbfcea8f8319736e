"""Backends: code for one runtime family each, imported only when used.

A backend knows how to load and run its artifacts on this machine (or says why it cannot) and what it
can report. Targets (recipes in targets/*.yaml) name a backend; several targets share one.
"""

from __future__ import annotations

import importlib

from edgekit.errors import BadInputError

# backend name -> (module, the extra that installs its runtime)
BACKENDS = {"onnx": ("edgekit.backends.onnx", "onnx"), "coreml": ("edgekit.backends.coreml", "coreml"),
            "tflite": ("edgekit.backends.tflite", "tflite"),
            "snn": ("edgekit.backends.snn", "snn"), "lava": ("edgekit.backends.lava", "snn")}


def load_backend(name: str):
    try:
        module, _ = BACKENDS[name]
    except KeyError:
        raise BadInputError(f"unknown backend {name!r}; fix: use one of {', '.join(BACKENDS)}") from None
    return importlib.import_module(module)
