"""How much faster can INT8 be than FP32 on a CPU without VNNI? The runtimes' own conv kernels, layer by layer, each
alone with its operands in cache (issue 21, item 3: 2.5x in onnxruntime, 2x in LiteRT, FP32 within 1.5x of the FMA
limit).

A model's INT8 run cannot be faster than its conv layers run one at a time, each repeated with its weights and
inputs already in cache and nothing else between; so the FP32 model's measured time over the sum of those layer
times, each layer in the faster of its FP32 and INT8 kernels, bounds the speed-up any INT8 (or mixed) artifact of
this model can reach in that runtime on this core, whatever is quantized and however.

- onnxruntime: each Conv of the FP32 artifact as a one-node model, FP32 (Conv) and INT8 (QLinearConv: uint8
  activations, int8 per-channel weights, int32 bias: what edgekit's onnx-int8 runs), run in the runtime; minus the
  time of a one-node Identity model (the per-run cost a node of a whole model does not pay).
- LiteRT: XNNPACK's own microkernels, called directly (benchmarks/int8_ceiling.c) from LiteRT's library, found by the
  symbol that perf names in the model's runs on AVX2 (int8_profile_epyc_avx2.md): f32 igemm 5x16 fma3_broadcast_prfm
  and qs8-qc8w igemm 3x8c8 avx2, over each layer's output rows, tile by tile: no packing, no indirection setup, one
  input row for every kernel tap (so it stays in L1).
- The FP32 FMA limit of this core, measured (int8_ceiling.c's fma_peak: 10 independent FMAs per step from L1), in
  place of int8_profile.py's nominal-clock estimate.
- Whole models, interleaved in blocks (edgekit.report.measure): FP32 and INT8 artifacts of both runtimes, and the
  LiteRT ones again without the XNNPACK delegate (LiteRT's builtin kernels).

--avx2-only reruns under tests/avx2_only.c's CPUID mask, so onnxruntime picks its AVX2 kernels (the XNNPACK
kernels are named, so they are AVX2 either way). Needs `cc` and `nm` (binutils).

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/int8_ceiling.py [--model gazeresnet18] [--avx2-only]
         [--rounds 5] [--out benchmarks/int8_ceiling.md]
Writes the Markdown (--out) and a JSON of every number next to it.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from int8_profile import compile_all  # noqa: E402

LITERT_LIBRARY = "libpywrap_litert_common.so"
# the kernels XNNPACK runs GazeResNet18's convs with on AVX2 (perf, int8_profile_epyc_avx2.md): symbol, rows per
# tile (MR), columns per tile (NR), bytes per element, k rounded up to
KERNELS = {"FP32": ("xnn_f32_igemm_minmax_ukernel_5x16__fma3_broadcast_prfm", 5, 16, 4, 1),
           "INT8": ("xnn_qs8_qc8w_igemm_minmax_fp32_ukernel_3x8c8__avx2", 3, 8, 1, 8)}


def _tool(command: list[str]) -> str:
    """Run cc or nm without the CPUID mask (they crash under its signal handler)."""
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    return subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout


def build_helpers(work: Path) -> ctypes.CDLL:
    library = work / "int8_ceiling.so"
    _tool(["cc", "-O2", "-mavx2", "-mfma", "-shared", "-fPIC", "-o", str(library), str(ROOT / "benchmarks" / "int8_ceiling.c")])
    lib = ctypes.CDLL(str(library))
    lib.fma_peak.restype, lib.fma_peak.argtypes = ctypes.c_double, [ctypes.c_long]
    lib.time_igemm.restype = ctypes.c_double
    lib.time_igemm.argtypes = ([ctypes.c_void_p] + [ctypes.c_size_t] * 5 + [ctypes.c_void_p] * 3
                               + [ctypes.c_size_t] * 2 + [ctypes.c_void_p] * 2 + [ctypes.c_long])
    return lib


def conv_layers(fp32_onnx: Path) -> list[dict]:
    """Every Conv of the FP32 artifact: channels, kernel, strides, pads, input and output sizes, MACs."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(fp32_onnx)))
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*model.graph.input, *model.graph.value_info, *model.graph.output]}
    weights = {i.name: list(i.dims) for i in model.graph.initializer}
    layers = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        attrs = {a.name: list(a.ints) if a.ints else a.i for a in node.attribute}
        cout, cin_per_group, kh, kw = weights[node.input[1]]
        _, cin, h, w = dims[node.input[0]]
        _, _, oh, ow = dims[node.output[0]]
        layers.append({"name": node.name, "cin": cin, "cout": cout, "kernel": [kh, kw], "group": attrs.get("group", 1),
                       "strides": attrs.get("strides", [1, 1]), "pads": attrs.get("pads", [0, 0, 0, 0]),
                       "dilations": attrs.get("dilations", [1, 1]), "input": [h, w], "output": [oh, ow],
                       "bias": len(node.input) > 2, "macs": oh * ow * cout * cin_per_group * kh * kw})
    return layers


