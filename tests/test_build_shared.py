"""The passes several targets of a model share: which ones `edgekit build --executor ray` runs once per model, the
cache key that lets targets calibrated differently share a data-free pass, and the folder packing that carries a
private cache or an output through Ray's object store. (The Ray builds themselves: test_build_ray.py.)"""

import io
import json
import tarfile
from pathlib import Path
from typing import ClassVar

import pytest

from edgekit.artifact import Artifact, Format
from edgekit.build import Job, load_project
from edgekit.build_shared import gpus, pack, shared_prefixes, unpack
from edgekit.context import Context
from edgekit.models.card import InputSpec, ModelCard, OutputSpec
from edgekit.passes.base import REGISTRY, Pass
from edgekit.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[1]
INT8 = (ROOT / "edgekit" / "targets" / "onnx-int8.yaml").read_text()


def _todo(project: Path, cache: bool = True) -> list[Job]:
    p = load_project(project)
    return [Job(m, t, Path("dist") / m.name / Path(t).stem, project.parent, cache) for m in p.models for t in p.targets]


def _project(tmp_path: Path, targets: list[str], models=("tinygaze",)) -> Path:
    path = tmp_path / "edgekit.yaml"
    path.write_text("models:\n" + "".join(f"  - name: {m}\n" for m in models) + f"targets: {targets}\n")
    return path


def test_the_shipped_project_shares_fold_bn_and_export_once():
    # onnx, onnx-fp16 and onnx-int8 start with fold_bn | export_onnx; every other target with fold_bn alone, which
    # that longer prefix runs too (the calibrated targets share both: neither pass reads the calibration set)
    assert shared_prefixes(_todo(ROOT / "edgekit.yaml")) == {"tinygaze": [("onnx", 2)]}


def test_what_is_shared_follows_the_passes_and_their_calibration(tmp_path):
    assert shared_prefixes(_todo(_project(tmp_path, ["coreml", "tflite-int8"], ("tinygaze", "gazeresnet18")))) == {
        "tinygaze": [("coreml", 1)], "gazeresnet18": [("coreml", 1)]}
    assert shared_prefixes(_todo(_project(tmp_path, ["onnx-int8"]))) == {}  # nothing to share with
    assert shared_prefixes(_todo(_project(tmp_path, ["onnx", "onnx-fp16"]), cache=False)) == {}  # --no-cache
    # the same passes, timed differently: all three shared, ptq included
    (tmp_path / "slow.yaml").write_text(INT8.replace("name: onnx-int8", "name: slow").replace("runs: 200", "runs: 900"))
    assert shared_prefixes(_todo(_project(tmp_path, ["onnx-int8", "slow.yaml"]))) == {"tinygaze": [("onnx-int8", 3)]}
    # a stricter gate is also ptq's search target (unset ptq options follow the gates): ptq differs
    (tmp_path / "strict.yaml").write_text(INT8.replace("name: onnx-int8", "name: strict").replace("3.0", "2.0"))
    assert shared_prefixes(_todo(_project(tmp_path, ["onnx-int8", "strict.yaml"]))) == {"tinygaze": [("onnx-int8", 2)]}
    # calibrated on another set: ptq (which reads it) is not shared, fold_bn and export are
    (tmp_path / "other.yaml").write_text(INT8.replace("name: onnx-int8", "name: other")
                                         .replace("synthetic-512", "synthetic-256"))
    assert shared_prefixes(_todo(_project(tmp_path, ["onnx-int8", "other.yaml"]))) == {"tinygaze": [("onnx-int8", 2)]}


def test_a_task_reserves_a_gpu_only_for_passes_that_train_on_one():
    """The workflow's GPU example: its QAT target trains on a GPU; onnx and the shared fold_bn run on CPUs."""
    todo = {j.target: j for j in _todo(ROOT / "examples" / "gpu-cluster" / "edgekit.yaml")}
    assert {t: gpus(j) for t, j in todo.items()} == {"onnx": 0, "onnx-int8-qat-gpu.yaml": 1}
    plan = shared_prefixes(list(todo.values()))
    assert plan == {"gazeresnet18": [("onnx", 1)]} and gpus(todo["onnx-int8-qat-gpu.yaml"], 1) == 0  # fold_bn alone
    assert [gpus(j) for j in _todo(ROOT / "edgekit.yaml")] == [0] * 12  # the shipped project: CPUs only


