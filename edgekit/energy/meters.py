"""Measured energy from hardware counters: RAPL through the Linux powercap interface, NVML on NVIDIA GPUs.

Protocol (shared/reference/energy.md section 6): an idle window, then a window of at least `min_window_s` seconds
running the workload repeatedly; dynamic energy = window energy - idle power x window time, per inference. Counters
wrap (RAPL at max_energy_range_uj) and are handled. A window in which a counter did not advance, or a dynamic energy
that is zero or negative, is never reported as a result: the reading says why instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgekit._optional import require


@dataclass(frozen=True)
class Reading:
    """A measurement, or why there is none (value None)."""

    dynamic_uj_per_inference: float | None
    total_uj_per_inference: float | None
    inferences: int
    window_s: float
    how: str


class RaplSource:
    """Package-level RAPL domains under a powercap root: sum of intel-rapl:N/energy_uj (microjoules)."""

    def __init__(self, root: str | Path = "/sys/class/powercap"):
        self.root = Path(root)
        self.domains = sorted(p for p in self.root.glob("intel-rapl:*") if ":" not in p.name.split("intel-rapl:")[1])

    def available(self) -> tuple[bool, str]:
        if not self.domains:
            return False, f"no RAPL package domain under {self.root} (virtual machine or non-Intel/AMD counters)"
        try:
            self.read()
        except OSError as exc:
            return False, f"RAPL counters unreadable ({exc}); fix: run as root or relax /sys/class/powercap permissions"
        return True, f"RAPL {', '.join((d / 'name').read_text().strip() for d in self.domains)}"

    def read(self) -> list[int]:
        return [int((d / "energy_uj").read_text()) for d in self.domains]

    def ranges(self) -> list[int]:
        return [int((d / "max_energy_range_uj").read_text()) for d in self.domains]

    def delta_uj(self, before: list[int], after: list[int]) -> float:
        total = 0
        for b, a, top in zip(before, after, self.ranges()):
            total += a - b if a >= b else a + top - b  # the counter wrapped once
        return float(total)


class NvmlSource:
    """Total board energy since driver load (millijoules), from a callable returning the counter."""

    def __init__(self, read_mj: Callable[[], int] | None = None, index: int = 0):
        self._read = read_mj or self._nvml(index)

    @staticmethod
    def _nvml(index: int) -> Callable[[], int]:
        pynvml = require("pynvml", "measuring GPU energy with NVML")
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        return lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)

    def available(self) -> tuple[bool, str]:
        return True, "NVML total energy counter"

    def read(self) -> list[int]:
        return [int(self._read())]

    def delta_uj(self, before: list[int], after: list[int]) -> float:
        return float(after[0] - before[0]) * 1000.0  # the NVML counter does not wrap within a process' lifetime


def measure(source, workload: Callable[[], object], min_window_s: float = 1.0, idle_s: float = 1.0,
            clock: Callable[[], float] = time.perf_counter, sleep: Callable[[float], None] = time.sleep) -> Reading:
    ok, why = source.available()
    if not ok:
        return Reading(None, None, 0, 0.0, f"not measured: {why}")
    before = source.read()
    t0 = clock()
    sleep(idle_s)
    idle_t = clock() - t0
    idle_e = source.delta_uj(before, source.read())
    start_counter, start = source.read(), clock()
    n = 0
    while clock() - start < min_window_s or n < 1:
        workload()
        n += 1
    window = clock() - start
    total = source.delta_uj(start_counter, source.read())
    if total <= 0:
        return Reading(None, None, n, window, f"not measured: the counter did not advance in a {window:.2f} s window ({why})")
    dynamic = total - idle_e / max(idle_t, 1e-9) * window
    if dynamic <= 0:
        return Reading(None, None, n, window, f"not measured: dynamic energy {dynamic:.0f} uJ is not positive "
                                              f"(idle {idle_e / max(idle_t, 1e-9):.0f} uW): the workload is lost in the noise")
    return Reading(dynamic / n, total / n, n, window,
                   f"measured: {why}, {n} inferences in {window:.2f} s, idle power over {idle_t:.2f} s subtracted")
