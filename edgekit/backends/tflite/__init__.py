"""TFLite backend: the litert-torch conversion pass (convert.py), the flatbuffer reader/editor (graph.py) and the
LiteRT interpreter runner (runner.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import ClassVar

from edgekit.artifact import Format
from edgekit.backends.base import Backend, activation_matmul_note, counts_from_rows, weight_int8_share
from edgekit.backends.tflite import convert  # noqa: F401  (registers the pass)
from edgekit.backends.tflite import graph as tflite_graph
from edgekit.backends.tflite.runner import LiteRTRunner, layers_of
from edgekit.energy.section import energy_section


class TFLiteBackend(Backend):
    name: ClassVar[str] = "tflite"
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.tflite})
    extra: ClassVar[str] = "tflite"
    summary: ClassVar[str] = "LiteRT interpreter (XNNPACK), CPU"

    def runner(self, path: Path, threads: int = 1):
        return LiteRTRunner(path, threads=threads)

    def counts(self, path: Path, runner, sample) -> dict:
        return counts_from_rows(layers_of(path)[0], "elements of the weight tensors of conv/fully-connected ops",
                                "from the .tflite op and tensor shapes")

    def energy(self, path: Path, runner, sample, device: str) -> dict:
        rows = [r for r in layers_of(path)[0] if r["macs"]]
        return energy_section(rows, runner, sample, device)

    def runtime_details(self, art, runner, work: Path) -> tuple[dict, list[str]]:
        """Op histogram, and for INT8 models the measured INT8 share of MACs and every op that computes in float."""
        rows, io = layers_of(art.path)
        details = {"runtime": runner.describe(), "executed_here": True, "io": io,
                   "op_histogram": dict(Counter(r["op"] for r in rows))}
        if art.meta.precision != "int8":
            return details, []
        int8, matmuls = weight_int8_share(rows)
        float_ops = [{"op": r["op"], "layer": r["layer"], "macs": r["macs"], "activation_dtype": r["activation_dtype"]}
                     for r in rows if r["precision"] != "int8" and r["op"] not in tflite_graph._DATA_OPS]
        details |= {"int8_mac_fraction_measured": int8, "float_ops": float_ops}
        mac_ops = [f"{f['op']} ({f['layer']})" for f in float_ops if f["macs"]]
        note = (f"INT8 model as converted: {int8:.1%} of the conv and fully-connected MACs in INT8"
                + activation_matmul_note(matmuls, rows) + f"; {len(float_ops)} compute op(s) stay float"
                + (f", with MACs: {', '.join(mac_ops)}" if mac_ops else " (none with MACs)")
                + (f"; the rest: {', '.join(sorted({f['op'] for f in float_ops if not f['macs']}))}"
                   if any(not f["macs"] for f in float_ops) else ""))
        return details, [note]
