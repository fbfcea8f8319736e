"""Data-dependent control flow in a user's model, found before any converter freezes it.

Tracing and exporting run the model once on an example input: `if x.mean() > 0:` takes whichever branch that input
gave, and the artifact then takes it for every sample. torch says so with a TracerWarning ("Converting a tensor to a
Python boolean"), which the converters print and nobody reads. edgekit traces the loaded model once, reads those
warnings and refuses the model in one line naming the module and the source line; conversions of a tensor to a Python
number (a value frozen as a constant) are kept as report notes, since verification runs every sample at batch 1 and
shows whether they matter.
"""

from __future__ import annotations

import inspect
import os
import warnings

import torch
from torch import nn

from edgekit.errors import BadInputError

_BRANCH = "Converting a tensor to a Python boolean"
_VALUE = "Converting a tensor to a Python"  # float, integer or index: a value frozen into the graph
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep


def _module_at(root: nn.Module, filename: str, lineno: int) -> str:
    """'path (Class)' of the first submodule whose class's forward() holds filename:lineno."""
    for path, module in root.named_modules():
        forward = type(module).forward
        try:
            source, start = inspect.getsourcelines(forward)
            file = inspect.getsourcefile(forward)
        except (OSError, TypeError):
            continue
        if file == filename and start <= lineno < start + len(source):
            return f"{path or '(top level)'} ({type(module).__name__})"
    return "(not a forward method)"


def traced_conversions(module: nn.Module, args: tuple) -> list[tuple[str, str, int, str]]:
    """(kind 'branch'|'value', module path, filename:lineno as 'file', line, message) for each TracerWarning about a
    tensor turned into a Python value while tracing `module` on `args`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with torch.no_grad():
                torch.jit.trace(module, args, check_trace=False, strict=False)
        except Exception:  # a model that does not trace: each converter reports that in its own words
            return []
    found, seen = [], set()
    for w in caught:
        text = str(w.message)
        if not (issubclass(w.category, torch.jit.TracerWarning) and text.startswith(_VALUE)):
            continue
        if os.path.abspath(w.filename).startswith(_TORCH_DIR):
            continue  # torch's own shape checks (nn.LSTM, F.affine_grid) read sizes, not the model's values
        key = (w.filename, w.lineno)
        if key in seen:
            continue
        seen.add(key)
        kind = "branch" if text.startswith(_BRANCH) else "value"
        found.append((kind, _module_at(module, w.filename, w.lineno), w.filename, w.lineno, text.split(".")[0]))
    return found


def check_no_data_dependent_branches(module: nn.Module, args: tuple, what: str) -> list[str]:
    """Refuse a model that branches on a tensor's value (BadInputError, one line); notes for frozen values."""
    conversions = traced_conversions(module, args)
    branches = [c for c in conversions if c[0] == "branch"]
    if branches:
        _, path, file, line, _ = branches[0]
        more = f" (and {len(branches) - 1} more)" if len(branches) > 1 else ""
        raise BadInputError(f"{what}: module {path} branches on a tensor's value at {file}:{line}{more}; a "
                            "traced or exported artifact would take the branch of one example input for every sample; fix: "
                            "compute both sides and select with torch.where, or move the decision out of the model")
    return [f"module {path} turns a tensor into a Python number at {file}:{line}: tracing freezes that "
            "value as a constant (verification at batch 1 shows whether it matters)"
            for _, path, file, line, _ in conversions]
