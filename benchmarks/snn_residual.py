"""Residual blocks through to_snn: error vs T of a small trained residual gaze CNN (tests/snn/residual_gaze.py), the
default conversion against the naive one and against shortcuts left unscaled. Results: benchmarks/snn.md.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/snn_residual.py [training steps]
"""

import sys
import time

import numpy as np
import torch
from torch.nn import functional as F

from edgekit.data import synthetic
from edgekit.data.metrics import angular_error_deg
from edgekit.models.card import ModelCard
from edgekit.models.io import WEIGHTS_DIR
from edgekit.snn.convert import convert
from edgekit.snn.counts import spiking_counts
from edgekit.snn.simulate import simulate
from tests.snn.residual_gaze import trained

STEPS = (4, 8, 16, 32, 64)


def main(train_steps: int) -> None:
    torch.set_num_threads(1)
    card = ModelCard.load(WEIGHTS_DIR / "tinygaze.json")  # the residual net uses TinyGaze's input and preprocessing
    calib, ev = synthetic.standard_set("calib", 256, (40, 64)), synthetic.standard_set("eval", 512, (40, 64))
    xc, xe = (torch.from_numpy(card.preprocessing.apply(s.images, 1, (40, 64))) for s in (calib, ev))
    started = time.perf_counter()
    model = trained(train_steps)
    print(f"trained {train_steps} steps in {time.perf_counter() - started:.0f} s")
    with torch.no_grad():
        ann = float(angular_error_deg(model(xe).numpy(), ev.gaze).mean())
    print(f"ANN error {ann:.3f} deg on {len(xe)} images")
    variants = {
        "converted (p99.9 per channel, gain at T=32, v0 1/2)": {},
        "naive (per-layer max, no balancing, v0 0)": {"percentile": None, "per_channel": False, "v_init": 0.0, "balance": "none"},
        "shortcuts unscaled (weight 1)": "unscaled",
        "reset to zero (gain at T=32, v0 0)": {"reset": "zero", "v_init": 0.0},
    }
    print("| variant | " + " | ".join(f"T={t}" for t in STEPS) + " | s |")
    for name, kw in variants.items():
        started = time.perf_counter()
        net = convert(model, 1, xc, timesteps=32, **(kw if isinstance(kw, dict) else {}))
        if kw == "unscaled":
            for i, lay in enumerate(net.layers):
                if lay["kind"] == "scale":
                    net.weights[i] = torch.ones_like(net.weights[i])
        res = simulate(net, xe, max(STEPS), record=STEPS)
        errs = [float(angular_error_deg(F.normalize(torch.from_numpy(res.outputs[t]), dim=-1).numpy(), ev.gaze).mean()) - ann
                for t in STEPS]
        print(f"| {name} | " + " | ".join(f"{e:+.2f}" for e in errs) + f" | {time.perf_counter() - started:.0f} |")
        if not kw:
            counts = spiking_counts(net, res.spikes[32], res.acs[32], 32, len(xe))
            for row in counts["layers"]:
                rate = "" if row["rate"] is None else f"{row['rate']:.4f}"
                print(f"    {row['layer']:18s} {row['kind']:6s} {row['neuron']:10s} rate {rate:8s} ACs {row['effective_acs']:12,.0f}")
            t = counts["total"]
            print(f"    total: {t['effective_acs'] / 1e6:.2f} M ACs, {t['effective_macs'] / 1e6:.3f} M MACs, dense "
                  f"{t['dense_macs'] / 1e6:.2f} M MACs per step, {np.round(t['spikes']):,.0f} spikes at T=32")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1500)
