"""Load what the user asks to compile: a built-in name, weights + --arch, TorchScript, torch.export .pt2 or ONNX.

Whatever the kind, the result is a model card (input spec, output convention, preprocessing), the
first artifact of the pipeline, and the reference: the model exactly as loaded, before any pass,
which every artifact is verified against. Nothing untrusted is unpickled.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.artifact import Artifact, Format
from edgekit.errors import BadInputError
from edgekit.models.card import InputSpec, ModelCard, OutputSpec

Runner = Callable[[dict[str, np.ndarray]], np.ndarray]


@dataclass
class LoadedModel:
    kind: str  # builtin, weights, torchscript, exported_program, onnx
    source: str
    card: ModelCard
    artifact: Artifact
    reference: Runner
    module: object | None = None  # the torch module (None for .onnx inputs)


def parse_input_shapes(values: list[str] | None) -> list[InputSpec] | None:
    """`1x1x40x64` or `image=1x1x36x60` (repeatable; a name `head_pose` is fed the head-pose vector)."""
    if not values:
        return None
    specs = []
    for i, text in enumerate(values):
        name, _, dims = text.rpartition("=")
        name = name or ("image" if i == 0 else f"input{i}")
        try:
            shape = [int(d) for d in dims.lower().split("x")]
            if not shape or min(shape) < 1:
                raise ValueError
        except ValueError:
            raise BadInputError(f"--input-shape {text!r} is not like 1x1x40x64 or name=1x2; fix: give positive sizes joined by x") from None
        if shape[0] != 1:
            raise BadInputError(f"--input-shape {text!r}: batch must be 1 (artifacts are exported for batch 1); fix: 1x...")
        source = "head_pose" if name == "head_pose" or (i > 0 and shape == [1, 2]) else "image"
        layout = {5: "NTCHW", 4: "NCHW"}.get(len(shape), "NC")
        specs.append(InputSpec(name=name, shape=shape, layout=layout if source == "image" else "NC",
                               color="gray" if source == "image" else "none", source=source))
    return specs


def _card_for(arch: str | None, name: str, inputs: list[InputSpec] | None, convention: str | None,
              card_path: Path | None) -> ModelCard:
    if card_path is not None:
        card = ModelCard.load(card_path)
    elif arch and arch.lower() in _builtins():
        from edgekit.models.registry import builtin

        spec = builtin(arch)
        card = ModelCard(name=name, arch=arch.lower(), arch_config=spec.config, inputs=[spec.input_spec(spec.config)],
                         output=spec.output_spec(spec.config), description=spec.description)
    elif inputs is None:
        raise BadInputError(f"{name}: no model card and no --input-shape; fix: pass --input-shape 1x1x40x64 (or --card card.json)")
    else:
        card = ModelCard(name=name, arch=arch or "external", inputs=inputs, output=OutputSpec(shape=[1, 3]))
    return _override(card, inputs, convention)


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
    from edgekit.models.registry import BUILTINS

    return BUILTINS


def _torch_runner(module) -> Runner:
    import torch

    def run(inputs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            out = module(*(torch.from_numpy(np.ascontiguousarray(v)) for v in inputs.values()))
        return out.double().numpy()

    return run


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
    except zipfile.BadZipFile:
        return []


def load_source(model: str | None, work: Path, *, arch: str | None = None, arch_config: dict | None = None,
                input_shapes: list[str] | None = None, output_convention: str | None = None,
                card: Path | None = None) -> LoadedModel:
    """Resolve MODEL (None = the demo) into a LoadedModel; the first artifact is written under `work`."""
    from edgekit.torch_module import build_arch, save_module

    inputs = parse_input_shapes(input_shapes)
    convention = {"vector": "unit_vector", "pitchyaw": "pitchyaw_rad", None: None}.get(output_convention, output_convention)
    if convention not in (None, "unit_vector", "pitchyaw_rad"):
        raise BadInputError(f"--output-convention {output_convention!r}; fix: use vector or pitchyaw")
    model = model or "tinygaze"
    path = Path(model)
    if not path.exists() and model.lower() in _builtins():
        from edgekit.models.io import load_shipped

        module, shipped = load_shipped(model.lower())
        the_card = _override(shipped, inputs, convention)
        folder = save_module(module, work / "source", shipped.arch, shipped.arch_config, [])
        return _finish("builtin", model, the_card, Artifact.create(folder, Format.torch), _torch_runner(module), module)
    if not path.exists():
        raise BadInputError(f"{model}: no such file and not a built-in model ({', '.join(_builtins())}); fix: check the path")
    if path.is_dir() and (path / "module.json").is_file():
        return _load_module_folder(path, work, inputs, convention, card)
    suffix = path.suffix.lower()
    name = path.stem
    card_path = card or (path.with_suffix(".json") if path.with_suffix(".json").is_file() and suffix != ".json" else None)
    if suffix == ".onnx":
        return _load_onnx(path, work, _card_for(arch, name, inputs or _onnx_inputs(path), convention, card_path))
    if suffix == ".pt2":
        return _load_exported(path, work, _card_for(arch, name, inputs, convention, card_path))
    names = _zip_names(path) if suffix in (".pt", ".pth", ".ts", ".jit") else []
    if any("/code/" in n or n.startswith("code/") for n in names):
        return _load_torchscript(path, work, _card_for(arch, name, inputs, convention, card_path))
    if suffix in (".safetensors", ".pt", ".pth", ".bin"):
        if not arch:
            raise BadInputError(f"{path}: a weights file needs --arch (a built-in name or package.module:Class); fix: add --arch")
        from edgekit.models.io import load_into, read_state_dict

        the_card = _card_for(arch, name, inputs, convention, card_path)
        config = {**(the_card.arch_config if arch.lower() in _builtins() else {}), **(arch_config or {})}
        module = load_into(build_arch(arch, config), read_state_dict(path), str(path))
        the_card = the_card.model_copy(update={"arch": arch, "arch_config": config})
        folder = save_module(module, work / "source", arch, config, [])
        return _finish("weights", str(path), the_card, Artifact.create(folder, Format.torch), _torch_runner(module), module)
    raise BadInputError(f"{path}: unknown model file type {suffix!r}; fix: give .safetensors/.pt (+ --arch), a TorchScript "
                        "file, a torch.export .pt2 or an .onnx")


def _load_module_folder(path: Path, work: Path, inputs, convention, card: Path | None) -> LoadedModel:
    """An edgekit torch artifact folder (module.json + weights.safetensors), e.g. a pruned model from a pass."""
    import shutil

    from edgekit.torch_module import load_module

    module, spec = load_module(path)
    arch = spec["arch"]
    the_card = _card_for(arch, path.name, inputs, convention, card or (path / "card.json" if (path / "card.json").is_file() else None))
    the_card = the_card.model_copy(update={"arch": arch, "arch_config": spec["arch_config"]})
    dest = work / "source" / path.name
    shutil.copytree(path, dest)
    return _finish("module-folder", str(path), the_card, Artifact.create(dest, Format.torch), _torch_runner(module), module)


def _finish(kind, source, card, artifact, runner, module) -> LoadedModel:
    _check_runs(runner, card, source)
    return LoadedModel(kind=kind, source=source, card=card, artifact=artifact, reference=runner, module=module)


def _copy_in(path: Path, work: Path) -> Path:
    import shutil

    dest = work / "source" / path.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, dest)
    return dest


def _load_torchscript(path: Path, work: Path, card: ModelCard) -> LoadedModel:
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:
        raise BadInputError(f"{path}: not a loadable TorchScript file ({str(exc).splitlines()[0][:200]}); fix: re-save with torch.jit.save") from None
    art = Artifact.create(_copy_in(path, work), Format.torchscript)
    return _finish("torchscript", str(path), card, art, _torch_runner(module), module)


def _load_exported(path: Path, work: Path, card: ModelCard) -> LoadedModel:
    import torch

    try:
        module = torch.export.load(str(path)).module()
    except Exception as exc:
        raise BadInputError(f"{path}: not a loadable torch.export program ({str(exc).splitlines()[0][:200]}); fix: re-save with torch.export.save") from None
    art = Artifact.create(_copy_in(path, work), Format.exported_program)
    return _finish("exported_program", str(path), card, art, _torch_runner(module), module)


def _onnx_inputs(path: Path) -> list[InputSpec] | None:
    from edgekit._optional import require

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
    from edgekit.backends.onnx import OnnxRunner

    try:
        runner = OnnxRunner(path, threads=1)
    except Exception as exc:
        raise BadInputError(f"{path}: onnxruntime cannot load it ({str(exc).splitlines()[0][:200]}); fix: check the export") from None
    art = Artifact.create(_copy_in(path, work), Format.onnx)
    return _finish("onnx", str(path), card, art, runner.run, None)
