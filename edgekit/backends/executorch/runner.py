"""Run .pte programs in the ExecuTorch runtime (its Python bindings: the same C++ runtime and XNNPACK delegate an
app links), one sample per call, as exported (batch 1)."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np

from edgekit._optional import require
from edgekit.backends.executorch import program as pte
from edgekit.errors import BadInputError, first_line
from edgekit.quiet import quiet


class ExecuTorchRunner:
    """One loaded `forward` method; run() loops over a batch and returns float64 outputs.

    threads: the size of ExecuTorch's process-wide threadpool, which the XNNPACK delegate runs on (reset on every
    runner, so the last runner made sets it for all)."""

    def __init__(self, path: Path, threads: int = 1):
        runtime = require("executorch.runtime", "running ExecuTorch programs")
        from executorch.extension.pybindings import portable_lib

        self.path, self.threads = Path(path), threads
        pte.check_identifier(self.path)  # before the runtime, which can abort on a foreign file's header
        try:
            with quiet():  # the runtime logs its CPU probing on stderr when it starts
                portable_lib._unsafe_reset_threadpool(threads)
                self.program = runtime.Runtime.get().load_program(self.path)
                self.method = self.program.load_method("forward")
        except Exception as exc:
            raise BadInputError(f"{self.path.name}: the ExecuTorch runtime could not load it ({first_line(exc, 200)}); "
                                "fix: rebuild it with edgekit compile --target executorch") from None

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        from torch import from_numpy

        arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in inputs.values()]  # the forward's argument order
        outs = [self.method.execute([from_numpy(a[i:i + 1]) for a in arrays])[0].numpy().astype(np.float64)
                for i in range(len(arrays[0]))]  # astype copies: the runtime reuses its output buffer
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    def describe(self) -> str:
        return (f"ExecuTorch runtime (executorch {metadata.version('executorch')}) with the XNNPACK delegate, "
                f"{self.threads} thread(s)")
