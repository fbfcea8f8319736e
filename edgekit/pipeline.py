"""Pipelines: an ordered list of passes, checked link by link, printed as one line, run with a cache."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass

from edgekit.artifact import Artifact, Format
from edgekit.cache import REBUILT, Cache, cache_key, tool_versions
from edgekit.context import Context
from edgekit.errors import BadInputError, EdgekitError
from edgekit.passes.base import Pass


@dataclass(frozen=True)
class Step:
    pass_: str
    artifact: Artifact
    cached: bool
    seconds: float


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

    def run(self, src: Artifact, ctx: Context) -> list[Step]:
        cache = Cache(ctx.cache_dir, log=ctx.log) if ctx.cache_dir else None
        ctx.pipeline = str(self)
        from edgekit.verify import host_info

        # quantized kernels and their saturation depend on the ISA, so it is part of every key
        tools = {**tool_versions(), "host_isa": ",".join(host_info()["isa_flags"])}
        card = json.loads(ctx.card.model_dump_json(include={"inputs", "output", "arch", "arch_config"}))
        steps, art, done = [], src, []
        runnable = self.runnable_from(src.format)
        skipped = [p.name for p in self.passes[:len(self.passes) - len(runnable)]]
        if skipped:
            ctx.log(f"skipping {', '.join(skipped)}: they do not apply to a {src.format.value} input")
        for p in runnable:
            key = cache_key(p.name, p.version, p.model_dump(mode="json"), art.sha256, ctx.calib_digest, card, tools)
            started = time.perf_counter()
            hit = cache.get(key) if cache else None
            if hit is None:
                out_dir = ctx.work_dir / f"{len(steps):02d}-{p.name}"
                shutil.rmtree(out_dir, ignore_errors=True)
                out_dir.mkdir(parents=True)
                ctx.log(f"running {p}")
                try:
                    result = p.run(art, ctx, out_dir)
                except EdgekitError as exc:
                    after = f", after {', '.join(done)}" if done else ""
                    raise type(exc)(f"{exc} [in pass {p.name}{after}]") from None
                art = cache.put(key, result, out_dir) if cache else result
                if cache and key in cache.discarded:  # said in the report too, not only in the log
                    note = f"{REBUILT} ({cache.discarded[key]})"
                    art = art.model_copy(update={"meta": {**art.meta, "notes": [*art.meta.get("notes", []), note]}})
            else:
                art = hit
            steps.append(Step(str(p), art, hit is not None, time.perf_counter() - started))
            done.append(p.name)
        return steps
