"""`edgekit doctor`: which backends and runtimes are usable here, and how to get the missing ones.

Rows come from the backend registry and the extras table (edgekit.extras), the same facts the pass cache and the
recipe checks read; nothing here is listed by hand except the report tests' browser.
"""

from __future__ import annotations

import importlib.util
import shutil

import typer

from edgekit.cli.options import FormatOpt, OutputFormat, QuietOpt, VerboseOpt, set_verbosity
from edgekit.extras import CORE, EXTRAS, install_hint

_TOOLING = ("datasets", "prune", "snn", "ray")  # extras that are not one backend's runtime


def versions(modules: tuple[str, ...]) -> str:
    """'onnxruntime 1.22.0, onnx 1.18.0': the installed distribution of each importable module."""
    from importlib import metadata

    owners = metadata.packages_distributions()
    seen = []
    for module in modules:
        for dist in owners.get(module.split(".")[0], []):
            try:
                text = f"{dist} {metadata.version(dist)}"
            except metadata.PackageNotFoundError:
                continue
            if text not in seen:
                seen.append(text)
    return ", ".join(seen)


def _modules_row(name: str, modules: tuple[str, ...], hint: str) -> tuple[str, bool, str]:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return name, not missing, f"missing {', '.join(missing)}; fix: {hint}" if missing else versions(modules)


def rows() -> list[tuple[str, bool, str]]:
    from edgekit.backends import REGISTRY  # loads every backend's passes (torch): only when doctor runs

    out = [_modules_row(CORE.purpose, CORE.modules, "pip install -e .")]
    for backend in REGISTRY.values():
        usable, detail = backend.available()
        if usable and detail.startswith("ok"):  # say what is installed, not "ok" twice
            detail = versions(EXTRAS[backend.extra].modules) if backend.extra in EXTRAS else detail[2:].strip(" ()") or "ok"
        out.append((f"{backend.name} backend ({backend.summary})", usable, detail))
    out += [_modules_row(EXTRAS[e].purpose, EXTRAS[e].modules, install_hint(e)) for e in _TOOLING]
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    out.append(("headless chromium (report tests)", bool(chromium), chromium or "not found; fix: apt-get install chromium"))
    return out


def doctor(output_format: FormatOpt = OutputFormat.human, quiet: QuietOpt = False, verbose: VerboseOpt = False) -> None:
    """List every backend and component, whether it is usable on this machine (with the installed versions), and how to
    fix it if not. Exits 0 either way: a missing backend is only a problem for its targets."""
    set_verbosity(quiet, verbose)
    table = rows()
    if output_format == OutputFormat.json:
        import json

        typer.echo(json.dumps([{"component": n, "usable": u, "detail": d} for n, u, d in table], indent=2))
        return
    import platform
    import sys

    from edgekit._version import __version__

    if not quiet:
        typer.echo(f"edgekit {__version__}, Python {sys.version.split()[0]}, {platform.platform()}")
    width = max(len(n) for n, _, _ in table)
    for name, usable, detail in table:
        typer.echo(f"{'ok' if usable else 'NO'}  {name:<{width}}  {detail}")
