"""What 8-bit and 7-bit INT8 weights compute on the kernels of a CPU without VNNI (issue 21; docs/int8-and-pruning.md).

onnxruntime's u8s8 kernels on AVX2 without VNNI add two u8 x s8 products into 16 bits (VPMADDUBSW), which saturates
when both are large: 2 x 255 x 127 > 32,767. edgekit's portable profile uses 7-bit weights for that reason. Here the
artifacts are compiled on this host (with or without VNNI) as a user would, then run by onnxruntime twice in child
processes: on this host's kernels, and with CPUID masked (tests/avx2_only.c) so that it picks the kernels an AVX2
CPU gets. Each output is compared with the FP32 artifact's on this host's kernels: the angular difference over
unseen samples (seed 424242, as benchmarks/int8_peers.py), mean / p95 / max.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/no_vnni_saturation.py [--models tinygaze,gazeresnet18] [--unseen 2000]
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

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUN = textwrap.dedent('''
    import sys, numpy as np, onnxruntime as ort
    opts = ort.SessionOptions(); opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(sys.argv[1], opts, providers=["CPUExecutionProvider"])
    x = dict(np.load(sys.argv[2])); n = len(next(iter(x.values())))
    np.save(sys.argv[3], np.concatenate([sess.run(None, {k: v[i:i + 1] for k, v in x.items()})[0] for i in range(n)]))
''')


def variants(model: str, work: Path) -> dict[str, Path]:
    import edgekit.compiler as ek
    from int8_peers import recipe_with

    vnni = recipe_with("onnx-int8", "ptq", {"isa_profile": "x86-vnni"}, work)
    return {"FP32": ek.compile(model, target="onnx", out=work / "fp32").artifact,
            "7-bit weights (portable, the default)": ek.compile(model, target="onnx-int8", out=work / "7bit").artifact,
            "8-bit weights (isa_profile: x86-vnni)": ek.compile(model, target=str(vnni), out=work / "8bit").artifact}


def outputs(artifact: Path, inputs: Path, out: Path, env: dict | None) -> np.ndarray:
    subprocess.run([sys.executable, "-c", RUN, str(artifact), str(inputs), str(out)], env=env, check=True)
    return np.load(out)


def bench(model: str, n_unseen: int, library: Path, work: Path) -> list[dict]:
    from edgekit.data.metrics import angular_error_deg
    from edgekit.evalset import default_eval_set, model_inputs
    from edgekit.source import load_source
    from int8_peers import UNSEEN_SEED
    from tests import avx2_only

    card = load_source(model, work / "load").card
    np.savez(work / "x.npz", **model_inputs(card, default_eval_set(card, n_unseen, seed=UNSEEN_SEED)).arrays)
    arts = variants(model, work)
    ref = outputs(arts["FP32"], work / "x.npz", work / "ref.npy", None)
    rows = []
    for name, artifact in arts.items():
        for kernels, env in (("this host's", None), ("AVX2 (CPUID masked)", avx2_only.environment(library))):
            diff = angular_error_deg(outputs(artifact, work / "x.npz", work / "y.npy", env), ref)
            rows.append({"model": model, "variant": name, "kernels": kernels, "mean": float(diff.mean()),
                         "p95": float(np.percentile(diff, 95)), "max": float(diff.max())})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="tinygaze,gazeresnet18")
    ap.add_argument("--unseen", type=int, default=2000)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "no_vnni_saturation.md"))
    args = ap.parse_args()
    sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
    from edgekit import progress
    from edgekit.backends.onnx.runner import runtime_version
    from edgekit.environment import host_info
    from int8_peers import UNSEEN_SEED
    from tests import avx2_only

    reason = avx2_only.unavailable()
    if reason:
        sys.exit(f"no_vnni_saturation: cannot mask CPUID here: {reason}; fix: run on a host with cpuid_fault and cc")
    progress.configure(progress.QUIET)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        library = avx2_only.build(Path(tmp))
        for model in args.models.split(","):
            (Path(tmp) / model).mkdir()
            rows += bench(model, args.unseen, library, Path(tmp) / model)
    host = host_info()
    lines = ["# INT8 weights on the kernels of a CPU without VNNI", "",
             f"Machine: {host['cpu']}, {host['cores']} vCPUs ({', '.join(host['isa_flags'])}); onnxruntime "
             f"{runtime_version()}. Produced by `benchmarks/no_vnni_saturation.py` (docstring: how). Angular difference "
             f"from the FP32 artifact on this host's kernels, {args.unseen} unseen samples (seed {UNSEEN_SEED}), deg.", "",
             "| model | artifact | kernels | mean | p95 | max |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['variant']} | {r['kernels']} | {r['mean']:.3f} | {r['p95']:.3f} | {r['max']:.3f} |"
              for r in rows]
    Path(args.out).write_text("\n".join(lines) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps({"host": host, "rows": rows}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
