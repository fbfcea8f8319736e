"""Hostile model files: no code from a model file ever runs, and every bad file is one line, exit 2.

Crafted archives carry a payload that would create a marker file (os.system through pickle's __reduce__);
each test checks edgekit refuses the file or loads it without the payload, and that the marker never appears.
"""

import io
import json
import os
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from edgekit.artifact import Artifact, Format
from edgekit.cli import run
from edgekit.errors import BadInputError
from edgekit.models import build
from edgekit.models.io import save_weights
from edgekit.backends.onnx.export import load_torch_artifact
from edgekit.source import load_source
from edgekit.torch_module import save_module
from tests.fixtures.unprivileged import cannot_open, run_cli_without_file_privileges


class TinyNet(nn.Module):
    """1x1x8x8 in, 3 out: small enough that a compile or an export takes well under a second."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2, 3)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


class RunsShellCommand:
    """Unpickling this runs `touch marker`: the classic malicious pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def _pickled_payload(marker: Path) -> bytes:
    buf = io.BytesIO()
    torch.save(RunsShellCommand(marker), buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def tiny_pt2(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pt2") / "tiny.pt2"
    torch.manual_seed(0)
    torch.export.save(torch.export.export(TinyNet().eval(), (torch.zeros(1, 1, 8, 8),)), str(path))
    return path


def _rewrite_pt2(src: Path, dst: Path, change=lambda name, data: data, add: dict | None = None) -> Path:
    """A copy of the archive with entries changed (by name relative to the archive root) or added."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        root = zin.namelist()[0].split("/")[0]
        for info in zin.infolist():
            name = info.filename[len(root) + 1:]
            zout.writestr(info.filename, change(name, zin.read(info.filename)))
        for name, data in (add or {}).items():
            zout.writestr(f"{root}/{name}", data)
    return dst


def _refused(argv, message, capsys, *, inputs=(), marker: Path | None = None, code=2) -> str:
    """Exit `code`, stderr is exactly one `error:` line holding `message`, inputs unchanged, no marker."""
    before = {p: _snapshot(p) for p in inputs}
    assert run(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0], lines[0]
    assert all(_snapshot(p) == digest for p, digest in before.items()), "an input file was changed"
    assert marker is None or not marker.exists(), "code from the model file ran"
    return lines[0]


def _snapshot(path: Path):
    if path.is_dir():
        return {p.name: p.read_bytes() for p in sorted(path.iterdir())}
    return path.read_bytes()


# --- .pt2: nothing is unpickled or evaluated ---------------------------------------------------------------


def test_pt2_sample_inputs_that_run_code_are_never_unpickled(tiny_pt2, tmp_path):
    marker = tmp_path / "pwned"
    evil = _rewrite_pt2(tiny_pt2, tmp_path / "evil.pt2",
                        lambda name, data: _pickled_payload(marker) if name == "data/sample_inputs/model.pt" else data)
    before = evil.read_bytes()
    src = load_source(str(evil), tmp_path / "work", input_shapes=["1x1x8x8"])
    assert src.kind == "exported_program" and not marker.exists()
    assert src.reference({"image": torch.zeros(1, 1, 8, 8).numpy()}).shape == (1, 3)
    art = Artifact.create(evil, Format.exported_program)  # the cached-artifact path (export_onnx, to_coreml, to_tflite)
    assert load_torch_artifact(art)(torch.zeros(1, 1, 8, 8)).shape == (1, 3) and not marker.exists()
    assert evil.read_bytes() == before
    # the payload is live: torch's own loader runs it
    from edgekit.quiet import quiet

    with quiet():
        try:
            torch.export.load(str(evil))
        except Exception:
            pass
    assert marker.exists()


def test_pt2_with_a_pickled_constant_is_refused(tiny_pt2, tmp_path, capsys):
    marker = tmp_path / "pwned"
    config = {"config": {"c": {"path_name": "tensor_0", "is_param": False, "use_pickle": True, "tensor_meta": None}}}
    evil = _rewrite_pt2(tiny_pt2, tmp_path / "evil.pt2",
                        lambda name, data: json.dumps(config).encode() if name.endswith("constants_config.json") else data,
                        add={"data/constants/tensor_0": _pickled_payload(marker)})
    _refused(["compile", str(evil), "--input-shape", "1x1x8x8", "--out", str(tmp_path / "o")],
             "constant 'c' is stored pickled", capsys, inputs=[evil], marker=marker)
    with pytest.raises(BadInputError, match="edgekit never unpickles"):  # a tampered cache entry, loaded by a pass
        load_torch_artifact(Artifact.create(evil, Format.exported_program))
    assert not marker.exists() and not (tmp_path / "o").exists()


def test_pt2_graph_that_calls_a_python_function_is_refused(tiny_pt2, tmp_path, capsys):
    def call_os_system(name, data):
        if name != "models/model.json":
            return data
        return data.replace(b'"torch.ops.aten.conv2d.default"', b'"torch.serialization.os.system"')

    evil = _rewrite_pt2(tiny_pt2, tmp_path / "evil.pt2", call_os_system)
    line = _refused(["compile", str(evil), "--input-shape", "1x1x8x8"], "graph call 'torch.serialization.os.system'",
                    capsys, inputs=[evil])
    assert "runs no code from a model file" in line


def test_pt2_shape_expression_with_code_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "dyn.pt2"
    batch = torch.export.Dim("batch", min=1, max=8)
    torch.export.save(torch.export.export(TinyNet().eval(), (torch.zeros(2, 1, 8, 8),), dynamic_shapes=({0: batch},)),
                      str(path))
    code = f"__import__('os').system('touch {marker}')"

    def inject(name, data):
        if name != "models/model.json":
            return data
        doc = json.loads(data)
        expr = next(_values(doc, "expr_str"))
        return json.dumps(doc).replace(json.dumps(expr), json.dumps(code)).encode()

    evil = _rewrite_pt2(path, tmp_path / "evil.pt2", inject)
    _refused(["compile", str(evil), "--input-shape", "1x1x8x8"], "shape expression", capsys, inputs=[evil], marker=marker)
    assert load_source(str(path), tmp_path / "w", input_shapes=["1x1x8x8"]).kind == "exported_program"  # unmodified: fine


def _values(node, key):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            yield from _values(v, key)
    elif isinstance(node, list):
        for v in node:
            yield from _values(v, key)


def test_pt2_with_compiled_code_or_extra_models_is_refused(tiny_pt2, tmp_path, capsys):
    evil = _rewrite_pt2(tiny_pt2, tmp_path / "aoti.pt2", add={"data/aotinductor/model/model.so": b"\x7fELF"})
    _refused(["compile", str(evil), "--input-shape", "1x1x8x8"], "archive entry 'data/aotinductor/model/model.so'",
             capsys, inputs=[evil])


# --- module folders: a file never chooses which code is imported -------------------------------------------


@pytest.fixture
def code_on_import(tmp_path, monkeypatch):
    """An importable module whose import creates a marker file; returns (arch, marker)."""
    marker = tmp_path / "imported"
    pkg = tmp_path / "site"
    pkg.mkdir()
    (pkg / "hostile_net_mod.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).touch()\nfrom tests.test_hostile_models import TinyNet as Net\n")
    monkeypatch.syspath_prepend(str(pkg))
    yield "hostile_net_mod:Net", marker
    sys.modules.pop("hostile_net_mod", None)


def _module_folder(folder: Path, arch: str, config: dict | None = None) -> Path:
    save_module(TinyNet(), folder, "tests.test_hostile_models:TinyNet", {}, [])
    spec = json.loads((folder / "module.json").read_text())
    (folder / "module.json").write_text(json.dumps({**spec, "arch": arch, "arch_config": config or {}}))
    return folder


def test_module_folder_naming_user_code_is_refused_unless_arch_names_it(code_on_import, tmp_path, capsys):
    arch, marker = code_on_import
    folder = _module_folder(tmp_path / "folder", arch)
    line = _refused(["compile", str(folder), "--input-shape", "1x1x8x8", "--out", str(tmp_path / "o")],
                    f"names architecture '{arch}', which is not built-in", capsys, inputs=[folder], marker=marker)
    assert f"pass --arch {arch}" in line and "hostile_net_mod" not in sys.modules
    # the user names it: now, and only now, it is imported
    src = load_source(str(folder), tmp_path / "w", arch=arch, input_shapes=["1x1x8x8"])
    assert src.kind == "module-folder" and marker.exists() and src.card.arch == arch


def test_module_folder_naming_os_system_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    folder = _module_folder(tmp_path / "folder", "os:system", {"command": f"touch {shlex.quote(str(marker))}"})
    _refused(["compile", str(folder), "--input-shape", "1x1x8x8"], "names architecture 'os:system'", capsys,
             inputs=[folder], marker=marker)


def test_a_card_file_cannot_make_an_arch_trusted(tiny_pt2, tmp_path):
    """The card's arch is what passes trust (ctx.card.arch): a card beside the model may not name code."""
    model = tmp_path / "tiny.pt2"
    model.write_bytes(tiny_pt2.read_bytes())
    card = {"name": "tiny", "arch": "os:system", "inputs": [{"shape": [1, 1, 8, 8]}], "output": {"shape": [1, 3]}}
    (tmp_path / "tiny.json").write_text(json.dumps(card))
    assert load_source(str(model), tmp_path / "w").card.arch == "external"
    assert load_source(str(model), tmp_path / "w2", arch="os:system").card.arch == "os:system"  # named by the user


def test_tampered_pass_output_cannot_choose_code(code_on_import, tmp_path):
    """A pass (or the pass cache) hands a module folder on: only the run's own --arch may be imported."""
    arch, marker = code_on_import
    folder = _module_folder(tmp_path / "cached", arch)
    with pytest.raises(BadInputError, match="never because a file says so"):
        load_torch_artifact(Artifact.create(folder, Format.torch), trusted_arch="tinygaze")
    assert not marker.exists() and "hostile_net_mod" not in sys.modules


@pytest.mark.parametrize("content, message", [
    ("{not json", "module.json: not valid JSON"),
    ("[1, 2]", "module.json: holds a JSON list, not an object"),
    ('{"arch_config": {}}', "module.json: missing key 'arch'"),
    ('{"arch": "tinygaze"}', "module.json: missing key 'arch_config'"),
    ('{"arch": 7, "arch_config": {}}', "module.json: arch is int, not str"),
    ('{"arch": "tinygaze", "arch_config": []}', "module.json: arch_config is list, not dict"),
    ('{"arch": "tinygaze", "arch_config": {}, "bn_folds": [["a"]]}', "bn_folds is not a list of [conv, batchnorm]"),
    ('{"arch": "tinygaze", "arch_config": {}, "bn_folds": [["nope", "gone"]]}', "its layer edits do not fit tinygaze"),
])
def test_malformed_module_json(tmp_path, capsys, content, message):
    folder = tmp_path / "folder"
    save_module(build("tinygaze", {}), folder, "tinygaze", {}, [])
    (folder / "module.json").write_text(content)
    _refused(["compile", str(folder), "--out", str(tmp_path / "o")], message, capsys, inputs=[folder])
    assert not (tmp_path / "o").exists()


# --- --arch and --arch-config ------------------------------------------------------------------------------


@pytest.fixture
def weights(tmp_path) -> Path:
    return save_weights(TinyNet(), tmp_path / "tiny.safetensors")


@pytest.mark.parametrize("source, message", [
    ("raise RuntimeError('GPU driver too old')", "cannot import (RuntimeError: GPU driver too old)"),
    ("1 / 0", "cannot import (ZeroDivisionError: division by zero)"),
    ("raise SystemExit(5)", "cannot import (SystemExit: 5)"),
    ("import no_such_package_for_edgekit_tests", "cannot import (ModuleNotFoundError: No module named"),
    ("def Net(**kw):\n    raise KeyError('width')", "constructor failed with {} ('width')"),
    ("class Net:\n    pass", "built a Net, not a torch.nn.Module"),
    ("Net = 3", "Net is a int, not a class"),
    ("from tests.test_hostile_models import TinyNet as Other", "cannot import (AttributeError"),
])
def test_arch_whose_import_or_constructor_raises(tmp_path, monkeypatch, capsys, weights, source, message):
    (tmp_path / "broken_arch_mod.py").write_text(source + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "broken_arch_mod", raising=False)
    _refused(["compile", str(weights), "--arch", "broken_arch_mod:Net", "--input-shape", "1x1x8x8",
              "--out", str(tmp_path / "o")], message, capsys, inputs=[weights])
    sys.modules.pop("broken_arch_mod", None)


@pytest.mark.parametrize("config, message", [
    ('{"widht": 8}', "--arch-config key 'widht' is not an argument of tinygaze (it takes width"),
    ('{"width": "8"}', '--arch-config width="8" for tinygaze: expected integer like its default 16'),
    ('{"width": 8.5}', "--arch-config width=8.5 for tinygaze: expected integer"),
    ('{"input_size": 40}', "--arch-config input_size=40 for tinygaze: expected list"),
    ('{"width": -4}', "--arch tinygaze: constructor failed with"),
])
def test_arch_config_with_unknown_keys_or_wrong_types(tmp_path, capsys, config, message):
    path = save_weights(build("tinygaze", {}), tmp_path / "w.safetensors")
    _refused(["compile", str(path), "--arch", "tinygaze", "--arch-config", config, "--out", str(tmp_path / "o")],
             message, capsys, inputs=[path])


def test_arch_config_unknown_key_for_a_user_class(tmp_path, capsys, weights):
    _refused(["compile", str(weights), "--arch", "tests.test_hostile_models:TinyNet", "--arch-config", '{"width": 4}',
              "--input-shape", "1x1x8x8"], "key 'width' is not an argument of tests.test_hostile_models:TinyNet (it takes none)",
             capsys, inputs=[weights])


# --- corrupt, empty, unreadable and oversized ---------------------------------------------------------------


def _state_dict_pt(path: Path) -> Path:
    torch.save(TinyNet().state_dict(), str(path))
    return path


def _torchscript_pt(path: Path) -> Path:
    torch.jit.save(torch.jit.trace(TinyNet().eval(), torch.zeros(1, 1, 8, 8)), str(path))
    return path


def _onnx(path: Path) -> Path:
    from edgekit.quiet import quiet

    with quiet():
        torch.onnx.export(TinyNet().eval(), (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False, input_names=["image"])
    return path


MAKERS = {
    "weights.safetensors": lambda p: save_weights(TinyNet(), p),
    "weights.pt": _state_dict_pt,
    "weights.pth": _state_dict_pt,
    "script.pt": _torchscript_pt,
    "program.pt2": None,  # the module fixture
    "model.onnx": _onnx,
}
ARGS = ["--arch", "tests.test_hostile_models:TinyNet", "--input-shape", "1x1x8x8"]


def _make(kind: str, folder: Path, tiny_pt2: Path) -> Path:
    path = folder / kind
    if kind == "program.pt2":
        path.write_bytes(tiny_pt2.read_bytes())
        return path
    return MAKERS[kind](path)


@pytest.mark.parametrize("kind", list(MAKERS))
@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_damaged_model_files_are_one_line(tmp_path, capsys, tiny_pt2, kind, damage):
    path = _make(kind, tmp_path, tiny_pt2)
    data = path.read_bytes()
    path.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "garbage": os.urandom(3000)}[damage])
    expected = {"empty": "empty file (0 bytes)"}.get(damage, path.name)
    line = _refused(["compile", str(path), *ARGS, "--out", str(tmp_path / "o")], expected, capsys, inputs=[path])
    assert "fix: " in line and "weights_only" not in line
    assert not (tmp_path / "o").exists()


def test_module_folder_with_damaged_weights(tmp_path, capsys):
    folder = tmp_path / "folder"
    save_module(build("tinygaze", {}), folder, "tinygaze", {}, [])
    weights_file = folder / "weights.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:100])
    _refused(["compile", str(folder)], "weights.safetensors: unreadable safetensors file", capsys, inputs=[folder])
    weights_file.write_bytes(b"")
    _refused(["compile", str(folder)], "weights.safetensors: empty file (0 bytes)", capsys, inputs=[folder])
    weights_file.unlink()
    _refused(["compile", str(folder)], "weights.safetensors: no such file", capsys, inputs=[folder])


def test_whole_pickled_model_is_refused_without_advising_unsafe_loading(tmp_path, capsys):
    path = tmp_path / "whole.pt"
    torch.save(build("tinygaze", {}), str(path))  # the model object itself, not its state_dict
    line = _refused(["compile", str(path), "--arch", "tinygaze", "--out", str(tmp_path / "o")],
                    "holds Python objects (edgekit.models.tinygaze.TinyGaze) besides tensors", capsys, inputs=[path])
    assert "weights_only" not in line and "False" not in line and "fix: save model.state_dict()" in line


def test_unpickling_payload_in_a_weights_file_never_runs(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(_pickled_payload(marker))
    line = _refused(["compile", str(path), "--arch", "tinygaze"], "holds Python objects (posix.system)", capsys,
                    inputs=[path], marker=marker)
    assert "weights_only" not in line


@pytest.mark.slow
def test_permission_denied_says_so(tmp_path):
    """Root reads any file, so the check runs in a child without root's file capabilities (tests.fixtures.unprivileged)."""
    path = save_weights(TinyNet(), tmp_path / "locked.safetensors")
    path.chmod(0o000)
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    save_weights(TinyNet(), hidden / "inside.safetensors")
    hidden.chmod(0o000)
    try:
        assert cannot_open(path) and cannot_open(hidden / "inside.safetensors")  # not vacuous
        cases = [(path, "locked.safetensors: permission denied (model file); fix: make it readable"),
                 (hidden / "inside.safetensors", "inside.safetensors: permission denied")]
        for model, message in cases:
            code, _, err = run_cli_without_file_privileges(["compile", str(model), *ARGS, "--out", str(tmp_path / "o")])
            lines = err.strip().splitlines()
            assert code == 2 and len(lines) == 1 and message in lines[0], err
            assert "Traceback" not in err and "no such file" not in err
        assert not (tmp_path / "o").exists()
    finally:
        hidden.chmod(0o755)


def test_huge_input_shape_is_refused_before_allocating(tmp_path, capsys):
    _refused(["compile", "tinygaze", "--input-shape", "1x1x100000x100000", "--out", str(tmp_path / "o")],
             "input image=1x1x100000x100000: 512 evaluation samples of it would take 19,073.5 GiB (limit 4 GiB)", capsys)
    with pytest.raises(BadInputError, match=r"1000000 evaluation samples of it would take 9.5 GiB"):
        load_source("tinygaze", tmp_path / "w", eval_samples=1_000_000)
    assert load_source("tinygaze", tmp_path / "w2", eval_samples=512).kind == "builtin"


@pytest.mark.slow
def test_refusals_print_no_torch_log_lines(tiny_pt2, tmp_path):
    """torch logs warnings and tracebacks while deserializing; none reach the user (a fresh process: no capture)."""
    evil = tmp_path / "bad.pt2"
    evil.write_bytes(tiny_pt2.read_bytes()[:-300])  # truncated: torch's zip reader fails
    proc = subprocess.run([sys.executable, "-c", "import sys; from edgekit.cli import run; sys.exit(run(sys.argv[1:]))",
                           "compile", str(evil), "--input-shape", "1x1x8x8"],
                          capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "bad.pt2: not a loadable torch.export program" in proc.stderr
