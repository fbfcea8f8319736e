"""CLI habits: --version, -q/-v and --format json everywhere, --target repeatable, fast commands that never import
torch, shell completion of target names."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import typer.main

from edgekit._version import __version__
from edgekit.cli import app, run

LIGHT = """
import sys
from edgekit.cli import run
code = run({argv!r})
heavy = sorted(m for m in ("torch", "onnxruntime", "cv2", "coremltools") if m in sys.modules)
print("HEAVY", heavy, file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize("argv", [["--help"], ["targets"], ["targets", "--format", "json"], ["compile", "--help"],
                                  ["--version"]])
def test_listing_commands_do_not_import_torch(argv):
    proc = subprocess.run([sys.executable, "-c", LIGHT.format(argv=argv)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stderr, proc.stderr


def test_version(capsys):
    assert run(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"edgekit {__version__}"


def _commands():
    """Every leaf command of the CLI with its click object."""
    root = typer.main.get_command(app)
    for name, cmd in root.commands.items():
        for sub, leaf in getattr(cmd, "commands", {name: cmd}).items():
            yield (f"{name} {sub}" if sub != name else name), leaf


def test_every_command_takes_quiet_and_verbose():
    missing = [name for name, cmd in _commands()
               if not {"-q", "-v"} <= {o for p in cmd.params for o in p.opts}]
    assert not missing, f"commands without -q/-v: {missing}"


def test_every_command_that_prints_results_takes_format_json():
    writes_files_only = {"schema", "demo samples", "demo dataset", "data convert"}
    missing = [name for name, cmd in _commands() if name not in writes_files_only
               and "--format" not in {o for p in cmd.params for o in p.opts}]
    assert not missing, f"commands without --format: {missing}"


def test_out_is_a_folder_everywhere():
    """--out names a folder in every command that has one (help text says so)."""
    for name, cmd in _commands():
        for p in cmd.params:
            if "--out" in p.opts:
                assert "folder" in (p.help or "").lower(), f"{name} --out: {p.help}"


def test_target_is_repeatable_with_targets_as_alias():
    for name, cmd in _commands():
        names = {o for p in cmd.params for o in p.opts}
        if "--targets" in names or "--target" in names:
            target = next(p for p in cmd.params if "--target" in p.opts)
            alias = next(p for p in cmd.params if "--targets" in p.opts)
            assert target.multiple and alias.multiple and alias.hidden, name


@pytest.mark.parametrize("command", ["compile", "energy"])
def test_targets_alias_warns_and_still_names_targets(command, capsys):
    # an unknown name stops the command before any compile; the error naming it shows the alias's names are used
    assert run([command, "--target", "onnx", "--targets", "no-such-target"]) == 2
    err = capsys.readouterr().err
    assert "--targets is deprecated; use --target (repeatable or comma-separated)\n" in err
    assert "unknown target 'no-such-target'" in err
    assert run([command, "--target", "onnx,no-such-target"]) == 2
    err = capsys.readouterr().err
    assert "deprecated" not in err and "unknown target 'no-such-target'" in err


def test_demo_train_json_holds_the_validation_error(tmp_path, capsys):
    """The smallest training the command takes (64 images, one epoch): checks the JSON, not the model's quality."""
    assert run(["demo", "train", "--n-train", "64", "--epochs", "1", "--batch", "32", "--out", str(tmp_path),
                "--format", "json", "-q"]) == 0
    doc = json.loads(capsys.readouterr().out)
    card = json.loads((tmp_path / "tinygaze.json").read_text())
    assert doc["weights_path"] == str(tmp_path / "tinygaze.safetensors") and (tmp_path / "tinygaze.safetensors").is_file()
    assert doc["card_path"] == str(tmp_path / "tinygaze.json")
    accuracy = card["validation"]["accuracy"]
    assert doc["validation"] == {"mean_deg": accuracy["model"]["mean_deg"], "n": accuracy["model"]["n"],
                                 "predict_mean_baseline_deg": accuracy["predict_mean_baseline"]["mean_deg"]}
    assert doc["validation"]["n"] > 0 and doc["validation"]["mean_deg"] > 0


@pytest.mark.slow  # compiles the demo model for onnx
def test_report_with_only_out_writes_the_html_there(tmp_path, capsys):
    import edgekit.compiler as ek

    report = ek.compile(None, "onnx", out=tmp_path / "compiled").report_path
    shared = tmp_path / "shared"  # a folder that does not exist yet
    assert run(["report", str(report), "--out", str(shared)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {shared / 'report.html'}"
    assert "<h1>tinygaze &rarr; onnx" in (shared / "report.html").read_text()
    assert sorted(p.name for p in shared.iterdir()) == ["report.html"]


def test_shell_completion_gives_target_names():
    env = {**os.environ, "_EDGEKIT_COMPLETE": "complete_bash", "COMP_WORDS": "edgekit compile --target tflite-i",
           "COMP_CWORD": "3"}
    proc = subprocess.run([sys.executable, "-m", "edgekit.cli"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["tflite-int8", "tflite-int8-io"], proc.stdout + proc.stderr
    env["COMP_WORDS"] = "edgekit energy --target onnx,coreml-"
    proc = subprocess.run([sys.executable, "-m", "edgekit.cli"], env=env, capture_output=True, text=True, timeout=120)
    assert "onnx,coreml-int8" in proc.stdout.split(), proc.stdout + proc.stderr


def test_doctor_shows_versions(capsys):
    assert run(["doctor", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    onnx = next(r for r in rows if r["component"].startswith("onnx backend"))
    assert onnx["usable"] and "onnxruntime " in onnx["detail"] and onnx["detail"] != "ok"


def test_targets_json_lists_every_shipped_recipe(capsys):
    from edgekit.recipe import list_targets

    assert run(["targets", "--format", "json", "-q"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list_targets()
    assert next(r for r in rows if r["name"] == "onnx-int8")["passes"] == ["fold_bn", "export_onnx", "ptq"]
