"""Load what the user asks to compile: a built-in name, weights + --arch, TorchScript, torch.export .pt2 or ONNX.

Whatever the kind, the result is a model card (input spec, output convention, preprocessing), the
first artifact of the pipeline, and the reference: the model exactly as loaded, before any pass,
which every artifact is verified against. Nothing untrusted is unpickled.
"""

from __future__ import annotations

import dataclasses
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgekit._optional import require
from edgekit.artifact import Artifact, Format
from edgekit.backends.onnx.export import load_torchscript
from edgekit.backends.onnx.runner import OnnxRunner
from edgekit.errors import BadInputError
from edgekit.models.card import InputSpec, ModelCard, OutputSpec
from edgekit.models.io import check_readable, load_into, load_shipped, read_state_dict
from edgekit.models.registry import BUILTINS, builtin
from edgekit.safe_pt2 import load_exported_program
from edgekit.torch_module import build_arch, live_arch, load_module, save_module, torch_runner
from edgekit.trace_check import check_no_data_dependent_branches

Runner = Callable[[dict[str, np.ndarray]], np.ndarray]
EVAL_TENSOR_LIMIT = 4 << 30  # bytes of float32 evaluation inputs edgekit will allocate


@dataclass
class LoadedModel:
    kind: str  # builtin, weights, torchscript, exported_program, onnx
    source: str
    card: ModelCard
    artifact: Artifact
    reference: Runner
    module: object | None = None  # the torch module (None for .onnx inputs)
    notes: tuple[str, ...] = ()  # for the report: what loading found (values frozen by tracing)


def parse_input_shapes(values: list[str] | None) -> list[InputSpec] | None:
    """`1x1x40x64` or `image=1x1x36x60` (repeatable). Inputs after the first are fed by their name: `head_pose` (or any
    1x2 input) the head-pose vector, any other name the set's extra array of that name (second_eye, face, face_grid
    are rendered for synthetic sets)."""
    if not values:
        return None
    specs = []
    for i, text in enumerate(values):
        given, _, dims = text.rpartition("=")
        name = given or ("image" if i == 0 else f"input{i}")
        try:
            shape = [int(d) for d in dims.lower().split("x")]
            if not shape or min(shape) < 1:
                raise ValueError
        except ValueError:
            raise BadInputError(f"--input-shape {text!r} is not like 1x1x40x64 or name=1x2; fix: give positive sizes joined by x") from None
        if shape[0] != 1:
            raise BadInputError(f"--input-shape {text!r}: batch must be 1 (artifacts are exported for batch 1); fix: 1x...")
        if i == 0:
            source = "image"
        elif name == "head_pose" or shape == [1, 2]:
            source = "head_pose"
        elif given.isidentifier():
            source = given
        else:
            raise BadInputError(f"--input-shape {text!r}: a further input is fed from the set's extra array of its name, "
                                "so it needs a name like face=1x1x32x32; fix: name it (letters, digits, _)")
        layout = {5: "NTCHW", 4: "NCHW"}.get(len(shape), "NC")
        image_like = len(shape) >= 4
        specs.append(InputSpec(name=name, shape=shape, layout=layout if image_like else "NC",
                               color="gray" if image_like else "none", source=source))
    return specs


def refuse_huge_inputs(specs: list[InputSpec] | None, eval_samples: int) -> None:
    """Refuse before allocating anything when the evaluation tensors would pass EVAL_TENSOR_LIMIT."""
    if not specs:
        return
    need = eval_samples * sum(int(np.prod(s.shape, dtype=object)) for s in specs) * 4
    if need > EVAL_TENSOR_LIMIT:
        shapes = ", ".join(f"{s.name}={'x'.join(map(str, s.shape))}" for s in specs)
        raise BadInputError(f"input {shapes}: {eval_samples} evaluation samples of it would take {need / (1 << 30):,.1f} GiB "
                            f"(limit {EVAL_TENSOR_LIMIT >> 30} GiB); fix: give the model's real input shape, e.g. 1x1x40x64")


def _trusted_card(card: ModelCard, arch: str | None) -> ModelCard:
    """The card's arch becomes the trusted architecture of every pass (load_module): it may only name a built-in or
    the --arch of this run, never code that a card file chose."""
    if card.arch.lower() in _builtins() or card.arch == arch or ":" not in card.arch:
        return card
    return card.model_copy(update={"arch": "external"})


