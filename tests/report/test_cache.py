"""The report cache key covers every edgekit source a report depends on, backends included."""

from __future__ import annotations

from pathlib import Path

import edgekit
from edgekit.report import cache


def test_code_digest_covers_the_whole_package(monkeypatch, tmp_path):
    assert cache.PACKAGE_ROOT == Path(edgekit.__file__).resolve().parent
    before = cache.code_digest()
    copy = tmp_path / "edgekit"
    for f in cache.PACKAGE_ROOT.rglob("*"):
        if f.suffix in (".py", ".yaml") and "__pycache__" not in f.parts:
            (copy / f.relative_to(cache.PACKAGE_ROOT)).parent.mkdir(parents=True, exist_ok=True)
            (copy / f.relative_to(cache.PACKAGE_ROOT)).write_bytes(f.read_bytes())
    monkeypatch.setattr(cache, "PACKAGE_ROOT", copy)
    cache.code_digest.cache_clear()
    try:
        assert cache.code_digest() == before  # the same sources, the same key
        runner = copy / "backends" / "tflite" / "runner.py"
        runner.write_text(runner.read_text() + "\n# a changed backend\n")
        cache.code_digest.cache_clear()
        assert cache.code_digest() != before  # a report made by the old backend is not served
    finally:
        cache.code_digest.cache_clear()
