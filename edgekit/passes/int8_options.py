"""Options shared by the passes that apply edgekit's INT8 plan (ptq for ONNX, to_tflite, to_executorch): observer and
mixed precision; XnnpackInt8Options adds what only the XNNPACK-run artifacts (TFLite, ExecuTorch) need."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edgekit.passes.base import Pass
from edgekit.quant.plan import SEARCHED_OBSERVERS


class Int8Options(Pass):
    """Not a pass itself (no name): ptq and to_tflite inherit these fields."""

    observer: Literal["minmax", "percentile", "entropy", "mse", "histogram"] = Field("percentile", description="activation range observer")
    percentile: float = Field(99.999, gt=50, le=100, description="for observer=percentile (99.999: on 2,000 unseen "
                              "images 99.99 clipped the rare large activations of a few, the largest differences; "
                              "benchmarks/int8_peers.md)")
    observer_search: bool = Field(True, description="judge every observer's all-INT8 plan "
                                  f"({', '.join(SEARCHED_OBSERVERS)}) on the calibration samples and keep the closest to "
                                  "FP32 among those that hold every target (the closest to the targets when none does), "
                                  "before mixed precision")
    keep_float: list[str] = Field(default_factory=list, description="module-name patterns (fnmatch) kept in float")
    mixed_precision: bool = Field(True, description="return the most sensitive layers to float until the target holds")
    target_error_increase_deg: float = Field(0.3, gt=0, description="mixed precision aims at this mean increase")
    target_p95_diff_deg: float | None = Field(None, gt=0, description="mixed precision also aims at this p95 difference "
                                              "from FP32 (calibration set); unset: the recipe's gates.p95_diff_deg")
    target_max_diff_deg: float | None = Field(None, gt=0, description="mixed precision also aims at this largest difference "
                                              "from FP32 (calibration set); unset: the recipe's gates.max_diff_deg")
    min_int8_mac_fraction: float = Field(0.9, ge=0, le=1, description="mixed precision keeps at least this INT8 MAC share")
    sensitivity_samples: int = Field(256, ge=16, description="calibration samples used to score candidates")


class XnnpackInt8Options(Int8Options):
    """Not a pass itself: to_tflite and to_executorch inherit these (their artifacts run on XNNPACK's kernels)."""

    # off by default here: the torch fake-quantization judge quantizes conv and linear inputs only, not the converter's
    # other INT8 tensors (residual adds, pooling); on GazeResNet18 it chose minmax, whose TFLite artifact was further from
    # FP32 on 2,000 unseen images (mean 0.463 deg against 0.395 for the configured percentile; benchmarks/int8_peers.md).
    # A judge on the converted PT2E graph (every INT8 tensor) was no better: its pick was further from FP32 in the
    # TFLite artifact on 5 of 10 models, closer on 1 (benchmarks/tflite_observers.md, rerun 2026-12-04)
    observer_search: bool = Field(False, description="judge every observer's all-INT8 plan in torch fake quantization "
                                  "and keep the closest to FP32 (off: that judge leaves the converter's other INT8 tensors "
                                  "float)")
    # float by default since 2026-12-05: XNNPACK's INT8 convolutions round the channels each kernel tap reads up to a
    # multiple of 8 (its qs8 igemm "c8" kernels), so a convolution over one input channel (a grayscale eye image's
    # first conv) does 8x its multiply-accumulates in INT8 (benchmarks/int8_ceiling.md: GazeResNet18's stem alone, 0.81
    # ms INT8 against 0.15 float on AVX2 kernels)
    single_channel_convs: Literal["float", "int8"] = Field(
        "float", description="int8 models only: a convolution over one input channel (a grayscale image's first conv) "
        "in float, or int8 (XNNPACK pads each kernel tap to 8 input channels: 8x the work); float only while "
        "min_int8_mac_fraction still holds (benchmarks/int8_ceiling.md)")
    # float by default since 2026-12-05: LiteRT's and XNNPACK's INT8 fully connected write INT8, so a head writing the
    # model's output rounded it to 8 bits and clipped it at the calibrated range (benchmarks/tflite_output_layers.md)
    output_layers: Literal["float", "int8"] = Field(
        "float", description="int8 models only: a layer whose output is the model's output (a head regressing pitch "
        "and yaw) in float, reading its INT8 input dequantized, or int8 (its output rounded to 8 bits and clipped at the "
        "calibrated range); float only while min_int8_mac_fraction still holds")