def _card_for(arch: str | None, name: str, inputs: list[InputSpec] | None, convention: str | None,
              card_path: Path | None, eval_samples: int) -> ModelCard:
    if card_path is not None:
        card = ModelCard.load(card_path)
    elif arch and arch.lower() in _builtins():
        spec = builtin(arch)
        card = ModelCard(name=name, arch=arch.lower(), arch_config=spec.config, inputs=[spec.input_spec(spec.config)],
                         output=spec.output_spec(spec.config), description=spec.description)
    elif inputs is None:
        raise BadInputError(f"{name}: no model card and no --input-shape; fix: pass --input-shape 1x1x40x64 (or --card card.json)")
    else:
        card = ModelCard(name=name, arch=arch or "external", inputs=inputs, output=OutputSpec(shape=[1, 3]))
    card = _override(card, inputs, convention)
    refuse_huge_inputs(card.inputs, eval_samples)
    return card


def _override(card: ModelCard, inputs: list[InputSpec] | None, convention: str | None) -> ModelCard:
    """Apply --input-shape and --output-convention on top of a card."""
    updates: dict = {}
    if inputs is not None:
        updates["inputs"] = inputs
    if convention is not None:
        out_shape = list(card.output.shape)
        out_shape[-1] = 2 if convention == "pitchyaw_rad" else 3
        updates["output"] = OutputSpec(name=card.output.name, shape=out_shape, convention=convention)
    return card.model_copy(update=updates) if updates else card


def _builtins():
    return BUILTINS


def _check_runs(run: Runner, card: ModelCard, what: str) -> None:
    """Run once on zeros of the declared shapes: a wrong --input-shape fails here with one line."""
    zeros = {s.name: np.zeros(s.shape, np.float32) for s in card.inputs}
    try:
        out = np.asarray(run(zeros))
    except Exception as exc:  # any framework error: report its first line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:240]
        shapes = ", ".join(f"{s.name}={'x'.join(map(str, s.shape))}" for s in card.inputs)
        raise BadInputError(f"{what} does not run on input {shapes} ({first}); fix: pass the model's --input-shape") from None
    want = card.output.shape[-1]
    if out.shape[-1] != want:
        raise BadInputError(f"{what} outputs shape {tuple(out.shape)}, but a {card.output.convention} output has "
                            f"{want} values; fix: pass --output-convention (vector or pitchyaw)")


def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def _starts_like_zip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def load_source(model: str | Path | torch.nn.Module | torch.export.ExportedProgram | None, work: Path, *, arch: str | None = None, arch_config: dict | None = None,
                input_shapes: list[str] | None = None, output_convention: str | None = None,
                output_frame: str | None = None, card: Path | None = None, eval_samples: int = 512) -> LoadedModel:
    """Resolve MODEL (None = the demo) into a LoadedModel; the first artifact is written under `work`.

    No code from a model file runs: weights load as tensors only, .pt2 programs through edgekit.safe_pt2, and a
    module folder's non-built-in architecture only when `arch` names it. `eval_samples` sizes the evaluation set,
    refused beyond EVAL_TENSOR_LIMIT before anything is allocated."""
    if isinstance(model, (torch.nn.Module, torch.export.ExportedProgram)):
        loaded = _load_live(model, work, input_shapes, output_convention, card, eval_samples)
        arch = loaded.card.arch
    else:
        loaded = _load(str(model) if model is not None else None, work, arch, arch_config, input_shapes,
                       output_convention, card, eval_samples)
    the_card = _trusted_card(loaded.card, arch)
    if output_frame is not None:
        the_card = _with_frame(the_card, output_frame)
    return dataclasses.replace(loaded, card=the_card)


def _with_frame(card: ModelCard, frame: str) -> ModelCard:
    """--output-frame: which frame a temporal model's output describes (last, middle, or future horizons)."""
    if frame not in ("last", "middle", "future"):
        raise BadInputError(f"--output-frame {frame!r}; fix: use last, middle or future")
    if card.image_input.layout != "NTCHW":
        raise BadInputError(f"--output-frame {frame} describes temporal models, but {card.name} takes "
                            f"{card.image_input.layout} images; fix: drop --output-frame or give a 1xTxCxHxW --input-shape")
    return card.model_copy(update={"output": card.output.model_copy(update={"frame": frame})})


def _convention(output_convention: str | None) -> str | None:
    convention = {"vector": "unit_vector", "pitchyaw": "pitchyaw_rad", None: None}.get(output_convention, output_convention)
    if convention not in (None, "unit_vector", "pitchyaw_rad"):
        raise BadInputError(f"--output-convention {output_convention!r}; fix: use vector or pitchyaw")
    return convention


