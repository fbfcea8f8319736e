"""ExecuTorch backend: the lowering pass (convert.py), the .pte reader (program.py) and the runtime runner (runner.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import ClassVar

from edgekit.artifact import Format
from edgekit.backends.base import Backend, activation_matmul_note, counts_from_rows
from edgekit.backends.executorch import convert  # noqa: F401  (registers the pass)
from edgekit.backends.executorch import program as pte
from edgekit.backends.executorch.runner import ExecuTorchRunner
from edgekit.energy.section import energy_section


class ExecuTorchBackend(Backend):
    name: ClassVar[str] = "executorch"
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.pte})
    extra: ClassVar[str] = "executorch"
    summary: ClassVar[str] = "ExecuTorch runtime (XNNPACK delegate), CPU"

    def runner(self, path: Path, threads: int = 1):
        return ExecuTorchRunner(path, threads=threads)

    def counts(self, path: Path, runner, sample) -> dict:
        return counts_from_rows(pte.read(path).layers, "elements of the weight tensors of conv/fully-connected nodes in "
                                "the .pte", "from the .pte's XNNPACK graphs and portable kernel calls")

    def energy(self, path: Path, runner, sample, device: str) -> dict:
        return energy_section(pte.read(path).layers, runner, sample, device)

    def runtime_details(self, art, runner, work: Path) -> tuple[dict, list[str]]:
        """What XNNPACK runs and what the portable kernels run: the delegated share of MACs, every portable op, and
        for INT8 programs the measured INT8 share and every MAC op that computes in float."""
        program = pte.read(art.path)
        rows = program.layers
        details = {"runtime": runner.describe(), "executed_here": True, "io": program.io(),
                   "op_histogram": dict(Counter([r["op"] for r in rows if r["delegated"]] + program.portable)),
                   "delegated_mac_fraction": program.delegated_share(), "portable_ops": program.portable_ops()}
        notes = [f"XNNPACK runs {program.delegated_share():.1%} of MACs in {len(program.delegates)} delegate call(s); "
                 "portable kernels run " + (", ".join(f"{op} x{n}" for op, n in program.portable_ops().items()) or "nothing")]
        if art.meta.precision == "int8":
            int8, matmuls = program.int8_share()
            float_ops = [{"op": r["op"], "layer": r["layer"], "macs": r["macs"], "activation_dtype": r["activation_dtype"]}
                         for r in rows if r["precision"] != "int8"]
            details |= {"int8_mac_fraction_measured": int8, "float_ops": float_ops}
            notes.append(f"INT8 program as lowered: {int8:.1%} of the conv and fully-connected MACs in INT8"
                         f"{activation_matmul_note(matmuls, rows)}; {len(float_ops)} MAC op(s) compute in float")
        return details, notes
