"""NVML-measured GPU energy per inference of the shipped GazeResNet18 (PyTorch, CUDA), with edgekit's meter.

Run on a machine with an NVIDIA GPU: python benchmarks/nvml_energy.py. Windows of at least 2 s, idle power
over 2 s subtracted; a reading whose counter did not advance or whose dynamic energy is not positive is
printed as "not measured" with the reason.
"""

from __future__ import annotations

import platform

import torch

from edgekit.energy.meters import NvmlSource, measure
from edgekit.models.io import load_shipped


def main() -> None:
    model, card = load_shipped("gazeresnet18")
    model = model.cuda().eval()
    source = NvmlSource()
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, host {platform.node()}")
    print("| batch | precision | inferences | window (s) | dynamic uJ/inference | total uJ/inference | how |")
    print("|---|---|---|---|---|---|---|")
    for batch in (1, 256):
        for dtype in (torch.float32, torch.float16):
            m = model.to(dtype)
            x = torch.randn(batch, *card.image_input.shape[1:], device="cuda", dtype=dtype)

            def step():
                with torch.inference_mode():
                    m(x)
                torch.cuda.synchronize()

            for _ in range(20):
                step()
            r = measure(source, step, min_window_s=2.0, idle_s=2.0)
            per = lambda v: "-" if v is None else f"{v / batch:.1f}"  # noqa: E731
            print(f"| {batch} | {str(dtype).split('.')[-1]} | {r.inferences * batch} | {r.window_s:.2f} | "
                  f"{per(r.dynamic_uj_per_inference)} | {per(r.total_uj_per_inference)} | {r.how} |")


if __name__ == "__main__":
    main()
