"""Run a process as on an x86 CPU without AVX-512, VNNI and AMX: tests/avx2_only.c masks CPUID for it (how and
why: that file). onnxruntime, XNNPACK (LiteRT), torch and numpy then pick their AVX2 kernels, the ones a CPU without
VNNI runs, so a host with VNNI can check what such a CPU computes."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("avx2_only.c")
MASKED = "EDGEKIT_AVX2_ONLY"  # set (to the library's path) in a process that a benchmark reran under the mask


def unavailable() -> str | None:
    """Why this host cannot mask CPUID, or None when it can."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"CPUID masking needs an x86-64 CPU, not {platform.machine()}"
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    if "cpuid_fault" not in flags:
        return "this CPU cannot fault on CPUID (no cpuid_fault in /proc/cpuinfo)"
    if not shutil.which("cc"):
        return "no C compiler (cc) to build tests/avx2_only.c"
    return None


def build(folder: Path) -> Path:
    """The masking library, compiled into `folder`."""
    library = folder / "avx2_only.so"
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(library), str(SOURCE)], check=True, capture_output=True)
    return library


def environment(library: Path) -> dict[str, str]:
    """This process's environment with the mask preloaded (for a child; never for a process with its own SIGSEGV
    handler, such as perf or Python with faulthandler on)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONFAULTHANDLER"}
    return {**env, "LD_PRELOAD": str(library)}


def rerun_masked(program: str) -> None:
    """A benchmark's --avx2-only: build the library and run the same command again under it; exit with its status.
    The rerun has MASKED set, so it knows (masked()) and passes the mask on to its own children (preload())."""
    reason = unavailable()
    if reason:
        sys.exit(f"{program}: --avx2-only cannot run here: {reason}; fix: run without it on a CPU that has no VNNI")
    with tempfile.TemporaryDirectory() as tmp:
        library = build(Path(tmp))
        env = {**environment(library), MASKED: str(library)}
        sys.exit(subprocess.run([sys.executable, *sys.argv], env=env).returncode)


def add_option(parser) -> None:
    """A benchmark's --avx2-only flag (rerun_if_asked acts on it)."""
    parser.add_argument("--avx2-only", action="store_true", help="run as on a CPU without AVX-512 and VNNI (CPUID masked)")


def rerun_if_asked(avx2_only: bool, program: str) -> None:
    """With --avx2-only, outside the mask: run the same command again under it (rerun_masked; exits)."""
    if avx2_only and not os.environ.get(MASKED):
        rerun_masked(program)


def masked() -> bool:
    """This process runs under the mask, and the mask took: numpy's own CPUID probe (at its import) saw no AVX-512."""
    if not os.environ.get(MASKED):
        return False
    from numpy._core._multiarray_umath import __cpu_features__

    if __cpu_features__.get("AVX512F") or __cpu_features__.get("AVX512VNNI"):
        sys.exit("the CPUID mask did not take (numpy still sees AVX-512)")
    return True


def preload() -> list[str]:
    """The prefix that starts a child under this process's mask (`env LD_PRELOAD=...`), or nothing."""
    return ["env", f"LD_PRELOAD={os.environ[MASKED]}"] if os.environ.get(MASKED) else []
