"""tests/avx2_only.py's command-line helpers, shared by the benchmarks that can run as on a CPU without VNNI."""

import argparse

from tests import avx2_only


def test_avx2_only_reruns_masked_only_when_asked_and_not_yet_masked(monkeypatch):
    reruns = []
    monkeypatch.setattr(avx2_only, "rerun_masked", reruns.append)
    parser = argparse.ArgumentParser()
    avx2_only.add_option(parser)
    assert parser.parse_args([]).avx2_only is False and parser.parse_args(["--avx2-only"]).avx2_only is True
    monkeypatch.delenv(avx2_only.MASKED, raising=False)
    avx2_only.rerun_if_asked(False, "bench")
    assert reruns == []
    avx2_only.rerun_if_asked(True, "bench")
    assert reruns == ["bench"]
    monkeypatch.setenv(avx2_only.MASKED, "/tmp/avx2_only.so")  # the rerun itself: no second rerun
    avx2_only.rerun_if_asked(True, "bench")
    assert reruns == ["bench"]
