"""Where an image model's batch-1 time goes, FP32 against INT8, in the runtimes' own terms (issue 21, item 3).

- ONNX Runtime: its profiler (SessionOptions.enable_profiling) over the shipped artifacts, one thread, the runner's
  session options: time per op type per run, and which nodes of the INT8 artifact still compute in float (a node
  with a float input or output other than QuantizeLinear / DequantizeLinear). The profiler's raw JSON for the last
  runs is written beside the Markdown (benchmarks/profiles/).
- LiteRT: ai-edge-litert 2.3.0's Python interpreter exposes no op profiler (its wrapper has no profiling call, and
  benchmark_model is not on PyPI), so the time is sampled with Linux perf (cpu-clock, 4 kHz) in a child process that
  only invokes the interpreter; XNNPACK's microkernels keep their symbols, so each sample names the kernel, its
  precision and the ISA it was built for. The float ops of the INT8 .tflite come from the interpreter's op list.
- The FP32 conv layers against the single-core FMA limit: the conv MACs (from a batch-1 torch forward) over
  lanes x FMA units x clock, for the ISA the runtime picked here and for AVX2 (an estimate: the constants are stated).

- --avx2-only: every runtime (and the compile) runs as on a CPU without AVX-512, VNNI and AMX, on a host whose CPU
  can fault on CPUID (cpuid_fault in /proc/cpuinfo): tests/avx2_only.c, built here with `cc`, masks the CPUID
  feature bits, so the kernels are those an AVX2 CPU gets; the core running them stays this host's.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/int8_profile.py [--model gazeresnet18] [--runs 200]
         [--out benchmarks/int8_profile.md] [--avx2-only]   (needs `perf`: apt-get install linux-perf)
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("onnx", "onnx-int8", "tflite", "tflite-int8")
QDQ = {"QuantizeLinear", "DequantizeLinear"}


def compile_all(model: str, out: Path) -> dict[str, Path]:
    import edgekit.compiler as ek

    return {t: ek.compile(model, target=t, out=out / t).artifact for t in TARGETS}


def conv_macs(model: str, work: Path) -> int:
    import torch

    from edgekit.quant.torch_plan import layer_table
    from edgekit.source import load_source

    loaded = load_source(model, work)
    args = tuple(torch.zeros(tuple(s.shape)) for s in loaded.card.inputs)  # the card states batch 1
    return sum(lp.macs for lp in layer_table(loaded.module.eval(), args) if lp.op == "Conv")


def ort_profile(path: Path, runs: int, warmup: int, raw_out: Path, work: Path) -> dict:
    """Per op type: ms per run and node count; the nodes computing in float; the profiler's mean model_run."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = 1, 1, 3
    opts.enable_profiling = True
    opts.profile_file_prefix = str(work / raw_out.stem)
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = {inp.name: np.random.default_rng(0).standard_normal([d if isinstance(d, int) else 1 for d in inp.shape],
                                                             dtype=np.float32)}
    for _ in range(warmup + runs):
        sess.run(None, x)
    events = json.loads(Path(sess.end_profiling()).read_text())
    model_runs = [e for e in events if e.get("name") == "model_run"][-runs:]
    start = model_runs[0]["ts"]
    nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start]
    by_op: dict[str, list] = collections.defaultdict(lambda: [0.0, set()])
    floats, convs = {}, {}
    for e in nodes:
        op = e["args"]["op_name"]
        by_op[op][0] += e["dur"] / 1e3 / runs
        by_op[op][1].add(e["name"])
        if "Conv" in op:
            conv = convs.setdefault(e["name"], {"ms": 0.0, "output": e["args"]["output_type_shape"][0],
                                                "inputs": e["args"]["input_type_shape"]})
            conv["ms"] += e["dur"] / 1e3 / runs
        # the data input and the output (a QLinear op's scales are float inputs too)
        data = [d for key in ("input_type_shape", "output_type_shape") for d in e["args"].get(key, [])[:1]]
        if op not in QDQ and any("float" in d for d in data):
            floats[e["name"].removesuffix("_kernel_time")] = op
    last = [e for e in events if e["ts"] >= model_runs[-5]["ts"]]  # the raw events of the last 5 runs
    raw_out.write_text(json.dumps(last, separators=(",", ":")))
    return {"run_ms": float(np.mean([e["dur"] for e in model_runs])) / 1e3,
            "ops": {op: {"ms": ms, "nodes": len(names)} for op, (ms, names) in by_op.items()}, "float_nodes": floats,
            "convs": list(convs.values())}


