"""This machine as edgekit sees it: the cache root, the host's CPU and ISA flags, the installed tool versions.

Read once per process (the pass cache key and every report use them).
"""

from __future__ import annotations

import functools
import os
import platform
from importlib import metadata
from pathlib import Path

from edgekit.extras import versioned_distributions

_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "neon", "asimd")


_parallel_compiles = 1


def set_parallel_compiles(n: int) -> None:
    """`edgekit build --jobs N` (and pytest-xdist's N workers) run N compiles at once: each process says so before its
    first compile, so that what a compile runs beside itself (the reference's worker, rendering pools) leaves the
    other compiles their cores."""
    global _parallel_compiles
    _parallel_compiles = max(1, n)


def parallel_compiles() -> int:
    return _parallel_compiles


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS says, else every core)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def spare_memory_bytes() -> int:
    """Memory this process can take without pushing other work out: the kernel's MemAvailable, within what the
    cgroup's limit leaves where one is set (a container's /proc/meminfo shows the whole host's memory); without
    /proc, the free memory, or a quarter of the physical memory (macOS)."""
    spare = _meminfo_available()
    limit, used = _read_int("/sys/fs/cgroup/memory.max"), _read_int("/sys/fs/cgroup/memory.current")
    if limit is not None and used is not None:
        spare = min(spare, max(limit - used, 0))
    return spare


def _meminfo_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    for name, share in (("SC_AVPHYS_PAGES", 1), ("SC_PHYS_PAGES", 4)):
        try:
            return os.sysconf(name) * os.sysconf("SC_PAGE_SIZE") // share
        except (ValueError, OSError, AttributeError):
            continue
    return 256 << 20  # no sysconf (Windows): assume little


def _read_int(path: str) -> int | None:
    """An integer file's value; None where it is missing or not a number (a cgroup without a limit reads "max")."""
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def cache_root() -> Path:
    """Where edgekit keeps rendered sets, pass outputs and reports: $EDGEKIT_CACHE_DIR, else the user cache folder."""
    return Path(os.environ.get("EDGEKIT_CACHE_DIR")
                or os.path.join(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "edgekit"))


@functools.lru_cache(maxsize=1)
def host_info() -> dict:
    """CPU model and ISA flags."""
    model, flags = platform.processor() or "unknown", []
    try:
        text = open("/proc/cpuinfo").read()
        for line in text.splitlines():
            if line.startswith("model name") and model in ("unknown", "", platform.machine()):
                model = line.split(":", 1)[1].strip()
            if line.startswith(("flags", "Features")):
                present = set(line.split(":", 1)[1].split())
                flags = [f for f in _FLAGS if f in present]
                break
    except OSError:
        pass
    return {"cpu": model, "isa_flags": flags, "cores": os.cpu_count(), "machine": platform.machine(),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version()}


def cpu_label() -> str:
    """The CPU's model name and the ISA flags INT8 speed depends on, for benchmark pages: "NAME (avx2, ...)"."""
    info = host_info()
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in info["isa_flags"]]
    return f"{info['cpu']} ({', '.join(isa) or 'no AVX2'})"


def has_vnni() -> bool:
    return any(f in host_info()["isa_flags"] for f in ("avx512_vnni", "avx_vnni"))


def tool_versions() -> dict[str, str]:
    """Installed versions of edgekit and every tool that shapes an artifact (extras.py says which)."""
    versions = {}
    for dist in versioned_distributions():
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions
