"""Channel-prune the shipped GazeResNet18 at 30/50/70% and fine-tune on a GPU; writes module folders
(module.json + weights.safetensors) that `edgekit compile FOLDER` takes. Run where CUDA is available:
python benchmarks/prune_gpu.py OUT_DIR [steps]
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import torch

from edgekit.finetune import fine_tune
from edgekit.models.io import load_shipped
from edgekit.torch_module import save_module


def main(out: Path, steps: int) -> None:
    import torch_pruning as tp

    base, card = load_shipped("gazeresnet18")
    for ratio in (0.3, 0.5, 0.7):
        module = copy.deepcopy(base).eval()
        example = torch.zeros(card.image_input.shape)
        tp.pruner.MetaPruner(module, example, importance=tp.importance.MagnitudeImportance(p=1), pruning_ratio=ratio,
                             ignored_layers=[module.head]).step()
        start = time.time()
        fine_tune(module, card, steps, 128, 1e-3, device="cuda")
        folder = save_module(module, out / f"gazeresnet18-channel{int(ratio * 100)}", card.arch, card.arch_config, [],
                             dtype=torch.float16)  # FP16 storage, like the shipped weights
        params = sum(p.numel() for p in module.parameters())
        print(f"ratio {ratio}: {params} parameters, fine-tuned {steps} steps in {time.time() - start:.1f} s -> {folder}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 3000)
