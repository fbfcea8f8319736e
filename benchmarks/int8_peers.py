"""INT8 against the peers (issue 21, item 2): accuracy on unseen samples and speed, per runtime, per model.

ONNX (onnxruntime runs every variant):
  edgekit          `edgekit compile M --target onnx-int8` (portable profile: 7-bit weights)
  edgekit 8-bit    the same recipe with `isa_profile: x86-vnni`: 8-bit weights, as ORT default and NNCF use, which
                   u8s8 kernels without VNNI can saturate (ORT's documentation); compared with those peers at equal
                   weight bits, and the shipped 7-bit recipe with ORT best (reduce_range: 7-bit weights)
  ORT default      onnxruntime.quantization.quantize_static with its defaults (QDQ, per-tensor S8 weights, S8
                   activations, min-max)
  ORT best         onnxruntime's documented practice for x86: quant_pre_process first, then per-channel weights,
                   reduce_range (7-bit weights, for CPUs without VNNI), U8 activations / S8 weights, min-max
  NNCF             nncf.quantize defaults (ONNX backend), from its own package folder (--nncf) so it cannot
                   change edgekit's environment; it installs beside the pins (pip --dry-run: no conflict)
TFLite (the LiteRT interpreter runs every variant):
  edgekit          `edgekit compile M --target tflite-int8`
  litert-torch     its plain PT2E route: PT2EQuantizer with per-channel symmetric static config, calibrated on
                   the same samples, converted with litert_torch.convert(quant_config=...)

--avx2-only reruns everything (compiles, peers' quantizers, runtimes) with CPUID masked by tests/avx2_only.c, so
that every library picks the kernels of a CPU without AVX-512 and VNNI (a host with cpuid_fault and cc only).

Every peer gets the FP32 model edgekit starts from (the `onnx` target's artifact; the module for litert-torch)
and the 512 calibration samples edgekit uses (synthetic-512). Every variant is measured the same way: the angular
difference from the same runtime's FP32 artifact on N unseen samples (default 2000, seed 424242: a seed no
role draws), mean / p95 / max, and latency interleaved in blocks (edgekit.report.measure; batch 1, 1 thread, p50).

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/int8_peers.py [--models tinygaze,gazeresnet18,zoo]
         [--nncf /tmp/nncf-pkgs] [--out benchmarks/int8_peers.md] [--avx2-only] [--ptq bias_correction=true]
     (nncf: `.venv/bin/pip install --no-deps --target /tmp/nncf-pkgs nncf==3.4.0 ninja openvino-telemetry pydot
      pyparsing psutil`; without --nncf its rows say "not run")
Writes the Markdown (--out) and a JSON of every number next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "tests" / "zoo" / "weights"
UNSEEN_SEED = 424242

NNCF_SCRIPT = textwrap.dedent('''
    import sys, numpy as np, nncf, onnx
    fp32, calib, out = sys.argv[1:4]
    arrays = dict(np.load(calib))
    n = len(next(iter(arrays.values())))
    ds = nncf.Dataset([{k: v[i:i + 1] for k, v in arrays.items()} for i in range(n)])
    onnx.save(nncf.quantize(onnx.load(fp32), ds, subset_size=n), out)
''')


class Reader:
    """onnxruntime's CalibrationDataReader over every sample of a dict of arrays, one sample per call."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        n = len(next(iter(arrays.values())))
        self.items = iter([{k: v[i:i + 1] for k, v in arrays.items()} for i in range(n)])

    def get_next(self):
        return next(self.items, None)


def ort_default(fp32: Path, calib: dict, out: Path) -> Path:
    from onnxruntime.quantization import quantize_static

    quantize_static(str(fp32), str(out), Reader(calib))
    return out


