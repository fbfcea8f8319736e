"""Lava's simulator on every evaluation image of a loihi-sdnn artifact, message for message against edgekit's
fixed-point mirror (CI checks 16 images; issue 20 asks for all of them in a benchmark).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sdnn_lava.py BUILD/model.sdnn [--model tinygaze] [--images 2000]
        [--chunk 125] [--out benchmarks/sdnn_lava-tinygaze.json]

The images run in chunks, each chunk one stream of frames from rest (every frame held for the network's steps per
frame), so that a chunk's recorded messages fit in memory. Per chunk: Lava's messages and the mirror's, compared
value for value; both readouts' errors. About 56 ms per simulated step here (TinyGaze): 2,000 frames x 8 steps take
15 minutes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from edgekit.backends.sdnn.runner import SdnnRunner, lava_check
from edgekit.data.synthetic import standard_set
from edgekit.evalset import model_inputs
from edgekit.models.card import ModelCard
from edgekit.models.io import shipped_card_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifact", type=Path, help="a model.sdnn folder (edgekit compile -t loihi-sdnn)")
    ap.add_argument("--model", default="tinygaze", help="the built-in whose card preprocesses the images")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--chunk", type=int, default=125)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    runner = SdnnRunner(args.artifact)
    card = ModelCard.load(shipped_card_path(args.model))
    shape = runner.net.layers[0].shape
    ev = standard_set("eval", args.images, tuple(shape[-2:]))
    x = next(iter(model_inputs(card, ev).arrays.values()))
    chunks, started = [], time.perf_counter()
    for start in range(0, len(x), args.chunk):
        res = lava_check(runner, x[start:start + args.chunk], ev.gaze[start:start + args.chunk], timeout=3600)
        if not res["ran"]:
            raise SystemExit(res["summary"])
        chunks.append(res)
        print(f"images {start}-{start + res['samples'] - 1}: {res['summary']}", flush=True)
    n = sum(c["samples"] for c in chunks)
    mean = lambda key: sum(c[key] * c["samples"] for c in chunks) / n  # noqa: E731
    summary = {"artifact": str(args.artifact), "images": n, "chunks": len(chunks), "chunk_frames": args.chunk,
               "steps": sum(c["steps"] for c in chunks), "messages": sum(sum(c["messages_per_layer"]) for c in chunks),
               "mismatched_values": sum(sum(c["mismatched_messages_per_layer"]) for c in chunks),
               "match": all(c["match"] for c in chunks), "lava_error_deg": mean("lava_error_deg"),
               "mirror_error_deg": mean("fixed_point_error_deg"),
               "lava_ms_per_step": float(np.mean([c["ms_per_step"] for c in chunks])),
               "wall_seconds": time.perf_counter() - started}
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "chunks": chunks}, indent=2) + "\n")


if __name__ == "__main__":
    main()