def one_conv_models(layer: dict, folder: Path) -> dict[str, Path]:
    """The layer alone as ONNX models, in the layouts and ops onnxruntime runs inside the whole model (so no layout
    change is timed that the model does not pay): FP32 as its NCHWc Conv (com.microsoft.nchwc, what its graph
    optimiser turns every FP32 Conv into), INT8 as its channels-last QLinearConv (com.microsoft, from the QDQ
    model's Conv): uint8 activations, int8 per-channel weights, int32 bias. Random weights: speed does not depend
    on them."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    cin, cout, (kh, kw), group = layer["cin"], layer["cout"], layer["kernel"], layer["group"]
    attrs = {k: layer[k] for k in ("strides", "pads", "dilations", "group")}
    (h, w), (oh, ow) = layer["input"], layer["output"]
    w_shape = (cout, cin // group, kh, kw)
    stem = layer["name"].strip("/").replace("/", "_")

    def save(name: str, node, elem: int, shapes, inits, domain: str) -> Path:
        graph = helper.make_graph([node], name, [helper.make_tensor_value_info("x", elem, shapes[0])],
                                  [helper.make_tensor_value_info("y", elem, shapes[1])], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)])
        model.ir_version = 8
        path = folder / f"{name}.onnx"
        onnx.save(model, str(path))
        return path

    fp32 = save(f"{stem}_fp32", helper.make_node("Conv", ["x", "w", "b"], ["y"], domain="com.microsoft.nchwc",
                                                  kernel_shape=[kh, kw], **attrs),
                TensorProto.FLOAT, ([1, cin, h, w], [1, cout, oh, ow]),
                [numpy_helper.from_array(rng.standard_normal(w_shape).astype(np.float32), "w"),
                 numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32), "b")], "com.microsoft.nchwc")
    int8_inits = [numpy_helper.from_array(rng.integers(-63, 64, w_shape).astype(np.int8), "w"),
                  numpy_helper.from_array(np.float32(0.02), "x_scale"), numpy_helper.from_array(np.uint8(0), "x_zero"),
                  numpy_helper.from_array(np.full(cout, 0.01, np.float32), "w_scale"),
                  numpy_helper.from_array(np.zeros(cout, np.int8), "w_zero"),
                  numpy_helper.from_array(np.float32(0.05), "y_scale"), numpy_helper.from_array(np.uint8(0), "y_zero"),
                  numpy_helper.from_array(rng.integers(-1000, 1000, cout).astype(np.int32), "b")]
    int8 = save(f"{stem}_int8", helper.make_node("QLinearConv", ["x", "x_scale", "x_zero", "w", "w_scale", "w_zero",
                                                                 "y_scale", "y_zero", "b"], ["y"], domain="com.microsoft",
                                                 channels_last=1, kernel_shape=[kh, kw], **attrs),
                TensorProto.UINT8, ([1, h, w, cin], [1, oh, ow, cout]), int8_inits, "com.microsoft")
    return {"FP32": fp32, "INT8": int8}


def identity_model(folder: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(folder / "identity.onnx"))
    return folder / "identity.onnx"


def ort_layer_times(layers: list[dict], folder: Path, runs: int) -> tuple[dict, float]:
    """Per layer and precision: the p50 ms of the one-node model, less the Identity model's; and that overhead."""
    from edgekit.backends.onnx.runner import OnnxRunner
    from edgekit.report.measure import interleaved_latency

    runners, feeds = {}, {}
    for i, layer in enumerate(layers):
        for precision, path in one_conv_models(layer, folder).items():
            rng = np.random.default_rng(1)
            x = (rng.random((1, layer["cin"], *layer["input"]), np.float32) if precision == "FP32"
                 else rng.integers(0, 256, (1, *layer["input"], layer["cin"])).astype(np.uint8))
            runners[(i, precision)], feeds[(i, precision)] = OnnxRunner(path), {"x": x}
    runners["identity"], feeds["identity"] = OnnxRunner(identity_model(folder)), {"x": np.zeros((1, 1), np.float32)}
    calls = {f"{key}": (lambda _sample, r=r, f=feeds[key]: r.run(f)) for key, r in runners.items()}
    p50 = {k: v["p50"].value for k, v in interleaved_latency(calls, {}, runs, max(runs // 10, 5), "1 thread").items()}
    overhead = p50["identity"]
    return {key: max(p50[f"{key}"] - overhead, 0.0) for key in runners if key != "identity"}, overhead


def litert_kernels() -> dict[str, int]:
    """The address of each XNNPACK kernel in this process (LiteRT's library loaded, its symbol table read)."""
    import ai_edge_litert.interpreter  # noqa: F401  (loads LiteRT's library into this process)

    maps = [line.split() for line in Path("/proc/self/maps").read_text().splitlines() if LITERT_LIBRARY in line]
    base, path = int(maps[0][0].split("-")[0], 16), maps[0][-1]  # the first mapping is at file offset 0
    symbols = {}
    for line in _tool(["nm", path]).splitlines():
        parts = line.split()
        if len(parts) == 3:
            symbols[parts[2]] = int(parts[0], 16)
    return {precision: base + symbols[symbol] for precision, (symbol, *_rest) in KERNELS.items()}


def _aligned(nbytes: int) -> np.ndarray:
    buffer = np.zeros(nbytes + 64, np.uint8)
    start = (-buffer.ctypes.data) % 64
    return buffer[start:start + nbytes]


def xnnpack_layer_ms(lib: ctypes.CDLL, address: int, precision: str, layer: dict, trials: int = 7) -> float:
    """The fastest of `trials` passes of the kernel over the layer's output rows (each pass repeated to ~20 ms)."""
    _symbol, mr, nr, elem, k_multiple = KERNELS[precision]
    taps = layer["kernel"][0] * layer["kernel"][1]
    kc = -(-layer["cin"] // k_multiple) * k_multiple
    rows, nc = layer["output"][0] * layer["output"][1], layer["cout"]
    blocks = -(-nc // nr)
    # packed weights per block of NR columns: bias, the taps' weights, and (INT8) a scale per column
    weights = _aligned(blocks * nr * (4 + taps * kc * elem + (4 if precision == "INT8" else 0)) + 65536)
    row, zero, params = _aligned(kc * elem + 256), _aligned(kc * elem + 256), _aligned(1024)
    pointers = (ctypes.c_void_p * (taps * mr))(*([row.ctypes.data] * (taps * mr)))
    out = _aligned(mr * nc * elem + 256)
    args = (address, mr, rows, nc, kc * elem, taps * mr * ctypes.sizeof(ctypes.c_void_p), pointers,
            weights.ctypes.data, out.ctypes.data, nc * elem, nr * elem, zero.ctypes.data, params.ctypes.data)
    once = lib.time_igemm(*args, 3) / 3
    repeats = max(int(20e6 / max(once, 1.0)), 1)
    return min(lib.time_igemm(*args, repeats) / repeats for _ in range(trials)) / 1e6


def whole_models(paths: dict[str, Path], card, rounds: int, runs: int) -> dict[str, list[float]]:
    from edgekit.backends.onnx.runner import OnnxRunner
    from edgekit.backends.tflite.runner import LiteRTRunner
    from edgekit.evalset import default_eval_set, model_inputs
    from edgekit.report.measure import interleaved_latency

    runners = {"onnxruntime FP32": OnnxRunner(paths["onnx"]), "onnxruntime INT8": OnnxRunner(paths["onnx-int8"]),
               "LiteRT FP32": LiteRTRunner(paths["tflite"]), "LiteRT INT8": LiteRTRunner(paths["tflite-int8"]),
               # LiteRT's own kernels (ruy, its optimized ops): the one other way it runs an INT8 conv on this CPU
               "LiteRT builtin FP32": LiteRTRunner(paths["tflite"], xnnpack=False),
               "LiteRT builtin INT8": LiteRTRunner(paths["tflite-int8"], xnnpack=False)}
    sample = model_inputs(card, default_eval_set(card, 1, seed=424242)).sample(0)
    p50 = {k: [] for k in runners}
    for _ in range(rounds):
        lat = interleaved_latency({k: r.run for k, r in runners.items()}, sample, runs, max(runs // 10, 5), "1 thread")
        for k in runners:
            p50[k].append(lat[k]["p50"].value)
    return p50


def measure(model: str, rounds: int, runs: int, work: Path) -> dict:
    from edgekit import progress
    from edgekit.source import load_source

    progress.configure(progress.QUIET)
    paths = compile_all(model, work / "build")
    card = load_source(model, work / "load").card
    layers = conv_layers(paths["onnx"])
    lib = build_helpers(work)
    fma = max(lib.fma_peak(20000) for _ in range(5))
    ort_ms, ort_overhead = ort_layer_times(layers, work, runs)
    kernels = litert_kernels()
    for i, layer in enumerate(layers):
        layer["onnxruntime_ms"] = {p: ort_ms[(i, p)] for p in ("FP32", "INT8")}
        layer["xnnpack_ms"] = {p: xnnpack_layer_ms(lib, kernels[p], p, layer) for p in ("FP32", "INT8")}
    return {"model": model, "fma_peak_macs_per_ns": fma, "onnxruntime_run_overhead_ms": ort_overhead,
            "layers": layers, "whole_model_p50_ms": whole_models(paths, card, rounds, runs),
            "kernels": {p: k[0] for p, k in KERNELS.items()}}


def summary(res: dict) -> dict:
    """Sums over the conv layers, the FMA limit of their MACs, and the bound on each runtime's INT8 speed-up."""
    macs = sum(layer["macs"] for layer in res["layers"])
    model = {k: float(np.median(v)) for k, v in res["whole_model_p50_ms"].items()}
    out = {"conv_macs": macs, "fma_limit_ms": macs / res["fma_peak_macs_per_ns"] / 1e6, "model_ms": model}
    for runtime, key in (("onnxruntime", "onnxruntime_ms"), ("LiteRT", "xnnpack_ms")):
        sums = {p: sum(layer[key][p] for layer in res["layers"]) for p in ("FP32", "INT8")}
        fastest = sum(min(layer[key].values()) for layer in res["layers"])  # each layer in its faster precision
        out[runtime] = {"layers_fp32_ms": sums["FP32"], "layers_int8_ms": sums["INT8"], "layers_fastest_ms": fastest,
                        "layers_ratio": sums["FP32"] / sums["INT8"],
                        "model_ratio": model[f"{runtime} FP32"] / model[f"{runtime} INT8"],
                        "bound": model[f"{runtime} FP32"] / fastest,
                        "fp32_model_over_fma_limit": model[f"{runtime} FP32"] / out["fma_limit_ms"]}
    return out


def markdown(res: dict, host: dict, masked: bool, versions: str) -> str:
    s = summary(res)
    kernels = (" Run with --avx2-only: CPUID masked (tests/avx2_only.c), so onnxruntime ran its AVX2 kernels."
               if masked else " Not masked: onnxruntime ran this host's best kernels.")
    lines = ["# How much faster INT8 can be: the runtimes' own conv kernels, layer by layer", "",
             f"Machine: {host['cpu']}, {host['cores']} cores ({', '.join(host['isa_flags'])}).{kernels} {versions}. "
             f"Model: {res['model']}. Produced by `benchmarks/int8_ceiling.py` (docstring: how); one thread, batch 1.",
             "", "## Each conv layer alone, operands in cache (ms)", "",
             "| layer | in -> out ch | kernel / stride | output | M MACs | ORT FP32 | ORT INT8 | ORT x | XNNPACK FP32 "
             "| XNNPACK INT8 | XNNPACK x |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for layer in res["layers"]:
        o, x = layer["onnxruntime_ms"], layer["xnnpack_ms"]
        lines.append(
            f"| {layer['name']} | {layer['cin']} -> {layer['cout']} | {layer['kernel'][0]}x{layer['kernel'][1]} / "
            f"{layer['strides'][0]} | {layer['output'][0]}x{layer['output'][1]} | {layer['macs'] / 1e6:.1f} | "
            f"{o['FP32']:.3f} | {o['INT8']:.3f} | {o['FP32'] / max(o['INT8'], 1e-9):.2f} | {x['FP32']:.3f} | "
            f"{x['INT8']:.3f} | {x['FP32'] / x['INT8']:.2f} |")
    o, x = s["onnxruntime"], s["LiteRT"]
    lines.append(f"| **all {len(res['layers'])}** |  |  |  | **{s['conv_macs'] / 1e6:.1f}** | **{o['layers_fp32_ms']:.3f}** "
                 f"| **{o['layers_int8_ms']:.3f}** | **{o['layers_ratio']:.2f}** | **{x['layers_fp32_ms']:.3f}** | "
                 f"**{x['layers_int8_ms']:.3f}** | **{x['layers_ratio']:.2f}** |")
    lines += ["", f"onnxruntime's per-run cost (a one-node Identity model, {res['onnxruntime_run_overhead_ms']:.4f} ms) "
              "is taken off each ORT layer time. XNNPACK kernels: "
              + ", ".join(f"{p} `{k}`" for p, k in res["kernels"].items()) + ".", "",
              "## The whole model against its layers (ms, p50, median of rounds)", "",
              "| runtime | FP32 model | INT8 model | INT8 x FP32 (measured) | layers alone, each in its faster precision, "
              "sum | bound on INT8 x FP32 | FP32 model / FMA limit |", "|---|---|---|---|---|---|---|"]
    for runtime in ("onnxruntime", "LiteRT"):
        r = s[runtime]
        lines.append(f"| {runtime} | {s['model_ms'][f'{runtime} FP32']:.3f} | {s['model_ms'][f'{runtime} INT8']:.3f} | "
                     f"{r['model_ratio']:.2f} | {r['layers_fastest_ms']:.3f} | {r['bound']:.2f} | "
                     f"{r['fp32_model_over_fma_limit']:.2f} |")
    builtin = {p: s["model_ms"].get(f"LiteRT builtin {p}") for p in ("FP32", "INT8")}
    if all(builtin.values()):
        lines += ["", "LiteRT without its XNNPACK delegate (its builtin kernels, the same artifacts, timed in the same "
                  f"rounds): FP32 {builtin['FP32']:.3f} ms, INT8 {builtin['INT8']:.3f} ms, "
                  f"{s['model_ms']['LiteRT FP32'] / builtin['INT8']:.2f}x the XNNPACK FP32 model's speed."]
    lines += ["", f"FMA limit: {s['conv_macs'] / 1e6:.1f} M conv MACs at {res['fma_peak_macs_per_ns']:.1f} MACs/ns "
              f"(measured, int8_ceiling.c's fma_peak, best of 5) = {s['fma_limit_ms']:.3f} ms. Bound = the FP32 model's "
              "time over the sum of its conv layers alone, each in the faster of its FP32 and INT8 kernels: no INT8 "
              "or mixed artifact of this model runs faster than its convs do one by one in cache, so none beats FP32 "
              "by more than this in that runtime on this core."]
    return "\n".join(lines)


def main() -> None:
    from tests import avx2_only

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="gazeresnet18")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=200)
    avx2_only.add_option(ap)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "int8_ceiling.md"))
    args = ap.parse_args()
    import importlib.metadata

    from edgekit.environment import host_info

    avx2_only.rerun_if_asked(args.avx2_only, "int8_ceiling")
    with tempfile.TemporaryDirectory() as tmp:
        res = measure(args.model, args.rounds, args.runs, Path(tmp))
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in ("onnxruntime", "ai-edge-litert"))
    out = Path(args.out)
    out.write_text(markdown(res, host_info(), avx2_only.masked(), versions) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"host": host_info(), "avx2_only": avx2_only.masked(),
                                                    "versions": versions, "summary": summary(res), **res},
                                                   indent=1, default=str) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
