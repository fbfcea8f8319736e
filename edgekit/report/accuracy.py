"""Accuracy report of a shipped demo model: what `edgekit demo evaluate` (and `make demo`) prints."""

from __future__ import annotations

from pathlib import Path

from edgekit.data import synthetic
from edgekit.data.npz import read_gazeset
from edgekit.models.evaluate import evaluate_images, evaluate_temporal, reports_to_dict
from edgekit.models.io import load_shipped, sha256_file, WEIGHTS_DIR


def evaluate_shipped(name: str, n: int = 2000, eval_set: Path | None = None) -> dict:
    """Evaluate the shipped weights on the synthetic evaluation set (its own seed) or a given .npz."""
    model, card = load_shipped(name)
    temporal = card.output.name == "gaze_future"
    if eval_set is not None:
        gs = read_gazeset(eval_set)
    elif temporal:
        gs = synthetic.synthetic_sequences(max(1, n // 100), 120, synthetic.SEEDS["eval"], card.image_size, role="eval")
    else:
        gs = synthetic.standard_set("eval", n, card.image_size, progress=True)
    results = evaluate_temporal(model, card, gs) if temporal else {"accuracy": evaluate_images(model, card, gs)}
    return {
        "model": name, "description": card.description,
        "weights": {"file": card.weights["file"], "sha256": sha256_file(WEIGHTS_DIR / card.weights["file"]),
                    "dtype": card.weights["dtype"]},
        "input": card.image_input.model_dump(), "preprocessing": card.preprocessing.model_dump(),
        "eval_set": {"source": gs.meta["source"], "n": len(gs), "digest": gs.digest()},
        "method": "measured: PyTorch on this machine's CPU, float64 angular error",
        "card_validation": card.validation, **reports_to_dict(results),
    }


def _summary_rows(title: str, acc: dict) -> list[str]:
    rows = [f"{title}", f"  {'':<24}{'mean':>8}{'median':>8}{'p95':>8}{'max':>8}   pitch bias/MAE   yaw bias/MAE"]
    for label, key in (("model", "model"), ("predict-the-mean", "predict_mean_baseline")):
        s = acc[key]
        rows.append(f"  {label:<24}{s['mean_deg']:>8.2f}{s['median_deg']:>8.2f}{s['p95_deg']:>8.2f}{s['max_deg']:>8.2f}"
                    f"   {s['pitch']['bias_deg']:+.2f}/{s['pitch']['mae_deg']:.2f}      {s['yaw']['bias_deg']:+.2f}/{s['yaw']['mae_deg']:.2f}")
    return rows


def render_human(report: dict) -> str:
    lines = [f"edgekit accuracy report: {report['model']} ({report['description']})",
             f"weights  {report['weights']['file']} sha256 {report['weights']['sha256'][:16]} ({report['weights']['dtype']})",
             f"input    {report['input']['name']} {report['input']['shape']} float32, x = img * "
             f"{report['preprocessing']['scale']:.6f} + {report['preprocessing']['offset']}",
             f"eval set {report['eval_set']['source']}, {report['eval_set']['n']} images, digest {report['eval_set']['digest'][:16]}",
             f"method   {report['method']}", ""]
    if "accuracy" in report:
        lines += _summary_rows("angular error (degrees)", report["accuracy"])
    else:
        fc = report["forecast"]
        lines += _summary_rows("per-frame angular error (degrees)", report["per_frame"])
        lines += ["", f"forecast error (degrees), {fc['n_windows']} windows    " + "".join(f"{f't+{h + 1}':>7}" for h in range(len(fc['model_deg']))) + "   mean"]
        for label, key in (("model", "model_deg"), ("hold-last (on per-frame estimates)", "hold_last_deg"),
                           ("constant-velocity (on estimates)", "constant_velocity_deg")):
            vals = fc[key]
            lines.append(f"  {label:<38}" + "".join(f"{v:>7.2f}" for v in vals) + f"{sum(vals) / len(vals):>7.2f}")
        lines.append(f"  per-frame jitter (excess RMS-S2S) {report['per_frame_jitter_deg']:.2f} deg")
    return "\n".join(lines)