def _load_live(model, work: Path, input_shapes, output_convention, card: Path | None, eval_samples: int) -> LoadedModel:
    """A module or exported program handed over in this process (the Python API): the caller's own object, so its
    code is trusted like a built-in; the caller's object is never changed (passes work on copies)."""
    inputs = parse_input_shapes(input_shapes)
    convention = _convention(output_convention)
    if isinstance(model, torch.export.ExportedProgram):
        name = "exported_program"
        inputs = inputs or parse_input_shapes(_program_input_shapes(model))
        the_card = _card_for(None, name, inputs, convention, card, eval_samples)
        path = work / "source" / "model.pt2"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.export.save(model, path)
        return _finish("exported_program", "ExportedProgram (in memory)", the_card,
                       Artifact.create(path, Format.exported_program), torch_runner(model.module()), model.module())
    name = type(model).__name__.lower()
    arch = live_arch(model)
    if card is None and inputs is None:
        raise BadInputError(f"{type(model).__name__}: a module needs input_shape= (e.g. input_shape=(1, 1, 40, 64)) or "
                            "card=; fix: pass the shape of one input sample with batch 1")
    the_card = _card_for(None, name, inputs, convention, card, eval_samples).model_copy(update={"arch": arch,
                                                                                              "arch_config": {}})
    module = build_arch(arch, {})
    folder = save_module(module, work / "source", arch, {}, [])
    return _finish("module", f"{type(model).__name__} (in memory)", the_card, Artifact.create(folder, Format.torch),
                   torch_runner(module), module)


def _program_input_shapes(program: torch.export.ExportedProgram) -> list[str]:
    """The user inputs' shapes as exported (a dynamic dimension reads as its example size), batch forced to 1."""
    users = set(program.graph_signature.user_inputs)
    shapes = []
    for node in program.graph.nodes:
        val = node.meta.get("val") if node.op == "placeholder" and node.name in users else None
        if val is not None and hasattr(val, "shape"):
            dims = [int(d) if str(d).isdigit() else 1 for d in val.shape]
            shapes.append(f"{node.name}={'x'.join(map(str, [1, *dims[1:]]))}")
    return shapes


def _load(model, work, arch, arch_config, input_shapes, output_convention, card, eval_samples) -> LoadedModel:
    inputs = parse_input_shapes(input_shapes)
    refuse_huge_inputs(inputs, eval_samples)
    convention = _convention(output_convention)
    model = model or "tinygaze"
    path = Path(model)
    if not _exists(path) and model.lower() in _builtins():
        module, shipped = load_shipped(model.lower())
        the_card = _override(shipped, inputs, convention)
        refuse_huge_inputs(the_card.inputs, eval_samples)
        folder = save_module(module, work / "source", shipped.arch, shipped.arch_config, [])
        return _finish("builtin", model, the_card, Artifact.create(folder, Format.torch), torch_runner(module), module)
    if not _exists(path):
        raise BadInputError(f"{model}: no such file and not a built-in model ({', '.join(_builtins())}); fix: check the path")
    if path.is_dir() and _exists(path / "module.json"):
        return _load_module_folder(path, work, inputs, convention, card, arch, eval_samples)
    if path.is_dir():
        raise BadInputError(f"{path}: a folder without module.json; fix: give a model file, or an edgekit module folder "
                            "(module.json + weights.safetensors)")
    check_readable(path)
    suffix = path.suffix.lower()
    name = path.stem
    card_path = card or (path.with_suffix(".json") if path.with_suffix(".json").is_file() and suffix != ".json" else None)
    if suffix == ".onnx":
        return _load_onnx(path, work, _card_for(arch, name, inputs or _onnx_inputs(path), convention, card_path, eval_samples))
    if suffix == ".pt2":
        return _load_exported(path, work, _card_for(arch, name, inputs, convention, card_path, eval_samples))
    names = _zip_names(path) if suffix in (".pt", ".pth", ".ts", ".jit") else []
    if any("/code/" in n or n.startswith("code/") for n in names):
        return _load_torchscript(path, work, _card_for(arch, name, inputs, convention, card_path, eval_samples))
    if suffix in (".pt", ".pth", ".ts", ".jit") and not names and _starts_like_zip(path):
        raise BadInputError(f"{path}: a truncated or corrupt zip archive (TorchScript or torch.save file); fix: save or "
                            "copy the model again")
    if suffix in (".ts", ".jit"):
        raise BadInputError(f"{path}: not a TorchScript archive; fix: save the model with torch.jit.save")
    if suffix in (".safetensors", ".pt", ".pth", ".bin"):
        if not arch:
            raise BadInputError(f"{path}: a weights file needs --arch (a built-in name or package.module:Class); fix: add --arch")
        the_card = _card_for(arch, name, inputs, convention, card_path, eval_samples)
        config = {**(the_card.arch_config if arch.lower() in _builtins() else {}), **(arch_config or {})}
        module = load_into(build_arch(arch, config), read_state_dict(path), str(path))
        the_card = the_card.model_copy(update={"arch": arch, "arch_config": config})
        folder = save_module(module, work / "source", arch, config, [])
        return _finish("weights", str(path), the_card, Artifact.create(folder, Format.torch), torch_runner(module), module)
    raise BadInputError(f"{path}: unknown model file type {suffix!r}; fix: give .safetensors/.pt (+ --arch), a TorchScript "
                        "file, a torch.export .pt2 or an .onnx")


