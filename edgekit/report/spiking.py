"""The Spiking section of the reports: error vs T (converted and naive), per-layer rates and synaptic ops, the Lava
check. Rows and facts are built once here; report.md and report.html lay them out. The energy estimated from these
counts is in the report's Energy section."""

from __future__ import annotations

from edgekit.report.rows import md_table
from edgekit.report.sections import Spiking

CURVE_HEAD = ["T", "error (deg)", "increase over ANN (deg)", "naive baseline error (deg)", "naive increase (deg)"]
COUNTS_HEAD = ["layer", "neuron", "neurons", "spike rate (per neuron per step)", "dense MACs", "effective MACs",
               "effective ACs", "neuron updates"]
LAVA_HEAD = ["layer", "spikes in Lava", "spikes that differ"]


def facts(sp: Spiking) -> list[tuple[str, str]]:
    out = [("timesteps", f"T = {sp.timesteps} steps, reset by {sp.reset}, latency {sp.latency_steps} steps"),
           ("ANN error", f"{sp.reference_error_deg:.3f} deg (the reference on the same images)")]
    if sp.curve_of:
        out.append(("curve of", sp.curve_of))
    st = sp.simulator_time
    if st.value is not None:
        out.append(("simulator time", f"{st.value:.4f} {st.unit} ({st.method}: {st.how})"))
    for value, label in ((sp.fixed_point, "fixed point (Lava mirror)"), (sp.float_snn, "float SNN (same T and reset)")):
        if value is not None:
            out.append((label, f"{value.error_deg:.3f} deg mean error on {value.samples} images"))
    tuned = sp.conversion.get("finetune_snn")
    if tuned:
        out.append(("fine-tuning", f"finetune_snn, {tuned['steps']} steps of {tuned['batch']} images in Lava's timing: "
                                   f"calibration error {tuned['calibration_error_before_deg']:.3f} -> "
                                   f"{tuned['calibration_error_after_deg']:.3f} deg on {tuned['check_images']} images"
                                   + ("" if tuned["applied"] else " (not lower: the converted weights were kept)")))
    if sp.lava is not None:
        out.append(("Lava simulator", sp.lava.summary))
    return out


def curve_rows(sp: Spiking) -> list[list[str]]:
    base = {r.timesteps: r for r in (sp.naive_baseline.error_vs_timesteps if sp.naive_baseline else [])}
    rows = []
    for r in sp.error_vs_timesteps:
        b = base.get(r.timesteps)
        naive = [f"{b.error_deg:.3f}", f"{b.increase_deg:+.3f}"] if b else ["", ""]
        rows.append([str(r.timesteps), f"{r.error_deg:.3f}", f"{r.increase_deg:+.3f}", *naive])
    return rows


def counts_caption(sp: Spiking) -> str:
    return f"Per inference over {sp.counts.steps} steps ({sp.counts.how})"


def counts_rows(sp: Spiking) -> list[list[str]]:
    c = sp.counts
    rows = []
    for r in c.layers + ([{"layer": "total", "neuron": "", "neurons": "", "rate": None, **c.total}] if c.total else []):
        rate = "" if r.get("rate") is None else f"{r['rate']:.4f}"
        rows.append([str(r.get("layer", "")), str(r.get("neuron", "")), str(r.get("neurons", "")), rate,
                     *(_count(r.get(k)) for k in ("dense_macs", "effective_macs", "effective_acs", "neuron_updates"))])
    return rows


def lava_rows(sp: Spiking) -> list[list[str]]:
    """Spikes per layer in Lava's simulator and how many differ from the fixed-point mirror (when Lava ran)."""
    lava = sp.lava
    if lava is None or not lava.spikes_per_layer:
        return []
    names = [r.get("layer", f"layer {i}") for i, r in enumerate(sp.counts.layers)]
    mismatched = lava.mismatched_spikes_per_layer or []
    return [[names[i] if i < len(names) else f"layer {i}", f"{n:,}", f"{mismatched[i]:,}" if i < len(mismatched) else ""]
            for i, n in enumerate(lava.spikes_per_layer)]


def _count(v) -> str:
    return "" if v is None else f"{v:,.0f}"


def spiking_markdown(sp: Spiking) -> list[str]:
    lines = ["", "## Spiking", ""] + [f"- {label}: {text}" for label, text in facts(sp)]
    lines += ["", "Error against timesteps (evaluation set):", ""] + md_table(CURVE_HEAD, curve_rows(sp))
    lines += ["", f"{counts_caption(sp)}:", ""] + md_table(COUNTS_HEAD, counts_rows(sp))
    if lava_rows(sp):
        lines += ["", "Lava's simulator against the fixed-point mirror, spike for spike:", ""] + md_table(LAVA_HEAD, lava_rows(sp))
    return lines
