"""The pipeline holds every pass to its contract, and the pass cache keys on the pass's own code."""

from pathlib import Path
from typing import ClassVar

import pytest

from edgekit.artifact import Artifact, Format
from edgekit.cache import cache_key
from edgekit.code_digest import _closure, code_digest
from edgekit.context import Context
from edgekit.errors import PassFailedError
from edgekit.models.card import InputSpec, ModelCard, OutputSpec
from edgekit.passes.base import REGISTRY, Pass
from edgekit.pipeline import Pipeline


class _Copy(Pass):
    """onnx -> onnx: copies its input (or misbehaves as told)."""

    name: ClassVar[str] = "_contract_copy"
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.onnx})
    produces: ClassVar[Format] = Format.onnx
    misbehave: str = ""

    def run(self, src: Artifact, ctx, out_dir: Path) -> Artifact:
        data = src.path.read_bytes()
        if self.misbehave == "crash":
            raise RuntimeError("converter exploded\nwith a long C++ trace")
        if self.misbehave == "modify":
            src.path.write_bytes(data + b"!")
        dest = ctx.work_dir.parent / "elsewhere.onnx" if self.misbehave == "outside" else out_dir / "model.onnx"
        dest.write_bytes(data)
        fmt = Format.tflite if self.misbehave == "format" else Format.onnx
        return Artifact.create(dest, fmt, src)


REGISTRY.pop(_Copy.name)  # a test pass: never listed by `edgekit passes`


def _context(tmp_path: Path) -> Context:
    card = ModelCard(name="t", arch="external", inputs=[InputSpec(name="image", shape=[1, 1, 4, 4])], output=OutputSpec(shape=[1, 3]))
    return Context(work_dir=tmp_path / "work", card=card, cache_dir=None)


def _source(tmp_path: Path) -> Artifact:
    path = tmp_path / "in.onnx"
    path.write_bytes(b"not really onnx, but bytes")
    return Artifact.create(path, Format.onnx)


def test_each_broken_contract_is_one_line_naming_the_pass_and_those_before(tmp_path):
    cases = {"crash": "failed: RuntimeError: converter exploded", "format": "produced tflite, but declares onnx",
             "outside": "lies outside its folder", "modify": "it modified its input"}
    for misbehave, expected in cases.items():
        src = _source(tmp_path)
        pipeline = Pipeline([_Copy(), _Copy(misbehave=misbehave)])
        with pytest.raises(PassFailedError) as info:
            pipeline.run(src, _context(tmp_path / misbehave))
        message = str(info.value)
        assert expected in message and "pass _contract_copy, after _contract_copy" in message, message
        assert "\n" not in message and "fix:" in message
    good = Pipeline([_Copy(), _Copy()]).run(_source(tmp_path), _context(tmp_path / "good"))
    assert [s.artifact.format for s in good] == [Format.onnx, Format.onnx]
    assert good[-1].artifact.path.read_bytes() == b"not really onnx, but bytes"


def test_the_cache_key_follows_the_code_of_the_pass_and_what_it_imports():
    assert {"edgekit.passes.fold_bn", "edgekit.torch_module", "edgekit.artifact"} <= _closure("edgekit.passes.fold_bn")
    assert "edgekit.backends.onnx.ptq" not in _closure("edgekit.passes.fold_bn")
    assert code_digest("edgekit.passes.fold_bn") != code_digest("edgekit.backends.onnx.export")
    key = lambda code: cache_key("p", 1, {}, "in", None, {}, {}, code)  # noqa: E731
    assert key(code_digest("edgekit.passes.fold_bn")) != key(code_digest("edgekit.backends.onnx.export"))
