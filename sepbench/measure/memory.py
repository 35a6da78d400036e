"""Peak memory of one case, each figure named by its method.

CPU: Linux keeps no resettable peak in `psutil`'s RSS, and allocator state from earlier cases would
hide a later case's rise, so each case runs in a fresh child process. The child builds module and
input, takes its RSS as the baseline, resets the high-water mark (`/proc/self/clear_refs` ← 5) and
reports `VmHWM` − baseline after a few steps; where the reset is refused, the lifetime
`ru_maxrss` stands in. Children fork from a forkserver that has imported torch but run nothing, so
a child costs milliseconds, not a torch import, and starts with no OpenMP pool to break on fork.

CUDA: the caching allocator's peak (`max_memory_allocated` after `reset_peak_memory_stats`) rise
over the baseline, plus NVML's device-wide used memory and this process's own usage. NVML and CUDA
are touched only when a CUDA case runs, never at import.
"""

from __future__ import annotations

import contextlib
import gc
import os
import resource
import sys
from multiprocessing.connection import Connection
from typing import Any

import psutil

from sepbench.case import Case
from sepbench.measure import fresh
from sepbench.records import MemoryFigures

PROBE_STEPS = 3
PROBE_TIMEOUT_S = 600.0


def _hwm_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _hwm_bytes() is not None


def _report(conn: Connection, message: tuple) -> None:
    """Send the result; if the parent is gone (interrupted), there is no one to tell."""
    with contextlib.suppress(OSError):
        conn.send(message)


def _cpu_child(case: Case, threads: int, conn: Connection) -> None:
    try:
        import torch

        from sepbench.measure.workload import Workload

        torch.set_num_threads(threads)
        work = Workload(case)
        gc.collect()
        baseline = psutil.Process().memory_info().rss
        resettable = _reset_hwm()
        for _ in range(PROBE_STEPS):
            work.step()
        peak = _hwm_bytes() if resettable else None
        if peak is not None:
            method = "rss: VmHWM rise in a fresh child (clear_refs reset)"
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
            method = "rss: ru_maxrss rise in a fresh child"
        if peak < baseline:  # a peak below the RSS already held is no reading: say so, never store 0
            _report(conn, ("error", 0, f"{method} unreadable: peak {peak} B below the baseline {baseline} B"))
        else:
            _report(conn, ("ok", peak - baseline, method))
    except MemoryError:
        _report(conn, ("oom", 0, "out of memory"))
    except BaseException as exc:  # the parent records what went wrong and carries on
        _report(conn, ("error", 0, f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


class ProbeFailed(RuntimeError):
    """The child could not measure the case (out of memory, crash, time-out)."""


def cpu_peak(case: Case, threads: int, timeout: float = PROBE_TIMEOUT_S) -> MemoryFigures:
    """Peak RSS rise of `PROBE_STEPS` steps of the case, in a fresh child process."""
    try:
        status, value, method = fresh.call(_cpu_child, (case, threads), timeout, "memory probe")
    except fresh.FreshFailed as exc:
        raise ProbeFailed(str(exc)) from None
    if status != "ok":
        raise ProbeFailed(method)
    return MemoryFigures(cpu_rss_rise_bytes=value, cpu_method=method)


def _nvml(device_index: int) -> tuple[int | None, int | None, str]:
    """(device used, this process's used, method) from NVML, or Nones with the reason."""
    try:
        import pynvml
    except ImportError:
        return None, None, "nvml: pynvml not installed"
    try:
        import torch

        pynvml.nvmlInit()
        props = torch.cuda.get_device_properties(device_index)
        bus = getattr(props, "pci_bus_id", None)
        if bus is not None:
            domain, device = getattr(props, "pci_domain_id", 0), getattr(props, "pci_device_id", 0)  # newer torch
            pci = f"{domain:08x}:{bus:02x}:{device:02x}.0"
            handle = pynvml.nvmlDeviceGetHandleByPciBusId(pci)
        else:
            handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
        used = int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
        mine = next((int(p.usedGpuMemory) for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
                     if p.pid == os.getpid() and p.usedGpuMemory is not None), None)
        return used, mine, "nvml: device used after the steps; process usage by pid (context included)"
    except Exception as exc:  # NVML raises its own error types; any of them means "no figure"
        return None, None, f"nvml: unavailable ({type(exc).__name__})"


def cuda_peak(step: Any, device_index: int = 0) -> MemoryFigures:
    """Allocator peak rise of `PROBE_STEPS` calls of `step`, then NVML's view of the device."""
    import torch

    torch.cuda.synchronize()
    baseline = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    for _ in range(PROBE_STEPS):
        step()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - baseline
    used, mine, method = _nvml(device_index)
    return MemoryFigures(
        cuda_alloc_peak_bytes=int(peak),
        cuda_alloc_method="cuda: max_memory_allocated rise (caching allocator, after reset_peak_memory_stats)",
        nvml_device_used_bytes=used, nvml_process_bytes=mine, nvml_method=method,
    )
