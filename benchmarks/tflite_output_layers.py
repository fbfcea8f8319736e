"""XNNPACK INT8: the layer writing the model's output in float or INT8 (issue 21, item 2).

LiteRT's and XNNPACK's INT8 fully connected and conv write INT8, so a head that writes the model's output (the zoo's
MPIIGaze, PreActResNet and Gaze360 models regress pitch and yaw straight to the output) rounded it to 8 bits and
clipped it at its calibrated range: every unseen image whose gaze lay beyond the calibration extremes was clipped.
`output_layers: float` (the default since 2026-12-05) leaves such a layer float, reading its INT8 input dequantized;
onnx-int8 gets the same from an integer Gemm with a float output (qdq._float_outputs_for_float_consumers). Per model,
in one run, for LiteRT (tflite-int8) and ExecuTorch (executorch-int8): FP32, INT8 with `output_layers` float and
int8, and for the models whose head an op computes on first (an output normalisation) that head kept float
(keep_float), which output_layers does not do; differences from the runtime's FP32 artifact on the unseen samples,
latency interleaved in blocks (batch 1, 1 thread), and the layers the plan left float.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tflite_output_layers.py [--models mpiigaze_lenet,tinygaze]
         [--avx2-only] [--out benchmarks/tflite_output_layers.md]
Writes the Markdown and a JSON of every number next to it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from single_channel_convs import bench_option, xnnpack_markdown  # noqa: E402
from tflite_fixed_output import run  # noqa: E402

# the last layer of the models whose output a normalisation computes (not an output layer by output_layers' rule)
NORMALISED_HEADS = {"tinygaze": "head", "gazeresnet18": "head", "itracker": "fc2", "mobilegaze": "fc",
                    "gaze_transformer": "fc", "stn_gaze": "fc"}


# L2CS's two bin heads, each read by a softmax expectation (also not output layers by that rule)
EXPECTATION_HEADS = {"l2cs_bins": ["fc_pitch", "fc_yaw"]}


def bench(name: str, tmp: Path, unseen: int, runs: int) -> dict:
    head = NORMALISED_HEADS.get(name)
    more = {f"normalised head {head} float (keep_float)": {"keep_float": [head]}} if head else None
    if name in EXPECTATION_HEADS:
        heads = EXPECTATION_HEADS[name]
        more = {f"expectation heads {', '.join(heads)} float (keep_float)": {"keep_float": heads}}
    return bench_option(name, tmp, unseen, runs, "output_layers", more)


markdown = xnnpack_markdown("XNNPACK INT8: the layer writing the model's output in float or INT8",
                            "tflite_output_layers.py")


def main() -> None:
    run(__doc__, bench, markdown, "mpiigaze_lenet,preact_resnet_gaze,gaze360_temporal,tinygaze,gazeresnet18,itracker,"
        "mobilegaze,gaze_transformer,stn_gaze,l2cs_bins", "tflite_output_layers.md", masks=True)


if __name__ == "__main__":
    main()