def conv_stages(fp32: list[dict], int8: list[dict]) -> list[dict]:
    """ONNX Runtime's conv nodes grouped by output size (channels, height, width): the FP32 nodes give each group's
    MACs (their weight shapes; the INT8 ones are prepacked and not shown), the INT8 nodes report channels-last
    shapes, matched to the FP32 group with the same sizes."""
    stages: dict[tuple, dict] = {}
    for conv in fp32:
        (shape,) = conv["output"].values()
        out_c, out_h, out_w = shape[1:]
        weight = next(iter(conv["inputs"][1].values()))  # [out, in / groups, kh, kw]
        stage = stages.setdefault((out_c, out_h, out_w), {"convs": 0, "macs": 0, "fp32_ms": 0.0, "int8_ms": 0.0})
        stage["convs"] += 1
        stage["macs"] += out_c * out_h * out_w * int(np.prod(weight[1:]))
        stage["fp32_ms"] += conv["ms"]
    for conv in int8:
        (shape,) = conv["output"].values()
        a, b, c = shape[1:]
        key = (c, a, b) if (c, a, b) in stages else (a, b, c)
        stages[key]["int8_ms"] += conv["ms"]
    return [{"output": key, **stage} for key, stage in stages.items()]


PERF_CHILD = textwrap.dedent('''
    import sys, time, numpy as np
    from ai_edge_litert import interpreter
    it = interpreter.Interpreter(model_path=sys.argv[1], num_threads=1)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    x = np.random.default_rng(0).standard_normal(d["shape"]).astype(np.float32)
    if d["dtype"] != np.float32:  # an int8 interface (litert-torch's own PT2E route): quantized as a caller must
        scale, zero = d["quantization"]
        x = np.clip(np.round(x / scale) + zero, -128, 127).astype(d["dtype"])
    for _ in range(20):
        it.set_tensor(d["index"], x); it.invoke()
    start = time.perf_counter()
    for _ in range(int(sys.argv[2])):
        it.set_tensor(d["index"], x); it.invoke()
    print((time.perf_counter() - start) / int(sys.argv[2]) * 1e3)
''')


def litert_perf(path: Path, runs: int, work: Path) -> dict:
    """perf samples of the interpreter's invocations grouped by symbol (share of all samples), and ms per run."""
    data = work / f"{path.parent.name}.perf"
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # perf's own SIGSEGV handler: no mask in perf
    from tests import avx2_only

    child = subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", "4000", "-o", str(data), "--", *avx2_only.preload(),
                            sys.executable, "-c", PERF_CHILD, str(path), str(runs)], capture_output=True, text=True,
                           check=True, env=env)
    report = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--sort", "sym", "--percent-limit", "0.1"],
                            capture_output=True, text=True, check=True, env=env).stdout
    symbols = [(float(m.group(1)), m.group(2).strip()) for m in re.finditer(r"^\s+([\d.]+)%\s+\[[.k]\]\s+(.+)$", report, re.M)]
    return {"run_ms": float(child.stdout.strip().splitlines()[-1]), "symbols": symbols}


def kernel_kind(symbol: str) -> str:
    """An XNNPACK microkernel's family: `xnn_qs8_qc8w_igemm_minmax_fp32_ukernel_1x16c8__avx512vnni` -> 'qs8 igemm'."""
    m = re.match(r"xnn_(\w+?)_(?:qc8w_)?(igemm|gemm|dwconv|vadd|vaddc|vmul|rdsum|rsum|gavgpool|vcvt|vclamp|vunary|vbinary|"
                 r"avgpool|maxpool|pack\w*|x32\w*|x8\w*)", symbol)
    return f"{m.group(1)} {m.group(2)}" if m else "other (interpreter, Python, kernel)"


