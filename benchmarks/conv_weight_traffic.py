"""Is GazeResNet18's last FP32 stage bound by its weights' memory traffic? (issue 21, item 3; docs/int8-and-pruning.md)

benchmarks/int8_profile*.md show onnxruntime's FP32 convs with 512 channels at 2 x 3 pixels taking 3-4x the time of
the same MACs at 64 channels and 16 x 24 pixels. Each such conv reads 9.4 MB of float32 weights to do 14 M MACs.
Here the same conv (3 x 3, padding 1, random weights) runs alone, so its weights stay in the last-level cache between
runs, and as six different convs in a chain (57 MB, more than this host's L3), so every run reads them from memory;
and the 64-channel conv of equal MACs for comparison. Same session options as the runner (1 thread), batch 1, the
three interleaved in 12 rounds of 30 runs each (after 5 warm-up runs, which bring a case's weights back into the
cache where they fit), the median round, in a child process per kernel set: on this host's kernels and, where tests/avx2_only.py can mask CPUID, on
the AVX2 kernels of a CPU without AVX-512. This VM has no hardware counters (perf: cache-misses not supported), so
the cache is told apart by the working set, not counted.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/conv_weight_traffic.py [--out benchmarks/conv_weight_traffic.md]
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

ROOT = Path(__file__).resolve().parents[1]
CASES = {"512 ch at 2 x 3, one conv (9.4 MB of weights: stays cached)": (512, 2, 3, 1),
         "512 ch at 2 x 3, six convs in a chain (57 MB: read from memory)": (512, 2, 3, 6),
         "64 ch at 16 x 24, one conv (the same MACs, 0.15 MB)": (64, 16, 24, 1)}
CHILD = textwrap.dedent('''
    import json, sys, time, numpy as np, onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    def session(channels, h, w, n):
        rng = np.random.default_rng(0)
        nodes, weights, x = [], [], "x"
        for i in range(n):
            weights.append(numpy_helper.from_array(rng.standard_normal((channels, channels, 3, 3)).astype(np.float32) * 0.01, f"w{i}"))
            nodes.append(helper.make_node("Conv", [x, f"w{i}"], [f"y{i}"], pads=[1, 1, 1, 1]))
            x = f"y{i}"
        shape = [1, channels, h, w]
        graph = helper.make_graph(nodes, "convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                                  [helper.make_tensor_value_info(x, TensorProto.FLOAT, shape)], weights)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]); model.ir_version = 8
        opts = ort.SessionOptions(); opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        return sess, {"x": rng.standard_normal(shape).astype(np.float32)}, n

    cases = [session(*shape) for shape in json.loads(sys.argv[1])]
    rounds = [[] for _ in cases]
    for r in range(12):  # interleaved: every case once per round, so the host's speed moves all alike
        for (sess, feed, n), times in zip(cases, rounds):
            for _ in range(5):
                sess.run(None, feed)  # its own weights back in cache where they fit, after the other cases ran
            start = time.perf_counter()
            for _ in range(30):
                sess.run(None, feed)
            times.append((time.perf_counter() - start) / 30 / n * 1e3)
    print(json.dumps([float(np.median(t)) for t in rounds]))
''')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "conv_weight_traffic.md"))
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from edgekit.backends.onnx.runner import runtime_version
    from edgekit.environment import host_info
    from tests import avx2_only

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        kernel_sets = {"this host's kernels": env}
        if avx2_only.unavailable() is None:
            kernel_sets["AVX2 kernels (CPUID masked)"] = {**avx2_only.environment(avx2_only.build(Path(tmp))),
                                                          "OMP_NUM_THREADS": "1"}
        ms = {}
        for kernels, kernel_env in kernel_sets.items():
            medians = json.loads(subprocess.run([sys.executable, "-c", CHILD, json.dumps(list(CASES.values()))],
                                                env=kernel_env, capture_output=True, text=True, check=True).stdout)
            ms.update({(case, kernels): m for case, m in zip(CASES, medians)})
    host = host_info()
    lines = ["# GazeResNet18's last FP32 stage: its weights' memory traffic", "",
             f"Machine: {host['cpu']}, {host['cores']} vCPUs ({', '.join(host['isa_flags'])}); onnxruntime "
             f"{runtime_version()}, 1 thread, batch 1. Produced by `benchmarks/conv_weight_traffic.py` (docstring: how).",
             "", "| conv (3 x 3, float32) | " + " | ".join(f"ms per conv, {k}" for k in kernel_sets) + " |",
             "|---|" + "---|" * len(kernel_sets)]
    lines += [f"| {case} | " + " | ".join(f"{ms[case, k]:.3f}" for k in kernel_sets) + " |" for case in CASES]
    Path(args.out).write_text("\n".join(lines) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps(
        {"host": host, "ms_per_conv": [{"case": c, "kernels": k, "ms": v} for (c, k), v in ms.items()]}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
