"""Backends: code for one runtime family each, imported only when used.

A backend knows how to load and run its artifacts on this machine (or says why it cannot) and what it
can report. Targets (recipes in targets/*.yaml) name a backend; several targets share one.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

from edgekit.artifact import Format
from edgekit.errors import BadInputError


class Backend(NamedTuple):
    module: str
    extra: str  # the extra that installs its runtime
    accepts: frozenset[Format]  # artifact formats its runner loads: a recipe's last pass must produce one


# one format each today; a set so that a backend may run more than one
BACKENDS = {"onnx": Backend("edgekit.backends.onnx", "onnx", frozenset({Format.onnx})),
            "coreml": Backend("edgekit.backends.coreml", "coreml", frozenset({Format.coreml})),
            "tflite": Backend("edgekit.backends.tflite", "tflite", frozenset({Format.tflite})),
            "snn": Backend("edgekit.backends.snn", "snn", frozenset({Format.snn})),
            "lava": Backend("edgekit.backends.lava", "snn", frozenset({Format.lava}))}


def load_backend(name: str):
    try:
        module = BACKENDS[name].module
    except KeyError:
        raise BadInputError(f"unknown backend {name!r}; fix: use one of {', '.join(BACKENDS)}") from None
    return importlib.import_module(module)


def backends_for(fmt: Format) -> list[str]:
    return [name for name, b in BACKENDS.items() if fmt in b.accepts]
