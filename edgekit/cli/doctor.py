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
    ("onnx backend", ["onnx", "onnxruntime"], "pip install 'edgekit[onnx]'"),
    ("coreml backend", ["coremltools"], "pip install 'edgekit[coreml]'"),
    ("tflite backend", ["ai_edge_litert"], "pip install 'edgekit[tflite]'"),
]


def lava_python() -> Path:
    """The Python of the separate Lava environment (Lava needs Python 3.10 and numpy<2)."""
    return Path(os.environ.get("EDGEKIT_LAVA_VENV", Path.cwd() / ".venv-lava")) / "bin" / "python"


def _lava_status() -> tuple[bool, str]:
    py = lava_python()
    if not py.exists():
        return False, f"no Lava environment at {py.parent.parent}; fix: make lava (needs Python 3.10 from pyenv)"
    try:
        out = subprocess.run([str(py), "-c", "import lava, lava.lib.dl.netx; import importlib.metadata as m; "
                              "print(m.version('lava-nc'), m.version('lava-dl'))"],
                             capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{py} did not run ({exc}); fix: rm -r {py.parent.parent} && make lava"
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["unknown error"])[-1]
        return False, f"Lava does not import in {py.parent.parent} ({last}); fix: rm -r {py.parent.parent} && make lava"
    nc, dl = out.stdout.split()
    return True, f"lava-nc {nc}, lava-dl {dl} in {py.parent.parent} (CPU simulator; Loihi hardware needs Intel's package)"


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
