"""`edgekit doctor`: which backends and runtimes are usable here, and how to get the missing ones."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli.options import OutputFormat

# (component, python modules it needs, install hint); extras land with their issues.
_COMPONENTS = [
    ("core (torch, renderer)", ["torch", "cv2", "safetensors", "pydantic"], "pip install -e ."),
    ("dataset loaders", ["h5py", "scipy"], "pip install 'edgekit[datasets]'"),
    ("onnx backend", ["onnx", "onnxruntime", "onnxslim", "onnxconverter_common"], "pip install 'edgekit[onnx]'"),
    ("coreml backend", ["coremltools"], "pip install 'edgekit[coreml]'"),
    ("tflite backend", ["litert_torch", "ai_edge_litert", "ai_edge_quantizer"], "pip install 'edgekit[tflite]'"),
    ("snn / loihi export (netx HDF5, NIR)", ["h5py", "nir"], "pip install 'edgekit[snn]'"),
]


def lava_python() -> Path:
    """The Python of the separate Lava environment (Lava needs Python 3.10 and numpy<2).

    Same place `scripts/setup-lava.sh` (`make lava`) uses: `$EDGEKIT_LAVA_VENV`, default `.venv-lava`; a relative
    path is relative to the repository root when edgekit runs from a source checkout, else to the working folder.
    """
    venv = Path(os.environ.get("EDGEKIT_LAVA_VENV") or ".venv-lava")
    if not venv.is_absolute():
        repo = Path(__file__).resolve().parents[2]
        venv = (repo if (repo / "scripts" / "setup-lava.sh").exists() else Path.cwd()) / venv
    return venv / "bin" / "python"


# Runs inside the Lava venv. It imports Lava's core and reads the versions, and deliberately does not import
# lava.lib.dl.netx: netx pulls in torch-only modules (lava-dl pins torch 2.3 and is installed with --no-deps),
# so it needs the torch shim that the Loihi backend provides, and importing it bare here would always fail.
_LAVA_CHECK = (
    "import importlib.metadata as m, lava, lava.magma.core.run_configs, numpy; "
    "assert int(numpy.__version__.split('.')[0]) < 2, 'numpy ' + numpy.__version__ + ' (Lava needs numpy<2)'; "
    "print(m.version('lava-nc'), m.version('lava-dl'))"
)


def _lava_status() -> tuple[bool, str]:
    py = lava_python()
    venv = py.parent.parent
    if not py.exists():
        return False, f"no Lava environment at {venv}; fix: make lava (needs Python 3.10 from pyenv)"
    try:
        out = subprocess.run([str(py), "-I", "-c", _LAVA_CHECK], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{py} did not run ({exc}); fix: rm -r {venv} && make lava"
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["unknown error"])[-1]
        return False, f"Lava does not import in {venv} ({last}); fix: rm -r {venv} && make lava"
    try:
        nc, dl = out.stdout.split()
    except ValueError:
        return False, f"unexpected version output from {py} ({out.stdout.strip()!r}); fix: rm -r {venv} && make lava"
    return True, f"lava-nc {nc}, lava-dl {dl} in {venv} (CPU simulator; Loihi hardware needs Intel's package)"


def doctor(output_format: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.human) -> None:
    """List every component, whether it is usable on this machine, and how to fix it if not."""
    rows = []
    for name, modules, hint in _COMPONENTS:
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        rows.append((name, not missing, f"missing {', '.join(missing)}; fix: {hint}" if missing else "ok"))
    rows.append(("loihi backend (lava simulator)", *_lava_status()))
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    rows.append(("headless chromium (report tests)", bool(chromium), chromium or "not found; fix: apt-get install chromium"))
    if output_format == OutputFormat.json:
        import json

        typer.echo(json.dumps([{"component": n, "usable": u, "detail": d} for n, u, d in rows], indent=2))
        return
    width = max(len(n) for n, _, _ in rows)
    for name, usable, detail in rows:
        typer.echo(f"{'ok ' if usable else 'no '} {name:<{width}}  {detail}")
