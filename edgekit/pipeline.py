"""Pipelines: an ordered list of passes, checked link by link, printed as one line, run with a cache."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass

from edgekit import progress
from edgekit.artifact import Artifact, Format, digest_path
from edgekit.cache import REBUILT, Cache, cache_key
from edgekit.environment import host_info, tool_versions
from edgekit.code_digest import code_digest
from edgekit.context import Context
from edgekit.errors import BadInputError, EdgekitError, PassFailedError, disk_full, first_line, from_os_error
from edgekit.passes.base import Pass


@dataclass(frozen=True)
class Step:
    pass_: str
    artifact: Artifact
    cached: bool
    seconds: float


def _run_checked(p: Pass, src: Artifact, ctx: Context, out_dir, done: list[str]) -> Artifact:
    """Run one pass and hold it to the pass contract (as onnx_ir's pass infrastructure does): it produces the format
    it declares, writes only inside its own folder and leaves its input as it was. Any failure is one line naming
    the pass and the passes before it."""
    after = f", after {', '.join(done)}" if done else ""
    try:
        result = p.run(src, ctx, out_dir)
    except EdgekitError as exc:
        full = disk_full(exc.__cause__ or exc.__context__)  # a pass that took the OS's full disk for a model problem
        if full is not None:
            raise full from None
        raise type(exc)(f"{exc} [in pass {p.name}{after}]") from None
    except Exception as exc:  # a converter or runtime crash: one line with the pass, never a traceback
        if isinstance(exc, OSError) and from_os_error(exc) is not None:  # a full disk or an unwritable folder:
            raise  # the CLI says so in one line
        full = disk_full(exc)  # a full disk, under a converter's own error type
        if full is not None:
            raise full from None
        raise PassFailedError(f"pass {p.name}{after} failed: {_described(exc)}") from exc
    broken = _contract_violation(p, src, result, out_dir)
    if broken:
        raise PassFailedError(f"pass {p.name}{after} broke the pass contract: {broken}")
    return result


def _described(exc: Exception) -> str:
    """`Type: first line of the message`, or the type alone when the message is empty."""
    name, text = type(exc).__name__, first_line(exc)
    return name if text == name else f"{name}: {text}"


def _contract_violation(p: Pass, src: Artifact, result, out_dir) -> str | None:
    if not isinstance(result, Artifact):
        return f"returned {type(result).__name__}, not an Artifact"
    if result.format != p.produces:
        return f"produced {result.format.value}, but declares {p.produces.value}"
    try:
        result.path.resolve().relative_to(out_dir.resolve())
    except ValueError:
        return f"its output {result.path} lies outside its folder {out_dir}"
    if digest_path(src.path) != src.sha256:
        return f"it modified its input {src.path}"
    return None


class Pipeline:
    def __init__(self, passes: list[Pass]):
        if not passes:
            raise BadInputError("a pipeline needs at least one pass; fix: list passes in the recipe")
        for a, b in zip(passes, passes[1:]):
            if a.produces not in b.consumes:
                raise BadInputError(f"pipeline link {a.name} -> {b.name} is broken: {a.name} produces {a.produces.value} "
                                    f"but {b.name} consumes {', '.join(sorted(f.value for f in b.consumes))}; fix: reorder "
                                    "or add a conversion pass")
        self.passes = list(passes)

    def __str__(self) -> str:
        return " | ".join(str(p) for p in self.passes)

    @property
    def produces(self) -> Format:
        return self.passes[-1].produces

    def runnable_from(self, fmt: Format) -> list[Pass]:
        """The passes that apply to an input of format `fmt`. Leading passes that cannot take it are skipped when
        a later pass can (a TorchScript, .pt2 or .onnx input has no module for fold_bn; an .onnx input is already
        exported); an input already in the final format runs what remains. Raises when the target is out of reach."""
        passes = list(self.passes)
        while passes and fmt not in passes[0].consumes:
            passes.pop(0)
        if not passes and fmt == self.produces:
            return []
        if not passes:
            raise BadInputError(f"pipeline '{self}' cannot take a {fmt.value} input: none of its passes consumes "
                                f"{fmt.value} (an .onnx input has no PyTorch module); fix: give the PyTorch model, or pick a "
                                "target this input kind can reach (README: which inputs reach which targets)")
        return passes

    def preflight(self, card) -> None:
        """Every pass's card-level check (Pass.preflight), before any pass runs."""
        for p in self.passes:
            p.preflight(card)

    def run(self, src: Artifact, ctx: Context, upto: int | None = None) -> list[Step]:
        """Run every applicable pass (or take it from the cache). Each pass prints a step line (edgekit.progress: name,
        cached or not, seconds) and, at -v, its options and notes (decisions, plan summary, observer choices). `upto`:
        only the applicable passes among the first `upto` (what several targets share: `edgekit build` runs them once
        per model into the cache, with this pipeline's context, so its targets find them cached)."""
        cache = Cache(ctx.cache_dir, log=progress.info) if ctx.cache_dir else None
        ctx = dataclasses.replace(ctx, pipeline=str(self))

        # quantized kernels and their saturation depend on the ISA, so it is part of every key
        tools = {**tool_versions(), "host_isa": ",".join(host_info()["isa_flags"])}
        card = json.loads(ctx.card.model_dump_json(include={"inputs", "output", "arch", "arch_config"}))
        steps, art, done = [], src, []
        runnable = self.runnable_from(src.format)
        skipped = [p.name for p in self.passes[:len(self.passes) - len(runnable)]]
        if upto is not None:
            runnable = runnable[:max(0, upto - len(skipped))]
        if skipped:
            progress.info(f"skipping {', '.join(skipped)}: they do not apply to a {src.format.value} input")
        for p in runnable:
            key = cache_key(p.name, p.version, p.model_dump(mode="json"), art.sha256,
                            ctx.calib_digest if p.uses_calibration else None, card, tools, code_digest(type(p).__module__))
            started = time.perf_counter()
            hit = cache.get(key) if cache else None
            if hit is None:
                out_dir = ctx.work_dir / f"{len(steps):02d}-{p.name}"
                shutil.rmtree(out_dir, ignore_errors=True)
                out_dir.mkdir(parents=True)
                progress.detail(f"running {p}")
                with progress.step(f"pass {p.name}"):
                    result = _run_checked(p, art, ctx, out_dir, done)
                art = cache.put(key, result, out_dir) if cache else result
                if cache and key in cache.discarded:  # said in the report too, not only in the log
                    note = f"{REBUILT} ({cache.discarded[key]})"
                    art = art.with_note(note)
            else:
                art = hit
                progress.info(f"pass {p.name}: cached ({progress.seconds(time.perf_counter() - started)})")
            for note in art.meta.notes:  # most notes already start with the pass name
                progress.detail(note if note.startswith(f"{p.name}:") else f"{p.name}: {note}")
            steps.append(Step(str(p), art, hit is not None, time.perf_counter() - started))
            done.append(p.name)
        return steps
