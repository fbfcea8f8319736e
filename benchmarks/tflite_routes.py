"""Issue 5, item 1: PyTorch -> TFLite conversion routes, measured on the shipped TinyGaze and GazeResNet18.

Routes: litert-torch (direct from torch; FP32, and full INT8 through its PT2E quantizer: static, per-channel
weights, calibrated on 128 calibration images) and onnx2tf (torch.onnx.export opset 17 -> onnx2tf in a
separate venv with TensorFlow; FP32, and full INT8 calibrated on the same 128 images, passed explicitly).
Each conversion runs alone in its own process: wall time and peak RSS (os.wait4) are of that process.
onnx2tf runs under `unshare -n` (no network) when available, so a download attempt would fail loudly.
Every artifact runs in ai_edge_litert's Interpreter (num_threads=1) on 512 eval images (seed 3).

Run (from the repository root; about 15 minutes on 2 cores):
    python3.11 -m venv /tmp/o2t && /tmp/o2t/bin/pip install tensorflow==2.21.0 tf-keras onnx onnxruntime onnxsim \
        onnxoptimizer onnx-graphsurgeon psutil h5py ml-dtypes flatbuffers opencv-python-headless requests \
        ai-edge-litert sng4onnx sne4onnx
    /tmp/o2t/bin/pip install --no-deps onnx2tf==1.29.24   # last: its pins (tf 2.19, numpy 1.26.4) are ignored
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tflite_routes.py [--onnx2tf /tmp/o2t/bin/onnx2tf] [--work DIR]
Without the scratch venv the onnx2tf rows are skipped. Prints the markdown table; JSON goes to DIR/results.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
MODELS = ("tinygaze", "gazeresnet18")
N_EVAL, N_CALIB = 512, 128


# ---------------------------------------------------------------- data (main venv)

def model_and_sets(name: str):
    from edgekit.data.synthetic import standard_set
    from edgekit.evalset import model_inputs
    from edgekit.models.io import load_shipped

    model, card = load_shipped(name)
    size = tuple(card.image_size)
    ev = model_inputs(card, standard_set("eval", N_EVAL, size))
    cal = model_inputs(card, standard_set("calib", N_CALIB, size))
    key = card.image_input.name
    return model.eval(), card, ev.arrays[key], ev.truth, cal.arrays[key]


# ---------------------------------------------------------------- conversion workers (own process each)

def worker(route: str, name: str, precision: str, out: str, calib: str | None) -> None:
    import warnings

    import numpy as np
    import torch

    from edgekit.models.io import load_shipped

    warnings.simplefilter("ignore")
    model, card = load_shipped(name)
    model = model.eval()
    x = (torch.zeros(card.image_input.shape),)
    start = time.perf_counter()
    if route == "onnx":
        torch.onnx.export(model, x, out, dynamo=False, opset_version=17,
                          input_names=[card.image_input.name], output_names=[card.output.name])
    elif precision == "fp32":
        import litert_torch

        litert_torch.convert(model, x).export(out)
    else:
        import litert_torch
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
        # int8-strict: strict (TorchDynamo) export keeps source_fn_stack, which the quantizer's add/add+relu
        # patterns need; the default non-strict export drops it and residual ADDs stay float.
        exported = torch.export.export(model, x, strict=precision == "int8-strict")
        m = prepare_pt2e(exported.module(), quantizer)
        with torch.no_grad():
            for img in np.load(calib):
                m(torch.from_numpy(img[None]))
        m = convert_pt2e(m, fold_quantize=False)
        litert_torch.convert(m, x, quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(out)
    print(json.dumps({"inner_s": time.perf_counter() - start}))


def run_measured(cmd: list[str], log: Path, env: dict | None = None) -> dict:
    """Run cmd alone; wall and CPU (user+sys) seconds, peak RSS (MiB) of it and its waited children, exit code."""
    start = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"wall_s": time.perf_counter() - start, "cpu_s": usage.ru_utime + usage.ru_stime,
            "rss_mib": usage.ru_maxrss / 1024, "rc": proc.returncode}


# ---------------------------------------------------------------- inspection and accuracy (main venv)

def inspect(path: Path) -> dict:
    """Op histogram, float ops left (non-(de)quantize ops with a float32 activation input), I/O layout and dtype."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    ops = it._get_ops_details()
    hist = collections.Counter(op["op_name"] for op in ops)
    quantized = any(t["dtype"].__name__ == "int8" for t in tensors.values())
    float_ops = collections.Counter()
    if quantized:
        for op in ops:
            if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
                continue
            if any(i >= 0 and tensors[i]["dtype"].__name__ == "float32" for i in op["inputs"]):
                float_ops[op["op_name"]] += 1
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    return {"ops": dict(sorted(hist.items())), "n_ops": sum(hist.values()), "float_ops": dict(float_ops),
            "input_shape": inp["shape"].tolist(), "input_dtype": inp["dtype"].__name__,
            "output_dtype": out["dtype"].__name__}


