"""The `torch` artifact: a folder with weights.safetensors and module.json saying how to rebuild the module.

module.json holds the architecture (a built-in name or `package.module:Class`), its constructor
arguments, and the structural edits passes made (BatchNorms folded into convolutions), so a module is
rebuilt from code plus tensors: nothing is unpickled.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import torch
from torch import nn

from edgekit.errors import BadInputError
from edgekit.fileio import atomic_write_text
from edgekit.models.io import load_into, read_state_dict, save_weights
from edgekit.models.registry import BUILTINS, build

WEIGHTS, SPEC = "weights.safetensors", "module.json"


def build_arch(arch: str, config: dict) -> nn.Module:
    """A built-in name, or `package.module:Class` constructed with `config` as keyword arguments."""
    if arch.lower() in BUILTINS:
        return build(arch, config)
    if ":" not in arch:
        raise BadInputError(f"--arch {arch!r} is neither a built-in ({', '.join(BUILTINS)}) nor package.module:Class; "
                            "fix: pass one of those")
    module_name, _, cls_name = arch.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as exc:
        raise BadInputError(f"--arch {arch}: cannot import ({exc}); fix: make the module importable (PYTHONPATH)") from None
    try:
        return cls(**config)
    except TypeError as exc:
        raise BadInputError(f"--arch {arch}: constructor rejected {config} ({exc}); fix: pass --arch-config JSON") from None


def get_submodule_parent(root: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent, _, leaf = name.rpartition(".")
    return (root.get_submodule(parent) if parent else root), leaf


def apply_bn_folds(module: nn.Module, folds: list[list[str]]) -> nn.Module:
    """Give each folded conv a bias and replace its BatchNorm with Identity (the structure after fold_bn)."""
    for conv_name, bn_name in folds:
        conv = module.get_submodule(conv_name)
        if conv.bias is None:
            conv.bias = nn.Parameter(torch.zeros(conv.out_channels, dtype=conv.weight.dtype))
        parent, leaf = get_submodule_parent(module, bn_name)
        setattr(parent, leaf, nn.Identity())
    return module


def layer_sizes(module: nn.Module) -> dict[str, list[int]]:
    """Channel/feature sizes of every conv, linear and BatchNorm (what structured pruning changes)."""
    sizes = {}
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d):
            sizes[name] = [m.in_channels, m.out_channels, m.groups]
        elif isinstance(m, nn.Linear):
            sizes[name] = [m.in_features, m.out_features]
        elif isinstance(m, nn.BatchNorm2d):
            sizes[name] = [m.num_features]
    return sizes


def apply_layer_sizes(module: nn.Module, sizes: dict[str, list[int]]) -> nn.Module:
    """Rebuild layers whose sizes differ (after channel pruning) with the same hyper-parameters otherwise."""
    for name, want in sizes.items():
        m = module.get_submodule(name)
        if layer_sizes_of(m) == want:
            continue
        if isinstance(m, nn.Conv2d):
            new = nn.Conv2d(want[0], want[1], m.kernel_size, m.stride, m.padding, m.dilation, want[2], m.bias is not None,
                            m.padding_mode)
        elif isinstance(m, nn.Linear):
            new = nn.Linear(want[0], want[1], m.bias is not None)
        else:
            new = nn.BatchNorm2d(want[0], m.eps, m.momentum, m.affine, m.track_running_stats)
        parent, leaf = get_submodule_parent(module, name)
        setattr(parent, leaf, new)
    return module


def layer_sizes_of(m: nn.Module) -> list[int]:
    return next(iter(layer_sizes(nn.Sequential(m)).values()))


def save_module(module: nn.Module, folder: Path, arch: str, config: dict, folds: list[list[str]],
                dtype: torch.dtype = torch.float32) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(module, folder / WEIGHTS, dtype)
    spec = {"arch": arch, "arch_config": config, "bn_folds": folds}
    fresh = apply_bn_folds(build_arch(arch, config), folds)
    if layer_sizes(fresh) != layer_sizes(module):
        spec["layer_sizes"] = layer_sizes(module)  # structurally pruned: sizes differ from the architecture's
    atomic_write_text(folder / SPEC, json.dumps(spec, indent=2) + "\n")
    return folder


def load_module(folder: Path) -> tuple[nn.Module, dict]:
    spec = json.loads((folder / SPEC).read_text())
    module = build_arch(spec["arch"], spec["arch_config"])
    if "layer_sizes" in spec:
        module = apply_layer_sizes(module, spec["layer_sizes"])
    module = apply_bn_folds(module, spec.get("bn_folds", []))
    return load_into(module, read_state_dict(folder / WEIGHTS), str(folder)), spec