def ort_best(fp32: Path, calib: dict, out: Path) -> Path:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = out.with_name(out.stem + "-pre.onnx")
    quant_pre_process(str(fp32), str(pre))
    quantize_static(str(pre), str(out), Reader(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                    reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


def nncf_onnx(fp32: Path, calib: dict, out: Path, nncf_path: str) -> Path:
    np.savez(out.with_suffix(".calib.npz"), **calib)
    script = out.with_name("run_nncf.py")  # not nncf.py: the script's folder comes first on sys.path
    script.write_text(NNCF_SCRIPT)
    env = {**os.environ, "PYTHONPATH": nncf_path}
    done = subprocess.run([sys.executable, str(script), str(fp32), str(out.with_suffix(".calib.npz")), str(out)],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError((done.stderr.strip().splitlines() or ["no output"])[-1][:300])
    return out


def litert_pt2e(module, card, calib: dict, out: Path) -> Path:
    """litert-torch's own PT2E INT8 route, as its documentation shows it."""
    import litert_torch
    import torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    names = [s.name for s in card.inputs]
    example = tuple(torch.from_numpy(calib[n][:1]) for n in names)
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(module.eval(), example).module(), quantizer)
    with torch.no_grad():
        for i in range(len(calib[names[0]])):
            prepared(*(torch.from_numpy(calib[n][i:i + 1]) for n in names))
    converted = convert_pt2e(prepared, fold_quantize=False)
    litert_torch.convert(converted, example, quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(out))
    return out


def model_source(name: str) -> dict:
    """compile() keyword arguments for a built-in or a zoo model."""
    if (ZOO / f"{name}.card.json").is_file():
        card = ZOO / f"{name}.card.json"
        return {"model": str(ZOO / f"{name}.safetensors"), "card": str(card), "arch": json.loads(card.read_text())["arch"]}
    return {"model": name}


def differences(runner, evals, card, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from edgekit.data.metrics import angular_error_deg
    from edgekit.evalset import run_all, to_vectors

    out = to_vectors(run_all(runner.run, evals), card).reshape(-1, 3)
    return out, angular_error_deg(out, ref)


def measure_runtime(label: str, variants: dict, make_runner, evals, card, runs: int) -> list[dict]:
    """Every variant against the runtime's FP32 (the first one): differences on the unseen samples, latency
    interleaved in blocks (edgekit.report.measure)."""
    from edgekit.report.measure import interleaved_latency

    runners = {}
    for k, v in list(variants.items()):
        if isinstance(v, Path):  # an artifact its runtime refuses (e.g. a quantizer's softmax scale) failed too
            runner = attempt(f"{label} {k}", lambda: make_runner(Path(v)))
            if isinstance(runner, str):
                variants[k] = f"{label} refuses it: {runner}"
            else:
                runners[k] = runner
    ref = None
    rows = []
    for k, v in variants.items():
        if not isinstance(v, Path):
            rows.append({"runtime": label, "variant": k, "failed": v})
            continue
        out, diff = differences(runners[k], evals, card, ref if ref is not None else np.zeros((len(evals), 3)))
        if ref is None:
            ref, diff = out, np.zeros(len(out))
        rows.append({"runtime": label, "variant": k, "mean_diff": float(diff.mean()), "p95_diff": float(np.percentile(diff, 95)),
                     "max_diff": float(diff.max()), "size_mb": v.stat().st_size / 1e6})
    lat = interleaved_latency({k: r.run for k, r in runners.items()}, evals.sample(0), runs, max(runs // 10, 5), f"{label}, 1 thread")
    for r in rows:
        if "failed" not in r:
            r["p50_ms"] = lat[r["variant"]]["p50"].value
    return rows


def attempt(what, fn):
    try:
        return fn()
    except Exception as exc:  # a peer that cannot quantize a model is a result, not a crash of the benchmark
        traceback.print_exc(limit=2)
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


def bench_model(name: str, tmp: Path, n_unseen: int, nncf_path: str | None, runs: int, ptq: dict | None = None) -> dict:
    import edgekit.compiler as ek
    from edgekit.backends.onnx.runner import OnnxRunner
    from edgekit.backends.tflite.runner import LiteRTRunner
    from edgekit.evalset import default_eval_set, model_inputs

    src = model_source(name)
    compiled, seconds = {}, {}
    for target in ("onnx", "onnx-int8", "tflite", "tflite-int8"):
        recipe = str(recipe_with(target, "ptq", ptq, tmp)) if ptq and target == "onnx-int8" else target
        start = time.perf_counter()
        compiled[target] = attempt(target, lambda: ek.compile(**src, target=recipe, out=tmp / target, cache=False))
        seconds[target] = round(time.perf_counter() - start, 1)
    vnni = recipe_with("onnx-int8", "ptq", {"isa_profile": "x86-vnni", **(ptq or {})}, tmp)  # 8-bit weights
    eight_bit = attempt("onnx-int8 x86-vnni", lambda: ek.compile(**src, target=str(vnni), out=tmp / "vnni", cache=False))
    from edgekit.source import load_source

    loaded = load_source(src["model"], tmp / "load", arch=src.get("arch"), card=Path(src["card"]) if "card" in src else None)
    card = loaded.card
    calib = model_inputs(card, default_eval_set(card, 512, role="calib")).arrays
    evals = model_inputs(card, default_eval_set(card, n_unseen, seed=UNSEEN_SEED))
    fp32 = compiled["onnx"].artifact
    onnx_variants = {"FP32": fp32}
    onnx_variants["edgekit onnx-int8"] = compiled["onnx-int8"].artifact if not isinstance(compiled["onnx-int8"], str) else compiled["onnx-int8"]
    onnx_variants[EIGHT_BIT] = eight_bit.artifact if not isinstance(eight_bit, str) else eight_bit
    onnx_variants["ORT default"] = attempt("ort default", lambda: ort_default(fp32, calib, tmp / "ort-default.onnx"))
    onnx_variants["ORT best"] = attempt("ort best", lambda: ort_best(fp32, calib, tmp / "ort-best.onnx"))
    onnx_variants["NNCF"] = (attempt("nncf", lambda: nncf_onnx(fp32, calib, tmp / "nncf.onnx", nncf_path)) if nncf_path
                             else "not run (no --nncf)")
    rows = measure_runtime("onnxruntime", onnx_variants, OnnxRunner, evals, card, runs)
    if not isinstance(compiled["tflite"], str):
        tfl_variants = {"FP32": compiled["tflite"].artifact,
                        "edgekit tflite-int8": (compiled["tflite-int8"].artifact if not isinstance(compiled["tflite-int8"], str)
                                                else compiled["tflite-int8"])}
        tfl_variants["litert-torch PT2E"] = attempt("pt2e", lambda: litert_pt2e(loaded.module, card, calib,
                                                                                  tmp / "pt2e.tflite"))
        rows += measure_runtime("LiteRT", tfl_variants, LiteRTRunner, evals, card, runs)
    else:
        rows.append({"runtime": "LiteRT", "variant": "FP32", "failed": compiled["tflite"]})
    # an edgekit artifact whose compile failed its recipe's gates: measured all the same, but edgekit exited 1 on it
    refused = {"edgekit onnx-int8": compiled["onnx-int8"], EIGHT_BIT: eight_bit, "edgekit tflite-int8": compiled["tflite-int8"]}
    for row in rows:
        result = refused.get(row["variant"])
        if result is not None and not isinstance(result, str) and not result.report.passed:
            row["gates_failed"] = [g.name for g in result.report.gates if not g.passed]
    return {"model": name, "rows": rows, "compile_s": seconds, "unseen": n_unseen}


EIGHT_BIT = "edgekit onnx-int8, 8-bit weights (x86-vnni)"


def recipe_with(target: str, pass_name: str, options: dict, folder: Path) -> Path:
    """A shipped target's recipe with one pass's options changed, written into `folder` (named after the change)."""
    import yaml

    recipe = yaml.safe_load((ROOT / "edgekit" / "targets" / f"{target}.yaml").read_text())
    for step in recipe["passes"]:
        if isinstance(step, dict) and pass_name in step:
            step[pass_name].update(options)
    recipe["name"] = f"{target}-" + "-".join(f"{k}-{v}" for k, v in options.items()).replace("_", "-")
    path = folder / f"{recipe['name']}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def verdict(rows: list[dict], ours: str, peers: list[str]) -> str:
    got = {r["variant"]: r for r in rows if "failed" not in r}
    if ours not in got:
        return f"{ours} failed"
    others = [got[p] for p in peers if p in got]
    if not others:
        return "no peer ran"
    best_mean, best_max = min(r["mean_diff"] for r in others), min(r["max_diff"] for r in others)
    m, x = got[ours]["mean_diff"], got[ours]["max_diff"]
    ok = m <= best_mean + 5e-4 and x <= best_max + 5e-3
    refused = " (edgekit's compile failed its gates)" if got[ours].get("gates_failed") else ""
    return (f"{'holds' if ok else 'MISSES'}: mean {m:.3f} vs best peer {best_mean:.3f}, max {x:.3f} vs {best_max:.3f}"
            f"{refused}")


def markdown(results: list[dict], host: dict, versions: dict, masked: bool = False, ptq: dict | None = None) -> str:
    kernels = (" Run with --avx2-only: CPUID masked (tests/avx2_only.c), so every runtime, the compiles and the peers' "
               "quantizers ran their AVX2 kernels, as on a CPU without AVX-512 and VNNI." if masked else "")
    if ptq:
        kernels += f" edgekit's onnx-int8 rows (both) with the ptq options {ptq} (--ptq)."
    lines = ["# INT8 against the peers: difference from FP32 on unseen samples, and speed", "",
             f"Machine: {host['cpu']}, {host['cores']} cores ({', '.join(host['isa_flags'])}).{kernels} {versions}. "
             "Produced by `benchmarks/int8_peers.py`; every variant calibrated on the same 512 samples (synthetic-512) "
             f"and measured on {results[0]['unseen'] if results else 0} unseen samples (seed {UNSEEN_SEED}) against "
             "the same runtime's FP32 artifact; latency interleaved in blocks of runs (edgekit.report.measure), batch 1, "
             "1 thread.", ""]
    for res in results:
        lines += [f"## {res['model']}", "",
                  "| runtime | variant | mean diff (deg) | p95 diff | max diff | size (MB) | p50 (ms) | x FP32 speed |",
                  "|---|---|---|---|---|---|---|---|"]
        fp32_ms = {r["runtime"]: r.get("p50_ms") for r in res["rows"] if r["variant"] == "FP32"}
        for r in res["rows"]:
            if "failed" in r:
                lines.append(f"| {r['runtime']} | {r['variant']} | failed: {r['failed']} |  |  |  |  |  |")
                continue
            speed = fp32_ms.get(r["runtime"]) / r["p50_ms"] if fp32_ms.get(r["runtime"]) and r.get("p50_ms") else None
            variant = r["variant"] + (f" (failed its gates {', '.join(r['gates_failed'])}: edgekit exits 1)"
                                      if r.get("gates_failed") else "")
            lines.append(f"| {r['runtime']} | {variant} | {r['mean_diff']:.3f} | {r['p95_diff']:.3f} | {r['max_diff']:.3f} | "
                         f"{r['size_mb']:.2f} | {r['p50_ms']:.3f} | {speed:.2f} |")
        onnx_rows = [r for r in res["rows"] if r["runtime"] == "onnxruntime"]
        tfl_rows = [r for r in res["rows"] if r["runtime"] == "LiteRT"]
        lines += ["", f"- ONNX: {verdict(onnx_rows, 'edgekit onnx-int8', ['ORT default', 'ORT best', 'NNCF'])}",
                  f"- ONNX at equal weight bits: 7-bit (portable) against ORT best: "
                  f"{verdict(onnx_rows, 'edgekit onnx-int8', ['ORT best'])}; 8-bit against ORT default and NNCF: "
                  f"{verdict(onnx_rows, EIGHT_BIT, ['ORT default', 'NNCF'])}",
                  f"- TFLite: {verdict(tfl_rows, 'edgekit tflite-int8', ['litert-torch PT2E'])}",
                  f"- compile seconds (this run, cache off): {res['compile_s']}", ""]
    return "\n".join(lines)


def zoo_models() -> list[str]:
    return sorted(p.name.removesuffix(".card.json") for p in ZOO.glob("*.card.json"))


def main() -> None:
    sys.path.insert(0, str(ROOT))  # tests: the zoo architectures and the CPUID mask
    from tests import avx2_only

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="tinygaze,gazeresnet18,zoo", help="comma-separated; 'zoo' = every tests/zoo model")
    ap.add_argument("--unseen", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=200, help="latency runs per variant")
    ap.add_argument("--nncf", help="a folder holding nncf and its extra dependencies (pip --target)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "int8_peers.md"))
    ap.add_argument("--update", action="store_true", help="rerun only --models into the existing JSON beside --out")
    avx2_only.add_option(ap)
    ap.add_argument("--ptq", action="append", default=[], metavar="OPTION=YAML",
                    help="a ptq option for edgekit's onnx-int8 rows, e.g. --ptq bias_correction=true (repeatable)")
    args = ap.parse_args()
    import yaml

    ptq = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.ptq)}

    avx2_only.rerun_if_asked(args.avx2_only, "int8_peers")
    masked = avx2_only.masked()
    from edgekit import progress
    from edgekit.backends.onnx.runner import runtime_version as ort_version
    from edgekit.backends.tflite.runner import runtime_version as litert_version
    from edgekit.environment import host_info

    progress.configure(progress.QUIET)
    models = [m for part in args.models.split(",") for m in (zoo_models() if part == "zoo" else [part])]
    out = Path(args.out)
    kept = json.loads(out.with_suffix(".json").read_text())["results"] if args.update else []
    results = [r for r in kept if r["model"] not in models]
    order: dict[str, int] = {}
    for m in [r["model"] for r in kept] + models:  # a rerun model keeps its place
        order.setdefault(m, len(order))
    for name in models:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            results.append(bench_model(name, Path(tmp), args.unseen, args.nncf, args.runs, ptq))
            results.sort(key=lambda r: order[r["model"]])
            print(f"{name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        versions = f"onnxruntime {ort_version()}, LiteRT {litert_version()}"
        out.write_text(markdown(results, host_info(), versions, masked, ptq) + "\n")
        out.with_suffix(".json").write_text(json.dumps({"host": host_info(), "versions": versions, "avx2_only": masked,
                                                        "ptq": ptq, "results": results}, indent=1))
    print(out.read_text())


if __name__ == "__main__":
    main()
