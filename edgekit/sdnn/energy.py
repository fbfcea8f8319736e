"""Energy estimates of one sigma-delta frame from its measured traffic, with the constants the other targets cite
(edgekit/targets/devices/*.yaml). Every layer runs on the chip (no host encoder), so each row is the whole network.

A graded message's synaptic op multiplies an 8-bit weight by the message and accumulates: in 45 nm integer
arithmetic that is an INT8 MAC (mult plus an 8- to 32-bit add), the same count an INT8 ANN row uses. A SigmaDelta
neuron update is 3 to 6 32-bit adds (accumulate, bias, delta, threshold compare, residue). KerasSpiking's Loihi
constants are Loihi 1's, for binary spikes; the estimate says so.
"""

from __future__ import annotations

from edgekit.energy.estimate import PJ, device_profile, profile

NEURON_ADDS = (3, 6)


def estimates(synops: float, neuron_updates: float, device_name: str) -> list[dict]:
    wanted = device_profile(device_name)["energy"]
    rows = []
    for name in wanted.get("keras-spiking", []):
        ks = profile("keras-spiking")
        chip = ks["devices"][name]
        if not chip["spiking"]:
            continue
        uj = (synops * chip["synop_j"] + neuron_updates * chip["neuron_j"]) * 1e6
        rows.append({"profile": "keras-spiking", "device": name, "level": "compute", "low_uj": uj, "high_uj": uj,
                     "method": "estimated", "source": f"{ks['source']}; {chip['citation']}",
                     "assumptions": f"{synops / 1e6:.3f} M synaptic ops (measured graded messages x fan-out) x "
                                    f"{chip['synop_j'] * 1e12:g} pJ + {neuron_updates:.0f} neuron updates x "
                                    f"{chip['neuron_j'] * 1e12:g} pJ; Loihi 1 constants for binary spikes (a graded "
                                    "message costs more per op on Loihi 2, by an amount the table does not give); "
                                    "every layer on the chip, no overhead or memory"})
    if "horowitz-45nm" in wanted:
        hz = profile("horowitz-45nm")
        arith = hz["arithmetic_pj"]
        mac = (arith["int8"]["mult"] + arith["int8"]["add"], arith["int8"]["mult"] + arith["int32"]["add"])
        add = arith["int32"]["add"]
        low = synops * mac[0] + neuron_updates * NEURON_ADDS[0] * add
        high = synops * mac[1] + neuron_updates * NEURON_ADDS[1] * add
        rows.append({"profile": "horowitz-45nm", "device": "45 nm CMOS", "level": "compute", "arithmetic": "integer-graded",
                     "low_uj": low * PJ * 1e6, "high_uj": high * PJ * 1e6, "method": "estimated", "source": hz["source"],
                     "assumptions": f"{synops / 1e6:.3f} M synaptic ops x one INT8 MAC ({mac[0]:.2f}-{mac[1]:.2f} pJ: "
                                    f"8-bit weight times graded message, 8- to 32-bit add) + {neuron_updates / 1e6:.3f} M "
                                    f"neuron updates x {NEURON_ADDS[0]}-{NEURON_ADDS[1]} x {add} pJ (32-bit adds); like for "
                                    "like with INT8 rows; no memory traffic, no overhead"})
    return rows
