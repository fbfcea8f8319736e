"""The loihi (CUBA) artifacts on 2,000 evaluation images: the fixed-point mirror's error against the ANN's, with and
without finetune_snn (issue 20, item 3: at most +0.5 deg at T=32 on TinyGaze).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/loihi_finetune.py BUILD/loihi/model.lava BUILD/loihi-finetuned/model.lava
        [--model tinygaze] [--images 2000] [--out benchmarks/loihi_finetune-tinygaze.json]

Build the artifacts with `edgekit compile tinygaze -t loihi` and `-t loihi-finetuned`. The images are the evaluation
seed's (no calibration or training image); the ANN is the shipped model, run on the same preprocessed images.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from edgekit.backends.lava.runner import FixedPointRunner
from edgekit.data.gaze import readout_vectors
from edgekit.data.metrics import angular_error_deg
from edgekit.data.synthetic import standard_set
from edgekit.evalset import model_inputs
from edgekit.models.io import load_shipped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifacts", type=Path, nargs="+", help="model.lava folders")
    ap.add_argument("--model", default="tinygaze")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ann, card = load_shipped(args.model)
    ev = standard_set("eval", args.images, tuple(card.image_input.shape[-2:]))
    inputs = model_inputs(card, ev)
    x, truth = next(iter(inputs.arrays.values())), inputs.truth
    with torch.no_grad():
        ann_out = torch.cat([ann(torch.from_numpy(x[i:i + args.batch])) for i in range(0, len(x), args.batch)]).numpy()
    ann_err = float(angular_error_deg(ann_out.astype(np.float64), truth).mean())
    rows = []
    for path in args.artifacts:
        runner = FixedPointRunner(path)
        out = np.concatenate([runner.run({"x": x[i:i + args.batch]}) for i in range(0, len(x), args.batch)])
        err = float(angular_error_deg(readout_vectors(out, runner.spec.get("output_convention", "unit_vector")), truth).mean())
        snn = json.loads((path / "snn" / "snn.json").read_text())
        rows.append({"artifact": str(path), "finetune_snn": snn["meta"].get("finetune_snn"), "timesteps": runner.spec["timesteps"],
                     "error_deg": err, "increase_deg": err - ann_err})
        print(f"{path}: {err:.3f} deg, {err - ann_err:+.3f} over the ANN ({ann_err:.3f})", flush=True)
    doc = {"model": args.model, "images": len(x), "seed": "eval", "ann_error_deg": ann_err, "runs": rows}
    if args.out:
        args.out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