def _load_module_folder(path: Path, work: Path, inputs, convention, card: Path | None, user_arch: str | None,
                        eval_samples: int) -> LoadedModel:
    """An edgekit torch artifact folder (module.json + weights.safetensors), e.g. a pruned model from a pass.
    Its module.json may name a non-built-in architecture only if --arch names the same one."""
    import shutil

    module, spec = load_module(path, trusted_arch=user_arch)  # refuses untrusted code before anything else
    arch = spec["arch"]
    card = card or (path / "card.json" if (path / "card.json").is_file() else None)
    the_card = _card_for(arch, path.name, inputs, convention, card, eval_samples)
    the_card = the_card.model_copy(update={"arch": arch, "arch_config": spec["arch_config"]})
    dest = work / "source" / path.name
    shutil.copytree(path, dest)
    return _finish("module-folder", str(path), the_card, Artifact.create(dest, Format.torch), torch_runner(module), module)


def _exists(path: Path) -> bool:
    """Path.exists(), but a folder that may not be searched is "permission denied", not a traceback or "no such file"."""
    try:
        return path.exists()
    except PermissionError:
        raise BadInputError(f"{path}: permission denied (cannot look inside {path.parent}); fix: make that folder "
                            "searchable (chmod +x) or run as its owner") from None


_EAGER = ("builtin", "weights", "module-folder", "module")  # Python modules: their forward() may branch on values


def _finish(kind, source, card, artifact, runner, module) -> LoadedModel:
    _check_runs(runner, card, source)
    notes: list[str] = []
    if kind in _EAGER:
        args = tuple(torch.zeros(s.shape) for s in card.inputs)
        notes = check_no_data_dependent_branches(module, args, source)
    return LoadedModel(kind=kind, source=source, card=card, artifact=artifact, reference=runner, module=module,
                       notes=tuple(notes))


def _copy_in(path: Path, work: Path) -> Path:
    import shutil

    dest = work / "source" / path.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, dest)
    return dest


def _load_torchscript(path: Path, work: Path, card: ModelCard) -> LoadedModel:
    module = load_torchscript(path)
    art = Artifact.create(_copy_in(path, work), Format.torchscript)
    return _finish("torchscript", str(path), card, art, torch_runner(module), module)


def _load_exported(path: Path, work: Path, card: ModelCard) -> LoadedModel:
    module = load_exported_program(path).module()
    art = Artifact.create(_copy_in(path, work), Format.exported_program)
    return _finish("exported_program", str(path), card, art, torch_runner(module), module)


def _onnx_inputs(path: Path) -> list[InputSpec] | None:
    onnx = require("onnx", "reading an .onnx model")
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:
        raise BadInputError(f"{path}: not a readable ONNX model ({str(exc).splitlines()[0][:200]}); fix: re-export it") from None
    init = {i.name for i in graph.initializer}
    shapes = []
    for inp in graph.input:
        if inp.name in init:
            continue
        dims = [d.dim_value if d.dim_value > 0 else 1 for d in inp.type.tensor_type.shape.dim]
        shapes.append(f"{inp.name}={'x'.join(map(str, dims))}")
    return parse_input_shapes(shapes)


def _load_onnx(path: Path, work: Path, card: ModelCard) -> LoadedModel:
    try:
        runner = OnnxRunner(path, threads=1)
    except Exception as exc:
        raise BadInputError(f"{path}: onnxruntime cannot load it ({str(exc).splitlines()[0][:200]}); fix: check the export") from None
    art = Artifact.create(_copy_in(path, work), Format.onnx)
    return _finish("onnx", str(path), card, art, runner.run, None)