def litert_float_op_details(path: Path) -> list[dict]:
    """The interpreter's details of each op of a .tflite with a float data input or output (besides QUANTIZE /
    DEQUANTIZE and XNNPACK's DELEGATE partitions)."""
    from edgekit.backends.tflite.runner import LiteRTRunner

    it = LiteRTRunner(path).interpreter
    details = {t["index"]: t["dtype"] for t in it.get_tensor_details()}
    out = []
    for op in it._get_ops_details():  # private, but the only op list the Python package has
        data = [details.get(i) for i in list(op["inputs"])[:1] + list(op["outputs"])[:1] if i >= 0]
        if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE", "DELEGATE") and np.float32 in data:
            out.append(op)
    return out


def litert_float_ops(path: Path) -> list[str]:
    return [f"{op['op_name']} (op {op['index']})" for op in litert_float_op_details(path)]


def isa_of(symbols: list[tuple[float, str]]) -> str:
    isas = collections.Counter()
    for share, sym in symbols:
        m = re.search(r"__(\w+?)(?:_prfm|_u\d+|_x\d+)*$", sym)
        if m and sym.startswith("xnn_"):
            isas[m.group(1)] += share
    return ", ".join(f"{k} {v:.0f}%" for k, v in isas.most_common(4))


def markdown(model: str, host: dict, versions: str, macs: int, ort: dict, lite: dict, float_ops: list[str],
             runs: int) -> str:
    ghz = host["ghz"]
    fma = fma_units(host)
    limit = {isa: macs / (units * lanes * ghz * 1e9) * 1e3 for isa, units, lanes in
             (("AVX-512", fma["avx512_units"], 16), ("AVX2", 2, 8))}
    fp32_conv = sum(v["ms"] for op, v in ort["onnx"]["ops"].items() if "Conv" in op)
    # the FP32 kernels' ISA: AVX2 when the CPU (or the mask) offers no AVX-512
    avx512 = "avx512f" in host["isa_flags"] and not host["masked"]
    conv_isa, conv_units, conv_lanes = ("AVX-512", fma["avx512_units"], 16) if avx512 else ("AVX2", 2, 8)
    lines = [f"# Where {model}'s batch-1 time goes: FP32 against INT8, per runtime", "",
             f"Machine: {host['cpu']}, {host['cores']} vCPUs ({', '.join(host['isa_flags'])}), {ghz:.2f} GHz "
             f"nominal (/proc/cpuinfo). {versions}. One thread, batch 1, {runs} runs after warm-up. Produced by "
             f"`benchmarks/int8_profile.py` (docstring: how). {int8_isa_sentence(host['isa_flags'], host['masked'])}", "",
             "## ONNX Runtime profiler (ms per run by op type)", "",
             "| op type | FP32 ms (nodes) | INT8 ms (nodes) |", "|---|---|---|"]
    ops = sorted(set(ort["onnx"]["ops"]) | set(ort["onnx-int8"]["ops"]),
                 key=lambda o: -max(ort["onnx"]["ops"].get(o, {"ms": 0})["ms"], ort["onnx-int8"]["ops"].get(o, {"ms": 0})["ms"]))
    for op in ops:
        cells = [f"{r['ops'][op]['ms']:.3f} ({r['ops'][op]['nodes']})" if op in r["ops"] else "" for r in (ort["onnx"], ort["onnx-int8"])]
        lines.append(f"| {op} | {cells[0]} | {cells[1]} |")
    f32, i8 = ort["onnx"]["run_ms"], ort["onnx-int8"]["run_ms"]
    lines += [f"| **model_run** (profiler) | **{f32:.3f}** | **{i8:.3f}** ({f32 / i8:.2f}x faster) |", "",
              f"Conv nodes by output size: each group's MACs, its time per run, and the FP32 time against the "
              f"{conv_isa} FMA limit of those MACs at the nominal clock (see the last section):", "",
              "| output (C x H x W) | convs | M MACs | FP32 ms | FP32 / limit | INT8 ms | INT8 faster |",
              "|---|---|---|---|---|---|---|"]
    for st in conv_stages(ort["onnx"]["convs"], ort["onnx-int8"]["convs"]):
        stage_limit = st["macs"] / (conv_units * conv_lanes * ghz * 1e9) * 1e3
        lines.append(f"| {' x '.join(map(str, st['output']))} | {st['convs']} | {st['macs'] / 1e6:.1f} | "
                     f"{st['fp32_ms']:.3f} | {st['fp32_ms'] / stage_limit:.2f}x | {st['int8_ms']:.3f} | "
                     f"{st['fp32_ms'] / st['int8_ms']:.2f}x |")
    lines += ["",
              f"Nodes of the INT8 artifact that compute in float: {len(ort['onnx-int8']['float_nodes'])}"
              + (": " + ", ".join(f"{n} ({op})" for n, op in ort["onnx-int8"]["float_nodes"].items()) if ort["onnx-int8"]["float_nodes"] else ""), "",
              "## LiteRT (perf samples by XNNPACK microkernel family; share of all samples in the child process, its start-up and weight packing included)", "",
              "| kernel family | FP32 share | INT8 share |", "|---|---|---|"]
    fam = {t: collections.Counter() for t in ("tflite", "tflite-int8")}
    for t in fam:
        for share, sym in lite[t]["symbols"]:
            fam[t][kernel_kind(sym)] += share
    for k in sorted(set(fam["tflite"]) | set(fam["tflite-int8"]), key=lambda k: -max(fam["tflite"][k], fam["tflite-int8"][k])):
        lines.append(f"| {k} | {fam['tflite'][k]:.1f}% | {fam['tflite-int8'][k]:.1f}% |")
    lf, li = lite["tflite"]["run_ms"], lite["tflite-int8"]["run_ms"]
    lines += [f"| **ms per invoke** (child's own timer, under perf) | **{lf:.3f}** | **{li:.3f}** ({lf / li:.2f}x faster) |", "",
              f"ISA of the sampled XNNPACK kernels: FP32 {isa_of(lite['tflite']['symbols'])}; INT8 "
              f"{isa_of(lite['tflite-int8']['symbols'])}.", "",
              "LiteRT's own kernels in the samples (ops XNNPACK did not take): "
              + "; ".join(f"{t} " + (", ".join(f"{sym} {share:.1f}%" for share, sym in lite[t]["symbols"]
                                               if sym.startswith("tflite::")) or "none") for t in ("tflite", "tflite-int8")) + ".", "",
              f"Ops of the INT8 .tflite computing in float (a float data input or output; QUANTIZE / DEQUANTIZE aside): "
              f"{', '.join(float_ops) or 'none'}.", "",
              "Top symbols (share of samples):", ""]
    for t in ("tflite", "tflite-int8"):
        lines.append(f"- {t}: " + "; ".join(f"{s} {share:.1f}%" for share, s in lite[t]["symbols"][:8]))
    lines += ["", "## FP32 conv layers against the single-core FMA limit (estimate)", "",
              f"{macs / 1e6:.1f} M conv MACs per image (batch-1 torch forward). Limit = MACs / (FMA units x float32 lanes "
              f"x clock): {fma['source']}; AVX2 with 2 FMA ports (as the issue's figure), {ghz:.2f} GHz (nominal; "
              f"turbo would lower the limit). AVX-512 (16 lanes): "
              f"{limit['AVX-512']:.2f} ms; AVX2 (8 lanes): {limit['AVX2']:.2f} ms. ONNX Runtime's FP32 conv nodes "
              f"(Conv and FusedConv) here: {fp32_conv:.3f} ms per run, {fp32_conv / limit['AVX-512']:.2f}x the AVX-512 "
              f"limit, {fp32_conv / limit['AVX2']:.2f}x the AVX2 one.", ""]
    return "\n".join(lines)


