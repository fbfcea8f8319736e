"""The Backend contract: what edgekit needs from one runtime family to verify and report an artifact."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import ClassVar, NamedTuple

from edgekit.artifact import Artifact, Format
from edgekit.extras import EXTRAS, install_hint


class Availability(NamedTuple):
    usable: bool
    detail: str  # what runs it when usable; else what is missing and the fix


class Backend:
    """One runtime family. Subclasses live in `edgekit/backends/<name>/__init__.py` beside their conversion pass(es)
    and runner, import their heavy runtime only inside methods, and are registered in `edgekit.backends.REGISTRY`.

    runner(path) returns an object with run(inputs: dict[str, ndarray]) -> ndarray and describe() -> str.
    """

    name: ClassVar[str]
    consumes: ClassVar[frozenset[Format]]  # the artifact formats its runner loads: a recipe's last pass must make one
    extra: ClassVar[str]  # the pip extra that installs its converter and runtime (edgekit.extras)
    measures_speed: ClassVar[bool] = True  # whether latency and memory measured here describe the artifact's runtime
    why_no_speed: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    def available(self) -> Availability:
        """Whether this machine can run the backend's artifacts; the reason and the fix when not."""
        missing = [m for m in EXTRAS[self.extra].modules if importlib.util.find_spec(m) is None]
        if missing:
            return Availability(False, f"missing {', '.join(missing)}; fix: {install_hint(self.extra)}")
        return Availability(True, "ok")

    def runner(self, path: Path, threads: int = 1):
        raise NotImplementedError

    def counts(self, path: Path, runner, sample: dict) -> dict:
        """{'params', 'macs', 'params_how', 'macs_how'} of the artifact as stored."""
        raise NotImplementedError

    def energy(self, path: Path, runner, sample: dict, device: str) -> dict:
        """The energy section: per-layer counts, the estimates `device` (the recipe's device profile) asks for, and a
        measured reading where one means something."""
        raise NotImplementedError

    def runtime_details(self, art: Artifact, runner, work: Path) -> tuple[dict, list[str]]:
        """How the artifact ran here, and notes for the report."""
        return {"runtime": runner.describe(), "executed_here": True}, []

    def sections(self, art: Artifact, runner, inputs, ref_out, card, device: str) -> dict:
        """Report sections only this backend has (the spiking targets' `spiking`); may replace `energy`."""
        return {}


def counts_from_rows(rows: list[dict], params_how: str, macs_from: str) -> dict:
    """counts() from per-layer rows read from an artifact (op, macs, weight_elems), MACs broken down by op."""
    macs_by_op: dict[str, int] = {}
    for r in rows:
        macs_by_op[r["op"]] = macs_by_op.get(r["op"], 0) + r["macs"]
    return {"params": sum(r["weight_elems"] for r in rows if r["macs"]), "macs": sum(macs_by_op.values()),
            "params_how": params_how,
            "macs_how": f"{macs_from}, batch 1: " + ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in macs_by_op.items() if v)}


def weight_int8_share(rows: list[dict]) -> tuple[float, list[dict]]:
    """(the share of MACs against stored weights whose activation input is INT8, the MAC rows without a stored weight).

    What min_int8_mac_fraction checks for TFLite and ExecuTorch, read from the artifact: the layers their plan
    quantizes (quant.torch_plan.layer_table: conv and linear, the layers with weights). A matmul of two activations (an
    attention's query x key, probabilities x value) is reported apart: LiteRT 2.3 runs its INT8 form only in a reference
    kernel and ExecuTorch's XNNPACK has none, so float there is a choice, not a quantizer's slip
    (benchmarks/tflite_activation_matmuls.md). The ONNX plan counts such matmuls as layers: onnxruntime has integer
    kernels for them."""
    weighted = [r for r in rows if r["macs"] and r.get("weight_elems")]
    total = sum(r["macs"] for r in weighted)
    share = sum(r["macs"] for r in weighted if r["precision"] == "int8") / total if total else 1.0
    return share, [r for r in rows if r["macs"] and not r.get("weight_elems")]


def activation_matmul_note(matmuls: list[dict], rows: list[dict]) -> str:
    """One clause on the matmuls of two activations: their MACs' share of all and their precision."""
    if not matmuls:
        return ""
    share = sum(r["macs"] for r in matmuls) / (sum(r["macs"] for r in rows if r["macs"]) or 1)
    precisions = sorted({"INT8" if r["precision"] == "int8" else "float" for r in matmuls})
    return (f"; {len(matmuls)} matmul(s) of two activations ({share:.1%} of all MACs, not in that share) compute in "
            f"{' and '.join(precisions)}")


class SpikingSections:
    """For the spiking backends (snn, lava): their `spiking()` section carries the energy measured from spikes, which
    replaces the placeholder their `energy()` gives."""

    def sections(self, art: Artifact, runner, inputs, ref_out, card, device: str) -> dict:
        spiking = self.spiking(art, runner, inputs, ref_out, card, device)
        return {"energy": spiking.pop("energy_section"), "spiking": spiking}
