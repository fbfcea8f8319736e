"""XNNPACK INT8: convolutions over one input channel in float or INT8 (issue 21, item 3).

XNNPACK's INT8 convolution kernels round the input channels each kernel tap reads up to a multiple of 8 (its qs8
igemm "c8" kernels), so a convolution over one input channel, the first conv of a grayscale eye model, does 8x its
multiply-accumulates in INT8 (benchmarks/int8_ceiling.md: GazeResNet18's stem alone 0.81 ms INT8, 0.15 ms float on
AVX2 kernels). Per model, in one run, for LiteRT (tflite-int8) and ExecuTorch (executorch-int8): the FP32 artifact,
the INT8 artifact with `single_channel_convs: float` (the default since 2026-12-05) and with `int8`; each variant's
difference from its runtime's FP32 artifact on the unseen samples and its latency, interleaved in blocks (batch 1,
1 thread), and the layers the plan left float.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/single_channel_convs.py [--models gazeresnet18,tinygaze]
         [--avx2-only] [--out benchmarks/single_channel_convs.md]
Writes the Markdown and a JSON of every number next to it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import int8_peers as peers  # noqa: E402
from tflite_fixed_output import header, run, tables  # noqa: E402

RUNTIMES = {"LiteRT": ("tflite", "to_tflite"), "ExecuTorch": ("executorch", "to_executorch")}
SHIPPED = "float"


def float_layers(artifact: Path) -> str:
    report = json.loads((artifact.parent / "report.json").read_text())
    return ", ".join(layer["name"] for layer in (report.get("quantization") or {}).get("float_layers", [])) or "none"


def bench(name: str, tmp: Path, unseen: int, runs: int) -> dict:
    return bench_option(name, tmp, unseen, runs, "single_channel_convs")


def bench_option(name: str, tmp: Path, unseen: int, runs: int, option: str, more: dict | None = None) -> dict:
    """One model on both XNNPACK runtimes: FP32, the INT8 target with `option` float (shipped) and int8, and `more`
    variants ({label: the pass's options}), each against its runtime's FP32 artifact on the unseen samples and
    interleaved in latency (shared with benchmarks/tflite_output_layers.py)."""
    import edgekit.compiler as ek
    from edgekit.backends.executorch.runner import ExecuTorchRunner
    from edgekit.backends.tflite.runner import LiteRTRunner
    from edgekit.evalset import default_eval_set, model_inputs
    from edgekit.source import load_source

    src = peers.model_source(name)
    loaded = load_source(src["model"], tmp / "load", arch=src.get("arch"), card=Path(src["card"]) if "card" in src else None)
    evals = model_inputs(loaded.card, default_eval_set(loaded.card, unseen, seed=peers.UNSEEN_SEED))
    rows = []
    for runtime, (target, pass_name) in RUNTIMES.items():
        variants = {f"{runtime} FP32": ek.compile(**src, target=target, out=tmp / target, cache=False).artifact}
        changes = {f"{option}: {value}" + (" (shipped)" if value == SHIPPED else ""): {option: value}
                   for value in ("float", "int8")} | (more or {})
        for i, (change, options) in enumerate(changes.items()):
            recipe = peers.recipe_with(f"{target}-int8", pass_name, options, tmp)
            label = f"{runtime} INT8, {change}"
            variants[label] = peers.attempt(label, lambda: ek.compile(**src, target=str(recipe), out=tmp / f"{target}-{i}",
                                                                      cache=False, force=True).artifact)
        make = LiteRTRunner if runtime == "LiteRT" else ExecuTorchRunner
        measured = peers.measure_runtime(runtime, variants, make, evals, loaded.card, runs)
        for row in measured:
            if "failed" not in row:
                row["x_fp32"] = measured[0]["p50_ms"] / row["p50_ms"]
                row["float_layers"] = float_layers(variants[row["variant"]]) if "INT8" in row["variant"] else ""
        rows += measured
    return {"model": name, "rows": rows, "unseen": unseen}


def xnnpack_markdown(title: str, script: str):
    """The Markdown writer of one of these benchmarks (shared with benchmarks/tflite_output_layers.py)."""

    def markdown(results: list[dict], host: dict, version: str) -> str:
        import importlib.metadata

        from tests import avx2_only

        masked = ("Run with --avx2-only: CPUID masked (tests/avx2_only.c), so XNNPACK ran its AVX2 kernels, as on a CPU "
                  "without AVX-512 and VNNI. " if avx2_only.masked() else "")
        lines = header(title, script, results, host, f"{version}, ExecuTorch {importlib.metadata.version('executorch')}",
                       masked + "Each runtime's variants are measured against its own FP32 artifact, interleaved with "
                       "each other. Float layers: the plan's (report.json).")
        lines += tables(results, ["x FP32", "float layers"], lambda r: [f"{r['x_fp32']:.2f}", r["float_layers"]])
        return "\n".join(lines)
    return markdown


markdown = xnnpack_markdown("XNNPACK INT8: convolutions over one input channel in float or INT8", "single_channel_convs.py")


def main() -> None:
    run(__doc__, bench, markdown, "gazeresnet18,tinygaze,gaze360_temporal,gaze_transformer,l2cs_bins,mobilegaze,"
        "preact_resnet_gaze,stn_gaze", "single_channel_convs.md", masks=True)


if __name__ == "__main__":
    main()
