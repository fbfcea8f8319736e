"""Energy estimates per inference: counts times cited per-op constants, in two levels, as low-high ranges.

- horowitz-45nm, compute: MACs by precision. FP32 MAC = mult 3.7 + add 0.9 pJ; FP16 = 1.1 + 0.4; INT8 = mult 0.2 plus
  an add between 0.03 (8-bit) and 0.1 pJ (32-bit accumulator): 0.23-0.30 pJ.
- horowitz-45nm, compute+memory: plus each weight read once and each activation written once and read once. Low:
  everything from a 32 KB SRAM (20 pJ per 64-bit word); high: weights from DRAM (2.6 nJ per 64-bit word), activations
  from a 1 MB SRAM (100 pJ per 64-bit word).
- keras-spiking cpu/gpu/arm: MACs x energy per synaptic op + activations x energy per neuron update; the source gives no
  memory term and no precision dependence, so it has a compute level only.
Ratios are meaningful only between rows of the same profile, device and level.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

from edgekit.errors import BadInputError

DEVICES_DIR = Path(__file__).resolve().parents[1] / "targets" / "devices"
PJ = 1e-12


def _known(kind_is_device: bool) -> list[str]:
    return sorted(p.stem for p in DEVICES_DIR.glob("*.yaml")
                  if (yaml.safe_load(p.read_text()).get("kind") == "device") == kind_is_device)


@lru_cache(maxsize=None)
def profile(name: str) -> dict:
    """A cited energy profile (per-op constants with their sources)."""
    path = DEVICES_DIR / f"{name}.yaml"
    if not path.is_file() or name in _known(kind_is_device=True):
        raise BadInputError(f"unknown energy profile {name!r}; fix: use one of {', '.join(_known(kind_is_device=False))}")
    return yaml.safe_load(path.read_text())


@lru_cache(maxsize=None)
def device_profile(name: str) -> dict:
    """A device profile (a recipe's `device:`): which energy profiles estimate it, at which levels or devices."""
    path = DEVICES_DIR / f"{name}.yaml"
    if not path.is_file() or name not in _known(kind_is_device=True):
        raise BadInputError(f"unknown device {name!r}; fix: use one of {', '.join(_known(kind_is_device=True))} "
                            f"(edgekit/targets/devices/)")
    return yaml.safe_load(path.read_text())


def device_names() -> list[str]:
    return _known(kind_is_device=True)


def _mac_pj(arith: dict, precision: str) -> tuple[float, float]:
    if precision == "int8":
        return arith["int8"]["mult"] + arith["int8"]["add"], arith["int8"]["mult"] + arith["int32"]["add"]
    p = arith["fp16" if precision == "fp16" else "fp32"]
    return (p["mult"] + p["add"],) * 2


def horowitz(rows: list[dict], levels=("compute", "compute+memory")) -> list[dict]:
    prof = profile("horowitz-45nm")
    arith, mem = prof["arithmetic_pj"], prof["memory_pj_per_64bit_word"]
    lo = hi = 0.0
    for r in rows:
        a, b = _mac_pj(arith, r["precision"])
        lo, hi = lo + r["macs"] * a, hi + r["macs"] * b
    weight_bits = 8 * sum(r["weight_bytes"] for r in rows)
    act_bits = 8 * sum((r["act_in_elems"] + r["act_out_elems"]) * r["act_bytes_per_elem"] for r in rows)
    mem_lo = (weight_bits + act_bits) * mem["sram_32kb"] / 64
    mem_hi = weight_bits * max(mem["dram"]) / 64 + act_bits * mem["sram_1mb"] / 64
    precisions = sorted({r["precision"] for r in rows})
    # integer rows compare with integer rows (an SNN's accumulates against INT8 MACs), float with float
    arithmetic = "integer" if precisions == ["int8"] else "float"
    base = {"profile": "horowitz-45nm", "device": "45 nm CMOS", "method": "estimated", "source": prof["source"],
            "arithmetic": arithmetic}
    return [row for row in [
        {**base, "level": "compute", "low_uj": lo * PJ * 1e6, "high_uj": hi * PJ * 1e6,
         "assumptions": f"MACs at the precision stored in the artifact ({', '.join(precisions)}; a runtime that up-casts, like "
                        "onnxruntime's CPU provider for FP16, computes in FP32); INT8 MAC 0.23-0.30 pJ, FP16 1.5, FP32 4.6; no memory"},
        {**base, "level": "compute+memory", "low_uj": (lo + mem_lo) * PJ * 1e6, "high_uj": (hi + mem_hi) * PJ * 1e6,
         "assumptions": f"{weight_bits / 8e6:.3f} MB weights read once, {act_bits / 8e6:.3f} MB activation traffic; low: "
                        "all from 32 KB SRAM (20 pJ/64 b); high: weights from DRAM (2.6 nJ/64 b), activations 1 MB SRAM (100 pJ/64 b)"},
    ] if row["level"] in levels]


def keras_spiking(rows: list[dict], devices=("cpu", "gpu", "arm")) -> list[dict]:
    prof = profile("keras-spiking")
    macs = sum(r["macs"] for r in rows)
    neurons = sum(r["act_out_elems"] for r in rows)
    out = []
    for name in devices:
        d = prof["devices"][name]
        e = (macs * d["synop_j"] + neurons * d["neuron_j"]) * 1e6
        out.append({"profile": "keras-spiking", "device": name, "level": "compute", "low_uj": e, "high_uj": e,
                    "method": "estimated", "source": f"{prof['source']}; {d['citation']}",
                    "assumptions": f"{macs / 1e6:.2f} M synaptic ops (MACs) x {d['synop_j'] * 1e9:g} nJ + {neurons} neuron "
                                   f"updates x {d['neuron_j'] * 1e9:g} nJ; precision-independent; no overhead or memory"})
    return out


def estimate(rows: list[dict], device_name: str = "host-cpu") -> list[dict]:
    """The estimates the device profile asks for, in its order."""
    makers = {"horowitz-45nm": horowitz, "keras-spiking": keras_spiking}
    return [row for name, which in device_profile(device_name)["energy"].items() for row in makers[name](rows, which)]
