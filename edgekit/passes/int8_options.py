"""Options shared by the passes that apply edgekit's INT8 plan (ptq for ONNX, to_tflite): observer and mixed precision."""

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