class _Append(Pass):
    """onnx -> onnx: its input plus one byte; reads the calibration set only if told it may."""

    name: ClassVar[str] = "_shared_append"
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.onnx})
    produces: ClassVar[Format] = Format.onnx

    def run(self, src: Artifact, ctx, out_dir: Path) -> Artifact:
        (out_dir / "model.onnx").write_bytes(src.path.read_bytes() + b"+")
        return Artifact.create(out_dir / "model.onnx", Format.onnx, src)


class _DataFree(_Append):
    name: ClassVar[str] = "_shared_data_free"
    uses_calibration: ClassVar[bool] = False


for _test_pass in (_Append, _DataFree):
    REGISTRY.pop(_test_pass.name)  # test passes: never listed by `edgekit passes`


class _Set:
    def __init__(self, digest: str):
        self._digest = digest

    def digest(self) -> str:
        return self._digest


def test_a_pass_that_reads_no_calibration_set_is_cached_across_sets(tmp_path):
    card = ModelCard(name="t", arch="external", inputs=[InputSpec(name="image", shape=[1, 1, 4, 4])],
                     output=OutputSpec(shape=[1, 3]))
    src_path = tmp_path / "in.onnx"
    src_path.write_bytes(b"bytes")
    src = Artifact.create(src_path, Format.onnx)
    pipeline = Pipeline([_DataFree(), _Append()])

    def run(calib: str):
        ctx = Context(work_dir=tmp_path / calib, card=card, calib=_Set(calib), cache_dir=tmp_path / "cache")
        return [s.cached for s in pipeline.run(src, ctx)]

    assert run("set-a") == [False, False]
    assert run("set-b") == [True, False]  # the calibrated pass runs again on the other set
    assert run("set-a") == [True, True]
    ctx = Context(work_dir=tmp_path / "upto", card=card, calib=_Set("set-c"), cache_dir=tmp_path / "cache")
    assert [s.pass_ for s in pipeline.run(src, ctx, upto=1)] == ["_shared_data_free"]


def test_a_packed_folder_comes_back_whole_and_a_crafted_one_cannot_escape(tmp_path):
    folder = tmp_path / "cache"
    (folder / "passes" / "ab").mkdir(parents=True)
    (folder / "passes" / "ab" / "model.onnx").write_bytes(b"\x00weights")
    (folder / "empty").mkdir()
    unpack(pack(folder), tmp_path / "copy")
    assert sorted(str(p.relative_to(tmp_path / "copy")) for p in (tmp_path / "copy").rglob("*")) == [
        "empty", "passes", "passes/ab", "passes/ab/model.onnx"]
    assert (tmp_path / "copy" / "passes" / "ab" / "model.onnx").read_bytes() == b"\x00weights"
    crafted = io.BytesIO()
    with tarfile.open(fileobj=crafted, mode="w") as tar:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(tarfile.OutsideDestinationError):
        unpack(crafted.getvalue(), tmp_path / "victim")
    assert not (tmp_path / "outside.txt").exists()


@pytest.mark.slow
def test_a_project_model_with_its_card_elsewhere_builds_on_ray_without_a_shared_cache(tmp_path, monkeypatch):
    """A zoo model (not one of edgekit's): weights, `arch` and a card named as the user likes (`card:`), through the
    object-store path: the shared passes reach both targets, and nothing lands in the driver's cache."""
    from edgekit.build import build

    pytest.importorskip("ray")
    weights = ROOT / "tests" / "zoo" / "weights"
    (tmp_path / "lenet.safetensors").write_bytes((weights / "mpiigaze_lenet.safetensors").read_bytes())
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "lenet.json").write_text((weights / "mpiigaze_lenet.card.json").read_text())
    project = tmp_path / "edgekit.yaml"
    project.write_text("models:\n  - name: lenet\n    source: lenet.safetensors\n    arch: tests.zoo.models:MPIIGazeLeNet\n"
                       "    card: cards/lenet.json\ntargets: [onnx, onnx-fp16]\n")
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "driver-cache"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the workers import the zoo's architecture
    manifest = build(project, tmp_path / "dist", jobs=2, executor="ray", shared_cache=False)
    assert [e["status"] for e in manifest["artifacts"]] == ["passed", "passed"], manifest["artifacts"]
    report = json.loads((tmp_path / "dist" / "lenet" / "onnx-fp16" / "report.json").read_text())
    assert [s["cached"] for s in report["steps"]] == [True, True, False]
    assert not (tmp_path / "driver-cache").exists()