def run_tflite(path: Path, images_nchw, card):
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    nhwc = list(inp["shape"]) != list(card.image_input.shape)
    x = images_nchw.transpose(0, 2, 3, 1) if nhwc else images_nchw
    iscale, izp = inp["quantization"]
    oscale, ozp = out["quantization"]
    preds = []
    for img in x:
        img = img[None]
        if inp["dtype"] != np.float32:
            img = np.clip(np.round(img / iscale + izp), -128, 127).astype(inp["dtype"])
        it.set_tensor(inp["index"], img)
        it.invoke()
        y = it.get_tensor(out["index"]).astype(np.float64)
        preds.append((y - ozp) * oscale if out["dtype"] != np.float32 else y)
    return np.concatenate(preds), "NHWC" if nhwc else "NCHW"


# ---------------------------------------------------------------- driver

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx2tf", default="/tmp/o2t/bin/onnx2tf", help="onnx2tf CLI of the scratch venv")
    ap.add_argument("--work", default="/tmp/tflite_routes", help="artifacts, logs and results.json")
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--worker", nargs=5, metavar=("ROUTE", "MODEL", "PREC", "OUT", "CALIB"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return

    import numpy as np

    from edgekit.data.metrics import angular_error_deg
    from edgekit.evalset import to_vectors
    from edgekit.models.evaluate import predict

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    have_o2t = Path(args.onnx2tf).is_file()
    sandbox = ["unshare", "-n"] if shutil.which("unshare") and subprocess.run(
        ["unshare", "-n", "true"], capture_output=True).returncode == 0 else []
    results = []
    for name in args.models:
        model, card, images, truth, calib = model_and_sets(name)
        calib_path = work / f"{name}-calib-nchw.npy"
        np.save(calib_path, calib)
        np.save(work / f"{name}-calib-nhwc.npy", calib.transpose(0, 2, 3, 1))
        ref = to_vectors(predict(model, images), card)
        ref_err = float(angular_error_deg(ref, truth).mean())
        results.append({"route": "PyTorch", "model": name, "precision": "fp32", "error_deg": ref_err})

        jobs = []
        for prec in ("fp32", "int8", "int8-strict"):
            out = work / f"{name}-litert-{prec}.tflite"
            cmd = [sys.executable, __file__, "--worker", "litert", name, prec, str(out), str(calib_path)]
            jobs.append(("litert-torch", prec, [cmd], out))
        if have_o2t:
            onnx = work / f"{name}.onnx"
            export = [sys.executable, __file__, "--worker", "onnx", name, "fp32", str(onnx), "-"]
            for prec in ("fp32", "int8"):
                odir = work / f"{name}-onnx2tf-{prec}"
                shutil.rmtree(odir, ignore_errors=True)
                o2t = sandbox + [args.onnx2tf, "-i", str(onnx), "-o", str(odir)]
                if prec == "int8":
                    o2t += ["-oiqt", "-cind", card.image_input.name, str(work / f"{name}-calib-nhwc.npy"),
                            "[[[[0.0]]]]", "[[[[1.0]]]]"]
                out = odir / f"{name}_{'integer_quant' if prec == 'int8' else 'float32'}.tflite"
                jobs.append(("onnx2tf", prec, [export, o2t], out))

        for route, prec, cmds, out in jobs:
            row = {"route": route, "model": name, "precision": prec, "wall_s": 0.0, "cpu_s": 0.0, "rss_mib": 0.0, "steps": [],
                   "load1_before": os.getloadavg()[0]}
            for i, cmd in enumerate(cmds):
                log = work / f"{name}-{route}-{prec}-{i}.log"
                # onnx2tf runs the `onnxsim` CLI by name: its venv's bin/ must be on PATH
                step_env = {**env, "PATH": f"{Path(args.onnx2tf).parent}:{env.get('PATH', '')}"} if route == "onnx2tf" else env
                m = run_measured(cmd, log, step_env)
                row["wall_s"] += m["wall_s"]
                row["cpu_s"] += m["cpu_s"]
                row["rss_mib"] = max(row["rss_mib"], m["rss_mib"])
                row["steps"].append({"cmd": " ".join(cmd[:4]), **m, "log": str(log)})
                text = log.read_text(errors="replace")
                row.setdefault("download_hits", 0)
                row["download_hits"] += sum(text.lower().count(w) for w in ("download", "urlopen", "http://", "https://"))
                if m["rc"] != 0:
                    row["error"] = text[-2000:]
                    break
                if "--worker" in cmd:
                    row["steps"][-1]["inner_s"] = next(json.loads(ln)["inner_s"] for ln in reversed(text.splitlines())
                                                       if ln.startswith('{"inner_s"'))
                print(f"{name} {route} {prec} step {i}: {m['wall_s']:.1f} s wall, {m['cpu_s']:.1f} s CPU, {m['rss_mib']:.0f} MiB", file=sys.stderr)
            if "error" not in row:
                row["size_kib"] = out.stat().st_size / 1024
                row.update(inspect(out))
                if route == "onnx2tf" and prec == "int8":
                    row["siblings"] = {p.name: round(p.stat().st_size / 1024, 1) for p in sorted(out.parent.glob("*.tflite"))}
                pred, layout = run_tflite(out, images, card)
                vec = to_vectors(pred, card)
                diff = angular_error_deg(vec, ref)
                row.update(layout=layout, error_deg=float(angular_error_deg(vec, truth).mean()),
                           diff_mean_deg=float(diff.mean()), diff_max_deg=float(diff.max()), artifact=str(out))
            results.append(row)
            if route == "onnx2tf" and prec == "int8" and "error" not in row:  # same run: the int8-I/O sibling
                full = out.parent / f"{name}_full_integer_quant.tflite"
                sib = {**row, "precision": "int8 (int8 I/O)", "size_kib": full.stat().st_size / 1024, **inspect(full)}
                pred, sib["layout"] = run_tflite(full, images, card)
                vec = to_vectors(pred, card)
                diff = angular_error_deg(vec, ref)
                sib.update(error_deg=float(angular_error_deg(vec, truth).mean()), diff_mean_deg=float(diff.mean()),
                           diff_max_deg=float(diff.max()), artifact=str(full))
                results.append(sib)
            (work / "results.json").write_text(json.dumps(results, indent=1))
    print(table(results))


