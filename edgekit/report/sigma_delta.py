"""The Sigma-delta section of the reports (loihi-sdnn): accuracy against the ANN it was converted from, traffic per
frame on single frames and on 60 Hz sequences against the ANN's MACs, the energy of each, and the Lava check. Rows and
facts are built once here; report.md and report.html lay them out."""

from __future__ import annotations

from edgekit.report.rows import md_table
from edgekit.report.sections import MessageCounts, SigmaDelta

TRAFFIC_HEAD = ["frames", "messages per frame", "synaptic ops per frame", "per ANN MAC", "neuron updates",
                "error (deg)", "ANN error (deg)", "energy, 45 nm integer (uJ)", "energy, KerasSpiking Loihi (uJ)"]
LAYERS_HEAD = ["layer", "neuron", "neurons", "threshold", "messages per frame (single)", "per neuron",
               "messages per frame (sequence)", "synaptic ops out (single)", "synaptic ops out (sequence)"]
LAVA_HEAD = ["layer", "messages in Lava", "values that differ"]


def facts(sd: SigmaDelta) -> list[tuple[str, str]]:
    conv = sd.conversion.get("conversion", {})
    out = [("steps per frame", f"{sd.steps_per_frame} ({sd.delay_steps} synaptic layers, one step each, then settled)"),
           ("accuracy", f"{sd.fixed_point.error_deg:.3f} deg in fixed point on {sd.fixed_point.samples} images (single "
                        f"frames from rest); the float ANN it was converted from {sd.ann_error_deg:.3f} deg: "
                        f"{sd.increase_over_ann_deg:+.3f} deg; the reference {sd.reference_error_deg:.3f} deg"),
           ("thresholds", f"fractions {', '.join(f'{f:g}' for f in sd.conversion.get('fractions', [])[:-1])} of each "
                          f"layer's p{conv.get('percentile', 99.9):g} activation, chosen on {conv.get('search_images')} "
                          f"calibration images within {conv.get('budget_deg')} deg"),
           ("ANN MACs", f"{sd.ann_macs / 1e6:.2f} M per frame")]
    if sd.sequence_set:
        s = sd.sequence_set
        out.append(("sequences", f"{s['sequences']} rendered sequences of {s['frames']} frames at {s['fps']:g} Hz "
                                 f"({s['renderer']}); the same frames each from rest: {s['from_rest_error_deg']:.3f} deg, "
                                 f"{s['from_rest_synops'] / 1e6:.2f} M synaptic ops per frame"))
    st = sd.simulator_time
    if st.value is not None:
        out.append(("simulator time", f"{st.value:.4f} {st.unit} ({st.method}: {st.how})"))
    out.append(("Lava simulator", sd.lava.summary))
    return out


def _energy(c: MessageCounts, profile: str) -> str:
    row = next((r for r in c.energy if r["profile"] == profile), None)
    if row is None:
        return ""
    return f"{row['low_uj']:.3f}" if row["low_uj"] == row["high_uj"] else f"{row['low_uj']:.3f}-{row['high_uj']:.3f}"


def traffic_rows(sd: SigmaDelta) -> list[list[str]]:
    rows = []
    for label, c in (("single frames from rest", sd.single_frame), ("60 Hz sequences, after the first frame", sd.sequence)):
        if c is None:
            continue
        rows.append([f"{label} ({c.frames})", f"{c.messages:,.0f}", f"{c.synops:,.0f}", f"{c.synops_per_ann_mac:.3f}",
                     f"{c.neuron_updates:,.0f}", _deg(c.error_deg if c.error_deg is not None else sd.fixed_point.error_deg),
                     _deg(c.ann_error_deg if c.ann_error_deg is not None else sd.ann_error_deg),
                     _energy(c, "horowitz-45nm"), _energy(c, "keras-spiking")])
    return rows


def layer_rows(sd: SigmaDelta) -> list[list[str]]:
    seq = sd.sequence.layers if sd.sequence else [{}] * len(sd.single_frame.layers)
    rows = []
    for r, q in zip(sd.single_frame.layers, seq):
        rows.append([r["layer"], r["neuron"], f"{r['neurons']:,}", f"{r['threshold']:.4g} (vth {r['vth_mantissa']})",
                     _count(r["messages"]), "" if r["messages_per_neuron"] is None else f"{r['messages_per_neuron']:.2f}",
                     _count(q.get("messages")), _count(r["synops_out"]), _count(q.get("synops_out"))])
    return rows


def lava_rows(sd: SigmaDelta) -> list[list[str]]:
    lava = sd.lava
    if not lava.ran or lava.messages_per_layer is None:
        return []
    names = [r["layer"] for r in sd.single_frame.layers]
    sent = lava.messages_per_layer + [None]  # the readout's sigma goes to the host every step: not counted as messages
    return [[names[i], "(readout)" if sent[i] is None else f"{sent[i]:,}", f"{d:,}"]
            for i, d in enumerate(lava.mismatched_messages_per_layer or [])]


def _deg(v) -> str:
    return "" if v is None else f"{v:.3f}"


def _count(v) -> str:
    return "" if v is None else f"{v:,.0f}"


def sigma_delta_markdown(sd: SigmaDelta) -> list[str]:
    lines = ["", "## Sigma-delta", ""] + [f"- {label}: {text}" for label, text in facts(sd)]
    lines += ["", "Traffic and energy per frame (energy: cited constants, compute only; Energy section):", ""]
    lines += md_table(TRAFFIC_HEAD, traffic_rows(sd))
    lines += ["", "Per layer:", ""] + md_table(LAYERS_HEAD, layer_rows(sd))
    if lava_rows(sd):
        lines += ["", "Lava's simulator against the fixed-point mirror, message for message:", ""]
        lines += md_table(LAVA_HEAD, lava_rows(sd))
    return lines