def int8_isa_sentence(flags: list[str], masked: bool = False) -> str:
    """What the INT8 ratios measured here stand for: the issue's figure is for a CPU without VNNI."""
    from edgekit.environment import has_vnni

    if masked:
        return ("Run with --avx2-only: CPUID masked for every runtime and the compile (tests/avx2_only.c), "
                "which saw no AVX-512, VNNI or AMX and ran their AVX2 kernels: the INT8 ratios are those of a CPU "
                "without VNNI's kernels, run on this host's core.")
    if not has_vnni():
        return "This host has no VNNI: the INT8 ratios here are the issue's no-VNNI figure."
    extra = " and AMX" if "amx_int8" in flags else ""
    return f"This host has VNNI{extra}, so the INT8 ratios here are not the issue's no-VNNI figure."


def fma_units(host: dict) -> dict:
    """512-bit FMA units per core. Intel server cores since Skylake-SP: 2 (Intel's optimization manual; some SKUs 1).
    AMD Zen 4 (CPU family 25, the first AMD cores with AVX-512) runs a 512-bit FMA on its two 256-bit FMA pipes
    together, so AVX-512 adds no float32 FMA throughput over AVX2: the same limit; Zen 5 widened the pipes (A. J. Yee,
    Zen 4 and Zen 5 AVX-512 teardowns, numberworld.org/blogs/2024_8_7_zen5_avx512_teardown)."""
    if "AMD" in host["cpu"] and host.get("family") == 25:
        return {"avx512_units": 1, "source": "AVX-512 on AMD Zen 4 as one 512-bit FMA per cycle (two 256-bit FMA pipes "
                "per 512-bit op: A. J. Yee's Zen 4 / Zen 5 AVX-512 teardowns, numberworld.org)"}
    return {"avx512_units": 2, "source": "AVX-512 with 2 FMA units (Intel's optimization manual, server cores since "
            "Skylake-SP)"}


