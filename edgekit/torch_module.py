"""The `torch` artifact: a folder with weights.safetensors and module.json saying how to rebuild the module.

module.json holds the architecture (a built-in name or `package.module:Class`), its constructor
arguments, and the structural edits passes made (BatchNorms folded into convolutions), so a module is
rebuilt from code plus tensors: nothing is unpickled.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import inspect
import json
from pathlib import Path

import torch
from torch import nn

from edgekit.errors import BadInputError, EdgekitError, first_line
from edgekit.fileio import atomic_write_text
from edgekit.models.io import load_into, read_state_dict, save_weights
from edgekit.models.registry import BUILTINS, build, builtin
from edgekit.quiet import quiet

WEIGHTS, SPEC = "weights.safetensors", "module.json"


# modules handed to edgekit.compile as live objects, by their architecture name (see live_arch): passes rebuild a
# module from its architecture, and a live object has no constructor edgekit can call, so they copy it instead
_LIVE: dict[str, nn.Module] = {}
LIVE_PREFIX = "live:"


def live_arch(module: nn.Module) -> str:
    """Register an in-process module as an architecture: `live:<class>:<digest of its structure and code>`.

    The name is stable across runs for the same class code and layer structure, so pass caches are shared; the
    template is a deep copy (later edits to the caller's object do not leak in)."""
    cls = type(module)
    try:
        code = inspect.getsource(cls)
    except (OSError, TypeError):  # defined in a REPL or a notebook cell: the structure alone names it
        code = ""
    digest = hashlib.sha256(f"{cls.__module__}.{cls.__qualname__}\n{module!r}\n{code}".encode()).hexdigest()[:16]
    name = f"{LIVE_PREFIX}{cls.__qualname__}:{digest}"
    _LIVE[name] = copy.deepcopy(module).float().eval()
    return name


def build_arch(arch: str, config: dict) -> nn.Module:
    """A built-in name, a live module registered by `live_arch`, or `package.module:Class` constructed with `config`
    as keyword arguments.

    Only call this with an architecture the user named (command line, API or recipe) or a built-in: importing
    `package.module` runs its code. `load_module` enforces that for architectures read from module.json.
    """
    if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
        raise BadInputError(f"--arch-config for {arch} must be a JSON object of constructor arguments, got {config!r}; "
                            "fix: e.g. '{\"width\": 8}'")
    if arch in _LIVE:
        return copy.deepcopy(_LIVE[arch])
    if arch.lower() in BUILTINS:
        spec = builtin(arch)
        cls, config = spec.cls, {**spec.config, **config}
    elif arch.startswith(LIVE_PREFIX):
        raise BadInputError(f"architecture {arch!r} is a module passed to edgekit.compile in another process; fix: pass "
                            "the module again, or save it with torch.export and pass the .pt2")
    elif ":" not in arch:
        raise BadInputError(f"--arch {arch!r} is neither a built-in ({', '.join(BUILTINS)}) nor package.module:Class; "
                            "fix: pass one of those")
    else:
        cls = _import_class(arch)
    _check_config(arch, cls, config)
    try:
        module = build(arch, config) if arch.lower() in BUILTINS else cls(**config)
    except EdgekitError:
        raise
    except (Exception, SystemExit) as exc:  # user code can raise anything
        raise BadInputError(f"--arch {arch}: constructor failed with {config} ({first_line(exc, 200)}); "
                            "fix: pass the constructor arguments it takes with --arch-config JSON") from None
    if not isinstance(module, nn.Module):
        raise BadInputError(f"--arch {arch} built a {type(module).__name__}, not a torch.nn.Module; fix: name the model's class")
    return module


def _import_class(arch: str):
    module_name, _, cls_name = arch.partition(":")
    try:
        with quiet():  # an import may print or warn
            cls = getattr(importlib.import_module(module_name), cls_name)
    except EdgekitError:
        raise
    except (Exception, SystemExit) as exc:  # ImportError, AttributeError, or whatever the module raises while importing
        raise BadInputError(f"--arch {arch}: cannot import ({type(exc).__name__}: {first_line(exc, 200)}); fix: make "
                            "package.module importable (PYTHONPATH) and check the class name") from None
    if not callable(cls):
        raise BadInputError(f"--arch {arch}: {cls_name} is a {type(cls).__name__}, not a class; fix: name the model's class")
    return cls


def _check_config(arch: str, cls, config: dict) -> None:
    """Unknown keys and values whose type differs from the constructor default's, named before constructing."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # no signature to check against (builtins, C extensions)
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    takes = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key, value in config.items():
        if key not in takes:
            raise BadInputError(f"--arch-config key {key!r} is not an argument of {arch} (it takes {', '.join(takes) or 'none'}); "
                                "fix: correct or drop that key")
        default = params[key].default
        want = _json_type(default)
        if want is not None and _json_type(value) != want and not (want == "number" and _json_type(value) == "integer"):
            raise BadInputError(f"--arch-config {key}={json.dumps(value)} for {arch}: expected {want} like its default "
                                f"{json.dumps(default if not isinstance(default, tuple) else list(default))}; fix: give a {want}")


def _json_type(value) -> str | None:
    """The JSON kind of a constructor default or a config value (None: anything goes)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    return None


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


def load_module(folder: Path, *, trusted_arch: str | None = None) -> tuple[nn.Module, dict]:
    """Rebuild the module in `folder`. A module.json naming a non-built-in architecture is only imported when that
    architecture is `trusted_arch`, the one the user named for this run (ctx.card.arch): a file never chooses code."""
    spec = read_spec(folder)
    arch = spec["arch"]
    if arch.lower() not in BUILTINS and arch != trusted_arch:
        raise BadInputError(f"{folder / SPEC}: names architecture {arch!r}, which is not built-in, and edgekit imports "
                            f"code only for the --arch named for this run, never because a file says so; fix: if you "
                            f"trust that code, pass --arch {arch}")
    module = build_arch(arch, spec["arch_config"])
    try:
        if "layer_sizes" in spec:
            module = apply_layer_sizes(module, spec["layer_sizes"])
        module = apply_bn_folds(module, spec.get("bn_folds", []))
    except (AttributeError, IndexError, TypeError, ValueError) as exc:
        raise BadInputError(f"{folder / SPEC}: its layer edits do not fit {arch} ({first_line(exc, 200)}); fix: rebuild the "
                            "folder with edgekit") from None
    return load_into(module, read_state_dict(folder / WEIGHTS), str(folder)), spec


def read_spec(folder: Path) -> dict:
    """module.json, checked: one line for unreadable files, bad JSON, missing keys and wrong types."""
    path = Path(folder) / SPEC
    fix = "fix: rebuild the folder with edgekit (module.json holds arch, arch_config, bn_folds)"
    try:
        spec = json.loads(path.read_text())
    except PermissionError:
        raise BadInputError(f"{path}: permission denied; fix: make it readable (chmod +r)") from None
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file; {fix}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{path}: not valid JSON ({first_line(exc, 200)}); {fix}") from None
    problem = _spec_problem(spec)
    if problem:
        raise BadInputError(f"{path}: {problem}; {fix}")
    return spec


def _spec_problem(spec) -> str | None:
    if not isinstance(spec, dict):
        return f"holds a JSON {type(spec).__name__}, not an object"
    for key, kind in (("arch", str), ("arch_config", dict)):
        if key not in spec:
            return f"missing key {key!r}"
        if not isinstance(spec[key], kind):
            return f"{key} is {type(spec[key]).__name__}, not {kind.__name__}"
    folds = spec.get("bn_folds", [])
    if not isinstance(folds, list) or not all(isinstance(f, list) and len(f) == 2 and all(isinstance(n, str) for n in f)
                                              for f in folds):
        return "bn_folds is not a list of [conv, batchnorm] name pairs"
    sizes = spec.get("layer_sizes", {})
    if not isinstance(sizes, dict) or not all(isinstance(v, list) and all(type(n) is int and n > 0 for n in v)
                                              for v in sizes.values()):
        return "layer_sizes is not an object of positive integer lists"
    return None


def torch_runner(module: nn.Module):
    """The reference's runner for a module: input name -> array in, output 0 as float64 out (no autograd).

    A module with 2-D convolutions runs as a channels-last copy (its weights and 4-D inputs in NHWC): the same model on
    the same inputs, through oneDNN's convolutions rather than the im2col path torch takes for a single image
    (GazeResNet18 at batch 1, one thread: 12.8 -> 7.2 ms per image, outputs within 3e-7 of the contiguous run's; the
    zoo's small models the same speed either way). A module that cannot run so (a .view() of a convolution's output
    raises in that layout) runs as it came, from then on."""
    import numpy as np

    fast: list = []  # the channels-last copy, made on the first call (most runners built never run: a prefetch did)

    def call(m: nn.Module, arrays, channels_last: bool):
        tensors = [torch.from_numpy(np.ascontiguousarray(v)) for v in arrays]
        if channels_last:
            tensors = [t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in tensors]
        with torch.inference_mode():
            return m(*tensors).double().numpy()

    def run(inputs: dict) -> np.ndarray:
        if not fast:
            fast.append(_channels_last_copy(module))
        if fast[0] is not None:
            try:
                return call(fast[0], inputs.values(), True)
            except Exception:  # noqa: BLE001 - the layout, or a real error the plain run below raises again
                fast[0] = None
        return call(module, inputs.values(), False)

    return run


def _channels_last_copy(module: nn.Module) -> nn.Module | None:
    """A channels-last copy of a module with 2-D convolutions; None for one without, or one that cannot be copied."""
    if isinstance(module, torch.jit.ScriptModule) or not any(isinstance(m, nn.Conv2d) for m in module.modules()):
        return None
    try:
        return copy.deepcopy(module).to(memory_format=torch.channels_last)
    except Exception:  # noqa: BLE001 - a module deepcopy cannot copy runs as it came
        return None
