"""Backends: one folder per runtime family (its conversion passes, runner, counts and report sections) and one
registry of them, read by the recipe checks, `edgekit doctor` and the report builder.

Targets (recipes in targets/*.yaml) name a backend; several targets share one. Importing this package imports every
backend's folder (cheap: converters and runtimes load inside their methods) and so registers their passes.
"""

from __future__ import annotations

from edgekit.artifact import Format
from edgekit.backends.base import Availability, Backend
from edgekit.backends.coreml import CoreMLBackend
from edgekit.backends.executorch import ExecuTorchBackend
from edgekit.backends.lava import LavaBackend
from edgekit.backends.null import NullBackend
from edgekit.backends.onnx import OnnxBackend
from edgekit.backends.sdnn import SdnnBackend
from edgekit.backends.snn import SnnBackend
from edgekit.backends.tflite import TFLiteBackend
from edgekit.errors import BadInputError
from edgekit.passes.base import REGISTRY as PASSES

REGISTRY: dict[str, Backend] = {b.name: b for b in (OnnxBackend(), CoreMLBackend(), TFLiteBackend(), ExecuTorchBackend(),
                                                    SnnBackend(), LavaBackend(), SdnnBackend(), NullBackend())}

__all__ = ["REGISTRY", "Availability", "Backend", "backends_for", "get_backend"]


def get_backend(name: str) -> Backend:
    try:
        return REGISTRY[name]
    except KeyError:
        raise BadInputError(f"unknown backend {name!r}; fix: use one of {', '.join(REGISTRY)}") from None


def backends_for(fmt: Format) -> list[str]:
    """Names of the backends whose runner loads `fmt`."""
    return [name for name, b in REGISTRY.items() if fmt in b.consumes]


def producing_passes(backend: Backend) -> list[str]:
    """Pass names whose output this backend runs (what a recipe for it must end with)."""
    return sorted(n for n, cls in PASSES.items() if cls.produces in backend.consumes)


def check_last_pass(backend_name: str, last) -> str | None:
    """Why a pipeline ending with pass `last` cannot feed backend `backend_name` (None when it can): the check a
    recipe makes at load time, so that a mismatch is refused before the whole pipeline has run."""
    backend = get_backend(backend_name)
    if last.produces in backend.consumes:
        return None
    runs = ", ".join(sorted(f.value for f in backend.consumes))
    makers = producing_passes(backend)
    others = " or ".join(f"backend: {b}" for b in backends_for(last.produces)) or "a backend that runs it"
    return (f"backend {backend_name!r} runs {runs} artifacts, but the last pass {last.name} produces {last.produces.value}; "
            f"fix: use {others}, or end the passes with {' or '.join(makers) or f'a pass that produces {runs}'}")
