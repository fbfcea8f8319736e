"""The few lines `edgekit compile` prints: where things are, the error, the gates."""

from __future__ import annotations

from pathlib import Path

from edgekit.report.model import Report
from edgekit.report.whole_network import SHOWN_DEVICE, SHOWN_LEVEL, shown_label, shown_row


def energy_range(low_uj: float, high_uj: float) -> str:
    """'22.3' for a point estimate, '26.8-542' for a range (uJ, three significant digits)."""
    lo, hi = low_uj, high_uj
    return f"{lo:.3g}" if abs(hi - lo) <= 1e-9 * max(abs(hi), 1) else f"{lo:.3g}-{hi:.3g}"


def speed_against_fp32(speedup: float) -> str:
    """'3.06x faster', or '3.20x slower' for an INT8 artifact that ran slower than its FP32 counterpart (a small model
    whose quantize and dequantize steps outweigh its integer kernels, or a host whose INT8 kernels suit it badly),
    rather than '0.31x faster'."""
    return f"{speedup:.2f}x faster" if speedup >= 1 else f"{1 / speedup:.2f}x slower"


def network_energy(report: Report) -> dict:
    """The whole-network compute estimate as the comparison page shows it (same row, label and 'not a saving on this
    device' note, from edgekit.report.whole_network); {"why": ...} when the report has none."""
    row = shown_row(report)
    if row is None:
        return {"why": report.energy.why or f"no whole-network estimate at {SHOWN_DEVICE}, {SHOWN_LEVEL} level for "
                                            f"device profile {report.target.device}"}
    return {"low_uj": row["low_uj"], "high_uj": row["high_uj"], "profile": row["profile"], "device": row["device"],
            "level": row["level"], "label": shown_label(report, row), "note": row["on_this_device"]}


def summary(report: Report, out_dir: Path) -> str:
    lines = [f"{report.model.name} -> {report.target.name}: {'PASSED' if report.passed else 'FAILED'}   "
             f"[{report.pipeline}]"]
    acc = report.accuracy
    if acc:
        d = acc.diff_from_reference
        lines.append(f"  error    {acc.artifact.mean_deg:.3f} deg mean (reference {acc.reference.mean_deg:.3f}, "
                     f"predict-the-mean {acc.predict_mean_baseline.mean_deg:.2f}) on {acc.set.n_samples} samples of {acc.set.source}")
        lines.append(f"  diff     mean {d.mean_deg:.5f} / p95 {d.p95_deg:.5f} / max {d.max_deg:.5f} deg from the reference")
    lat = report.latency.get("p50")
    if lat and lat.value is not None:
        lines.append(f"  latency  p50 {lat.value:.3f} ms, p99 {report.latency['p99'].value:.3f} ms ({report.runtime.runtime})")
        from edgekit.report.timing import timing_line  # why: timing imports the runtimes' measuring code

        if (line := timing_line(report)) is not None:
            lines.append(line)
    size = report.size.get("artifact")
    if size:
        lines.append(f"  size     {size.value / 1e6:.2f} MB; {report.compute['macs'].value / 1e6:.2f} M MACs" if "macs" in report.compute
                     else f"  size     {size.value / 1e6:.2f} MB")
    est = {(e.profile, e.device, e.level): e for e in report.energy.estimates}
    h = network_energy(report)
    if "why" not in h:
        hm = est.get(("horowitz-45nm", "45 nm CMOS", "compute+memory"))  # spiking rows estimate compute only
        measured = report.energy.measured
        memory = f", with memory {energy_range(hm.low_uj, hm.high_uj)} uJ" if hm else ""
        caveat = f" ({h['note']})" if h["note"] else ""
        lines.append(f"  energy   estimated (Horowitz 45 nm): compute {energy_range(h['low_uj'], h['high_uj'])} uJ{memory}{caveat}; "
                     + (f"measured {measured.dynamic_uj_per_inference:.1f} uJ dynamic"
                        if measured and measured.dynamic_uj_per_inference else measured.how if measured else "not measured"))
    q, c = report.quantization, report.comparison
    if q:
        float_macs = sorted({f"{f.op} ({f.layer})" for f in report.runtime.float_ops or [] if f.macs})
        floats = [f.name for f in q.float_layers] + float_macs  # planned float layers, then what the artifact shows
        lines.append(f"  int8     {q.int8_mac_fraction:.1%} of the quantized layers' MACs; float: {', '.join(floats) or 'none'}"
                     + (f"; vs FP32 {c.size_ratio:.2f}x smaller, {speed_against_fp32(c.speedup_p50)} (p50, interleaved)" if c else ""))
    if report.runtime.delegated_mac_fraction is not None:  # executorch: what XNNPACK runs, what falls to portable kernels
        portable = ", ".join(f"{op} x{n}" for op, n in (report.runtime.portable_ops or {}).items()) or "nothing"
        lines.append(f"  delegate XNNPACK runs {report.runtime.delegated_mac_fraction:.1%} of MACs; portable kernels: {portable}")
    sd = report.sigma_delta
    if sd is not None:  # loihi-sdnn: what a frame costs, alone and inside a video
        seq = (f"; {sd.sequence.synops / 1e6:.2f} M per 60 Hz sequence frame ({sd.sequence.synops_per_ann_mac:.2f} per MAC)"
               if sd.sequence else "")
        lines.append(f"  sdnn     {sd.single_frame.synops / 1e6:.2f} M synaptic ops per single frame "
                     f"({sd.single_frame.synops_per_ann_mac:.2f} per ANN MAC){seq}; {sd.increase_over_ann_deg:+.3f} deg over "
                     f"the ANN it was converted from; Lava: {'match' if sd.lava.match else 'not run' if not sd.lava.ran else 'MISMATCH'}")
    for g in report.gates:
        bound = ">=" if g.name.startswith("min_") else "<="
        lines.append(f"  gate     {g.name} {bound if g.passed else 'MISSED'} {g.limit:g}: "
                     f"{'n/a' if g.value is None else f'{g.value:.5f}'} {'ok' if g.passed else 'FAILED'}")
    if report.parity and report.parity.first_divergent_layer:
        lines.append(f"  parity   first diverging layer: {report.parity.first_divergent_layer} "
                     f"(relative error {report.parity.relative_error:.2e})")
    lines.append(f"  artifact {out_dir / report.artifact.path}  (I/O contract {out_dir / 'io.json'})")
    lines.append(f"  report   {out_dir / 'report.json'} | report.md | report.html")
    return "\n".join(lines)