def host(masked: bool) -> dict:
    from edgekit.environment import host_info

    info = host_info()
    cpuinfo = Path("/proc/cpuinfo").read_text()
    mhz = re.search(r"cpu MHz\s*:\s*([\d.]+)", cpuinfo)
    family = re.search(r"cpu family\s*:\s*(\d+)", cpuinfo)
    return {**info, "ghz": float(mhz.group(1)) / 1e3 if mhz else float("nan"), "family": int(family.group(1)) if family else None,
            "masked": masked}


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from tests import avx2_only

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="gazeresnet18")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "int8_profile.md"))
    avx2_only.add_option(ap)
    args = ap.parse_args()
    if not shutil.which("perf"):
        sys.exit("int8_profile: needs Linux perf for the LiteRT samples; fix: apt-get install linux-perf")

    avx2_only.rerun_if_asked(args.avx2_only, "int8_profile")
    masked = avx2_only.masked()
    from edgekit import progress
    from edgekit.backends.onnx.runner import runtime_version as ort_version
    from edgekit.backends.tflite.runner import runtime_version as litert_version

    progress.configure(progress.QUIET)
    raw = Path(args.out).parent / "profiles"
    tag = "" if Path(args.out).name == "int8_profile.md" else Path(args.out).stem + "_"  # another host's run: its own files
    raw.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        artifacts = compile_all(args.model, tmp)
        macs = conv_macs(args.model, tmp / "load")
        ort = {t: ort_profile(artifacts[t], args.runs, 20, raw / f"{tag}ort_{args.model}_{t}.json", tmp) for t in ("onnx", "onnx-int8")}
        lite = {t: litert_perf(artifacts[t], args.runs, tmp) for t in ("tflite", "tflite-int8")}
        float_ops = litert_float_ops(artifacts["tflite-int8"])
    versions = f"onnxruntime {ort_version()}, LiteRT {litert_version()}"
    text = markdown(args.model, host(masked), versions, macs, ort, lite, float_ops, args.runs)
    Path(args.out).write_text(text + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps({"ort": ort, "litert": lite, "litert_float_ops": float_ops,
                                                               "conv_macs": macs}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
