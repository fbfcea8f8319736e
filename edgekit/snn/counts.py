"""Spiking workload counts with NeuroBench's names, per layer and per inference, from measured spikes.

- dense MACs: what the layer costs as an ANN layer, once per inference (and x T if every step ran dense).
- effective MACs: real-valued multiply-accumulates; only the first layer, whose analog input current is computed once
  per inference (direct encoding) and injected every step.
- effective ACs: accumulates triggered by spikes = sum over steps of spikes x fan-out (nonzero synapses).
- neuron updates: neurons x steps.
"""

from __future__ import annotations

import math

from edgekit.energy.estimate import PJ, device_profile, profile
from edgekit.energy.meters import Reading
from edgekit.snn.simulate import input_chain, static_nodes


def layer_macs(lay: dict) -> int:
    """Dense MACs of one node's synapses as an ANN layer: a shortcut's scale one per element; a residual add none
    (its branches' currents sum in the neurons)."""
    out = math.prod(lay["out_shape"])
    if lay["kind"] == "conv":
        return out * lay["in_shape"][0] * lay["kernel"][0] * lay["kernel"][1]
    if lay["kind"] == "linear":
        return out * lay["in_shape"][0]
    return out if lay["kind"] == "scale" else 0


def spiking_counts(net, spikes: list[float], acs: list[float], steps: int, samples: int) -> dict:
    """Per-inference counts from totals over `samples` inferences of `steps` steps (spikes/acs: one per node of
    net.counted). A node with neurons updates them every step; synapses reading the image are MACs, once."""
    static = static_nodes(net)
    rows = []
    for k, i in enumerate(net.counted):
        lay = net.layers[i]
        neurons = math.prod(lay["out_shape"]) if lay["neuron"] != "none" else 0
        spiking = lay["neuron"] == "if"
        encoder = lay["kind"] != "add" and input_chain(net, i)[0] in static
        per = spikes[k] / samples
        rows.append({"layer": lay["name"], "kind": lay["kind"], "neuron": lay["neuron"], "neurons": neurons,
                     "spikes": per if spiking else None,
                     "rate": per / (neurons * steps) if spiking else None,
                     "dense_macs": layer_macs(lay), "effective_macs": layer_macs(lay) if encoder else 0,
                     "effective_acs": acs[k] / samples, "neuron_updates": neurons * steps})
    total = {key: sum(r[key] for r in rows) for key in ("dense_macs", "effective_macs", "effective_acs", "neuron_updates")}
    total["spikes"] = sum(r["spikes"] or 0 for r in rows)
    total["dense_macs_all_steps"] = total["dense_macs"] * steps
    return {"steps": steps, "layers": rows, "total": total,
            "how": ("measured spikes on the evaluation set, averaged per inference; ACs = spikes x nonzero fan-out (NeuroBench "
                    "Eff_ACs); effective MACs = the first layer's analog input current, computed once per inference")}


def energy_estimates(counts: dict, device_name: str) -> list[dict]:
    """Per-op constants of the spiking devices the device profile lists (KerasSpiking table) for the spiking part; the
    encoder's MACs at Horowitz FP32 and the whole inference in 45 nm integer arithmetic when it lists horowitz-45nm."""
    wanted = device_profile(device_name)["energy"]
    ks, hz = profile("keras-spiking"), profile("horowitz-45nm")
    t = counts["total"]
    mac_pj = hz["arithmetic_pj"]["fp32"]["mult"] + hz["arithmetic_pj"]["fp32"]["add"]
    encoder_uj = t["effective_macs"] * mac_pj * PJ * 1e6
    rows = []
    for name in wanted.get("keras-spiking", []):
        chip = ks["devices"][name]
        if not chip["spiking"]:
            continue  # a non-spiking device's per-MAC energy says nothing about accumulates driven by spikes
        spiking_uj = (t["effective_acs"] * chip["synop_j"] + t["neuron_updates"] * chip["neuron_j"]) * 1e6
        rows.append({"profile": "keras-spiking", "device": name, "level": "compute", "low_uj": spiking_uj, "high_uj": spiking_uj,
                     "method": "estimated", "source": f"{ks['source']}; {chip['citation']}",
                     "assumptions": f"{t['effective_acs'] / 1e6:.3f} M synaptic ops (measured spikes x fan-out) x "
                                    f"{chip['synop_j'] * 1e12:g} pJ + {t['neuron_updates']} neuron updates x "
                                    f"{chip['neuron_j'] * 1e12:g} pJ; " + ("Loihi 1 constants, " if name == "loihi" else "")
                                    + "no overhead or memory; the encoder layer runs on the host (next row)"})
    if "horowitz-45nm" in wanted:
        rows += [{"profile": "horowitz-45nm", "device": "45 nm CMOS (host encoder)", "level": "compute", "low_uj": encoder_uj,
                  "high_uj": encoder_uj, "method": "estimated", "source": hz["source"],
                  "assumptions": f"first layer only: {t['effective_macs'] / 1e6:.3f} M FP32 MACs x {mac_pj:g} pJ, once per "
                                 "inference"},
                 _integer_45nm(t, hz, encoder_uj)]
    return rows


def _integer_45nm(t: dict, hz: dict, encoder_uj: float) -> dict:
    """The whole inference in 45 nm integer arithmetic, like for like with an INT8 ANN's MACs: each effective AC is
    one add of an 8-bit weight into the membrane (8-bit add low, 32-bit add high: the state is 24-bit), each neuron
    update one or two 32-bit adds (leak/threshold), plus the encoder's FP32 MACs. No memory traffic, no overhead."""
    arith = hz["arithmetic_pj"]
    lo = t["effective_acs"] * arith["int8"]["add"] + t["neuron_updates"] * arith["int32"]["add"]
    hi = t["effective_acs"] * arith["int32"]["add"] + t["neuron_updates"] * 2 * arith["int32"]["add"]
    return {"profile": "horowitz-45nm", "device": "45 nm CMOS", "level": "compute", "arithmetic": "integer-accumulate",
            "low_uj": lo * PJ * 1e6 + encoder_uj, "high_uj": hi * PJ * 1e6 + encoder_uj, "method": "estimated",
            "source": hz["source"],
            "assumptions": f"{t['effective_acs'] / 1e6:.3f} M effective ACs x {arith['int8']['add']}-{arith['int32']['add']} pJ "
                           f"(8- to 32-bit add) + {t['neuron_updates'] / 1e6:.3f} M neuron updates x 1-2 x "
                           f"{arith['int32']['add']} pJ + the encoder row; compare with INT8 rows (integer MACs), not FP32"}


def energy_section(counts: dict, runtime: str, device: str) -> dict:
    """The report's Energy section for a spiking artifact: the estimates above from measured spikes; nothing measured."""
    why = "not measured: a simulated spiking network has no energy meter, and this host's power says nothing about Loihi"
    return {"macs_by_precision": {"fp32": counts["total"]["effective_macs"]}, "layers": counts["layers"],
            "estimates": energy_estimates(counts, device),
            "measured": Reading(None, None, 0, 0.0, why).__dict__ | {"meter": "none", "runtime": runtime}}
