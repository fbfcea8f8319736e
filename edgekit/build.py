"""`edgekit build`: every model of a project file times every target, into dist/, with a manifest.

Each (model, target) is compiled like `edgekit compile` (content-addressed pass cache, atomic output folder);
one failing does not stop the others unless fail_fast. dist/ gets per-artifact folders, one comparison page,
manifest.json, a Markdown summary and JUnit XML of the gates, each written atomically.
"""

from __future__ import annotations

import json
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgekit.errors import BadInputError, EdgekitError
from edgekit.fileio import atomic_write_text


class ProjectModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    source: str | None = Field(None, description="as `edgekit compile MODEL` (default: the name as a built-in)")
    arch: str | None = None
    input_shape: list[str] | None = None
    output_convention: str | None = None
    eval_set: str | None = None
    calib_set: str | None = None


class Project(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: list[ProjectModel]
    targets: list[str]


def load_project(path: Path) -> Project:
    if not path.is_file():
        raise BadInputError(f"{path}: project file not found; fix: write an edgekit.yaml (see the README)")
    try:
        return Project.model_validate(yaml.safe_load(path.read_text()))
    except yaml.YAMLError as exc:
        raise BadInputError(f"{path}: not valid YAML ({exc}); fix: correct the syntax") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise BadInputError(f"{path}: {where}: {err['msg']}; fix: see the README's edgekit build section") from None


@dataclass(frozen=True)
class Job:
    model: ProjectModel
    target: str
    out: Path
    root: Path  # project folder: relative paths in the project file are relative to it


def _resolve(root: Path, value: str | None) -> str | None:
    if value is None:
        return None
    path = root / value
    return str(path) if path.exists() else value


def run_job(job: Job) -> dict:
    """Compile one (model, target); never raises: returns the manifest entry or the failure."""
    from edgekit.compiler import compile as run_compile

    m = job.model
    entry = {"model": m.name, "target": job.target}
    try:
        res = run_compile(_resolve(job.root, m.source) or m.name, _resolve(job.root, job.target), out=job.out, arch=m.arch,
                          input_shape=m.input_shape, output_convention=m.output_convention,
                          eval=_resolve(job.root, m.eval_set), calib=_resolve(job.root, m.calib_set))
    except EdgekitError as exc:
        return {**entry, "status": "error", "reason": str(exc)}
    except Exception as exc:  # a bug or a runtime crash: keep building the others, keep the reason
        return {**entry, "status": "error", "reason": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc(limit=3)}
    r = res.report
    return {**entry, "status": "passed" if r.passed else "gate_failed", "pipeline": r.pipeline,
            "artifact": str(res.artifact.relative_to(job.out.parent.parent)), "sha256": r.artifact["sha256"],
            "size_bytes": int(r.size["artifact"].value), "precision": r.artifact["precision"],
            "gates": [g.model_dump() for g in r.gates], "error_deg": r.accuracy.artifact.mean_deg if r.accuracy else None,
            "tools": r.tools, "host_isa": r.host.get("isa_flags"), "inputs_digest": r.inputs_digest,
            "report": str((res.out_dir / "report.json").relative_to(job.out.parent.parent)),
            "cached": all(s.cached for s in r.steps)}


def build(project_path: Path, dist: Path = Path("dist"), jobs: int = 1, fail_fast: bool = False, progress=None) -> dict:
    project = load_project(project_path)
    root = project_path.resolve().parent
    todo = [Job(m, t, dist / m.name / Path(t).stem, root) for m in project.models for t in project.targets]
    results: list[dict] = []
    if jobs <= 1:
        for job in todo:
            results.append(run_job(job))
            if progress:
                progress(results[-1], len(results), len(todo))
            if fail_fast and results[-1]["status"] != "passed":
                break
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(run_job, job) for job in todo]
            for fut in as_completed(futures):
                results.append(fut.result())
                if progress:
                    progress(results[-1], len(results), len(todo))
                if fail_fast and results[-1]["status"] != "passed":
                    for f in futures:
                        f.cancel()
                    break
    order = {(j.model.name, j.target): i for i, j in enumerate(todo)}
    results.sort(key=lambda e: order[(e["model"], e["target"])])
    skipped = [{"model": j.model.name, "target": j.target, "status": "skipped", "reason": "not built (--fail-fast)"}
               for j in todo if (j.model.name, j.target) not in {(e["model"], e["target"]) for e in results}]
    manifest = {"schema_version": 1, "project": project_path.name, "artifacts": results + skipped,
                "ok": all(e["status"] == "passed" for e in results) and not skipped}
    _write_outputs(manifest, dist)
    return manifest


def _write_outputs(manifest: dict, dist: Path) -> None:
    from edgekit.report.compare import write_compare

    dist.mkdir(parents=True, exist_ok=True)
    reports = [dist / e["report"] for e in manifest["artifacts"] if e.get("report")]
    if reports:
        write_compare(reports, dist / "compare.html")
    atomic_write_text(dist / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    atomic_write_text(dist / "summary.md", summary_markdown(manifest))
    atomic_write_text(dist / "junit.xml", junit_xml(manifest))


def summary_markdown(manifest: dict) -> str:
    lines = ["## edgekit build", "", "| model | target | status | error (deg) | size (MB) | gates |", "|---|---|---|---|---|---|"]
    for e in manifest["artifacts"]:
        gates = ", ".join(f"{g['name']} {'ok' if g['passed'] else 'FAILED'}" for g in e.get("gates", [])) or e.get("reason", "")
        err = f"{e['error_deg']:.3f}" if e.get("error_deg") is not None else "-"
        size = f"{e['size_bytes'] / 1e6:.2f}" if e.get("size_bytes") else "-"
        lines.append(f"| {e['model']} | {e['target']} | {e['status']} | {err} | {size} | {gates.replace('|', '/')} |")
    lines += ["", "All artifacts passed." if manifest["ok"] else "Some artifacts failed: see the reasons above.", ""]
    return "\n".join(lines)


def junit_xml(manifest: dict) -> str:
    from xml.sax.saxutils import escape, quoteattr

    cases, failures = [], 0
    for e in manifest["artifacts"]:
        name = f"{e['model']}/{e['target']}"
        if e["status"] in ("error", "skipped"):
            failures += 1
            reason = quoteattr(e["reason"][:300])
            cases.append(f'  <testcase classname="edgekit.build" name={quoteattr(name)}><failure message={reason}/></testcase>')
            continue
        for g in e["gates"]:
            message = quoteattr(f"{g['name']}: {g['value']} against limit {g['limit']}")
            body = "" if g["passed"] else f"<failure message={message}/>"
            failures += not g["passed"]
            cases.append(f'  <testcase classname={quoteattr("edgekit.build." + name)} name={quoteattr(g["name"])}>{body}</testcase>')
        if not e["gates"]:
            cases.append(f'  <testcase classname="edgekit.build" name={quoteattr(name + " (no gates)")}/>')
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="edgekit build" tests="{len(cases)}" failures="{failures}">\n'
            + "\n".join(cases) + f"\n</testsuite>\n<!-- {escape(manifest['project'])} -->\n")
