"""The Spiking section of report.md: error vs T (converted and naive), per-layer rates and synaptic ops, Lava check.
The energy estimated from these counts is in the report's Energy section."""

from __future__ import annotations


def _curve_table(sp: dict) -> list[str]:
    base = {r["timesteps"]: r for r in (sp.get("naive_baseline") or {}).get("error_vs_timesteps", [])}
    lines = ["| T | error (deg) | increase over ANN (deg) | naive baseline error | naive increase |", "|---|---|---|---|---|"]
    for r in sp["error_vs_timesteps"]:
        b = base.get(r["timesteps"])
        naive = f"{b['error_deg']:.3f} | {b['increase_deg']:+.3f}" if b else " | "
        lines.append(f"| {r['timesteps']} | {r['error_deg']:.3f} | {r['increase_deg']:+.3f} | {naive} |")
    return lines


def spiking_markdown(sp: dict) -> list[str]:
    lines = ["", "## Spiking", "",
             f"- T = {sp['timesteps']} steps, reset by {sp['reset']}, latency {sp['latency_steps']} steps; ANN error "
             f"{sp['reference_error_deg']:.3f} deg (the reference on the same images)"]
    if sp.get("simulator_time"):
        st = sp["simulator_time"]
        lines.append(f"- simulator time: {st['value']:.4f} {st['unit']} ({st['method']}: {st['how']})")
    for key, label in (("fixed_point", "fixed point (Lava mirror)"), ("float_snn", "float SNN (same T and reset)")):
        if sp.get(key):
            lines.append(f"- {label}: {sp[key]['error_deg']:.3f} deg mean error on {sp[key]['samples']} images")
    if sp.get("lava"):
        lines.append(f"- Lava simulator: {sp['lava']['summary']}")
    lines += ["", "Error against timesteps (evaluation set):", ""] + _curve_table(sp)
    c = sp["counts"]
    lines += ["", f"Per inference over {c['steps']} steps ({c['how']}):", "",
              "| layer | neuron | neurons | spike rate (per neuron per step) | dense MACs | effective MACs | effective ACs | neuron updates |",
              "|---|---|---|---|---|---|---|---|"]
    for r in c["layers"] + [{"layer": "total", "neuron": "", "neurons": "", "rate": None, **c["total"]}]:
        rate = "" if r["rate"] is None else f"{r['rate']:.4f}"
        lines.append(f"| {r['layer']} | {r['neuron']} | {r['neurons']} | {rate} | "
                     f"{r['dense_macs']:,} | {r['effective_macs']:,} | {r['effective_acs']:,.0f} | {r['neuron_updates']:,} |")
    return lines