def table(results: list[dict]) -> str:
    lines = ["| model | route | precision | convert wall / CPU s | peak RSS MiB | size KiB | input | ops (count) "
             "| float ops left in INT8 | error deg | diff from torch mean / max deg |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if r["route"] == "PyTorch":
            lines.append(f"| {r['model']} | PyTorch reference | fp32 | | | | NCHW | | | {r['error_deg']:.3f} | |")
            continue
        if "error" in r:
            lines.append(f"| {r['model']} | {r['route']} | {r['precision']} | failed: "
                         f"{r['error'].strip().splitlines()[-1][:120]} | | | | | | | |")
            continue
        ops = ", ".join(f"{k} {v}" for k, v in r["ops"].items())
        floats = ", ".join(f"{k} {v}" for k, v in r["float_ops"].items()) or ("none" if "int8" in r["precision"] else "")
        lines.append(f"| {r['model']} | {r['route']} | {r['precision']} | {r['wall_s']:.1f} / {r['cpu_s']:.1f} | {r['rss_mib']:.0f} "
                     f"| {r['size_kib']:.0f} | {r['layout']} {r['input_dtype']} | {ops} | {floats} "
                     f"| {r['error_deg']:.3f} | {r['diff_mean_deg']:.2g} / {r['diff_max_deg']:.2g} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
