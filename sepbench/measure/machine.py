"""Did a timed block have the machine? What a process can read about its own block without hardware
counters, and the verdict drawn from it.

A 2-vCPU VM loses blocks in ways `top` never shows: another process preempts the measuring thread,
the hypervisor steals the vCPU, or a co-tenant on the hyperthread sibling slows every instruction.
The first two leave traces the process can read at a block's edges: the CPU time it got (all its
threads, `getrusage`), the time its thread waited on a run queue (`/proc/self/schedstat`), its
involuntary context switches, and the system's steal (`/proc/stat`). The third leaves none; a
fixed reference workload timed before each round (`probe`) shows it as a slower machine.

The thresholds are set from `benchmarks/contention.py`, whose files are under `results/machine/`:
a quiet block of 10–40 ms gets ≥ 99 % of its wall time as CPU time and waits ~0, while a block that
shared its core with a busy process got 50–60 %.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

# A block is contended when the process ran on a CPU for less than this share of the block's wall time
# (times its threads), or waited on a run queue, or lost to steal, for more than this share of it.
CPU_SHARE_MIN = 0.95
WAIT_SHARE_MAX = 0.03
STEAL_SHARE_MAX = 0.03
# rusage CPU time is exact to the microsecond on current kernels; below this the share is not judged.
CPU_MIN_WALL_S = 0.005

_USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _schedstat() -> tuple[float, float] | None:
    """(seconds on a CPU, seconds waiting for one) of the calling thread's task; None where the kernel
    keeps no schedstats."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as f:
            run_ns, wait_ns, _ = f.read().split()
        return int(run_ns) / 1e9, int(wait_ns) / 1e9
    except (OSError, ValueError):
        return None


def _steal() -> float | None:
    """Seconds stolen by the hypervisor, summed over the machine's CPUs, since boot."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = f.readline().split()
        return int(fields[8]) / _USER_HZ
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class Snapshot:
    wall: float
    cpu: float  # user + system seconds of every thread of the process
    nivcsw: int
    run: float | None  # the measuring thread's seconds on a CPU (schedstat)
    wait: float | None  # and waiting on a run queue
    steal: float | None


def snapshot() -> Snapshot:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    sched = _schedstat()
    return Snapshot(time.perf_counter(), ru.ru_utime + ru.ru_stime, ru.ru_nivcsw,
                    sched[0] if sched else None, sched[1] if sched else None, _steal())


@dataclass(frozen=True)
class BlockCheck:
    """What the machine gave one block: shares of its wall time."""

    wall: float
    cpu_share: float  # CPU time over wall × threads
    wait_share: float | None
    steal_share: float | None
    switches: int  # involuntary context switches

    def reason(self, threads: int = 1, cpu_bound: bool = True) -> str | None:
        """Why the block is contended ('wait', 'steal', 'cpu'), or None when it had the machine.

        `cpu_bound` is False where the thread waits on a device (a CUDA synchronize may sleep), so its
        CPU share says nothing; a block under `CPU_MIN_WALL_S` is judged by the wait and steal alone."""
        if self.wait_share is not None and self.wait_share > WAIT_SHARE_MAX:
            return "wait"
        if self.steal_share is not None and self.steal_share > STEAL_SHARE_MAX:
            return "steal"
        if cpu_bound and self.wall >= CPU_MIN_WALL_S and self.cpu_share < CPU_SHARE_MIN:
            return "cpu"
        return None


def compare(before: Snapshot, after: Snapshot, threads: int = 1) -> BlockCheck:
    wall = max(after.wall - before.wall, 1e-9)
    wait = (after.wait - before.wait) / wall if after.wait is not None and before.wait is not None else None
    steal = (after.steal - before.steal) / wall if after.steal is not None and before.steal is not None else None
    return BlockCheck(wall, (after.cpu - before.cpu) / (wall * threads), wait, steal, after.nivcsw - before.nivcsw)


def checked(block: Callable[[], float], threads: int = 1) -> tuple[float, BlockCheck]:
    """Run a timed block (it returns its own seconds per call) between two snapshots."""
    before = snapshot()
    seconds = block()
    return seconds, compare(before, snapshot(), threads)


# --------------------------------------------------------------------------------------------
# The reference probe: how fast the machine is right now.

_PROBE_N = 96


def probe_workload() -> Callable[[], None]:
    """A fixed, tiny workload on the measuring thread: a 96×96 float32 matmul chain, about 0.1 ms,
    timed in a block of about 1 ms. It runs the same code paths (torch dispatch, a BLAS kernel) at
    every round, so its time follows the core's speed: frequency, a co-tenant on the sibling."""
    import torch

    g = torch.Generator().manual_seed(0)
    a = torch.randn(_PROBE_N, _PROBE_N, generator=g)
    b = torch.randn(_PROBE_N, _PROBE_N, generator=g)
    out = torch.empty(_PROBE_N, _PROBE_N)

    def step() -> None:
        torch.mm(a, b, out=out)

    return step


class Probe:
    """Times the reference workload before each round; remembers every reading."""

    def __init__(self, calls: int = 10) -> None:
        self.step = probe_workload()
        self.calls = calls
        for _ in range(3):
            self.step()
        self.readings: list[float] = []

    def read(self) -> float:
        step = self.step
        start = time.perf_counter()
        for _ in range(self.calls):
            step()
        seconds = (time.perf_counter() - start) / self.calls
        self.readings.append(seconds)
        return seconds


def probe_drift(readings: list[float]) -> float | None:
    """How far the machine's speed moved over a span: the 90th over the 10th percentile of the probe."""
    if len(readings) < 5:
        return None
    ordered = sorted(readings)
    n = len(ordered) - 1
    return ordered[round(0.9 * n)] / ordered[round(0.1 * n)]


# --------------------------------------------------------------------------------------------
# The machine before and after a run.


def _cpu_times() -> list[tuple[float, float]]:
    """(busy, total) ticks of each CPU since boot."""
    rows: list[tuple[float, float]] = []
    with open("/proc/stat", "rb") as f:
        for line in f:
            if line.startswith(b"cpu") and line[3:4].isdigit():
                v = [int(x) for x in line.split()[1:]]
                idle = v[3] + (v[4] if len(v) > 4 else 0)
                rows.append((sum(v[:8]) - idle, sum(v[:8])))
    return rows


def load(seconds: float = 0.3) -> dict[str, float]:
    """How busy the machine's CPUs are now, over a short window in which this process sleeps:
    `other_cores` is the work of other processes in cores (1.0 is one busy process)."""
    try:
        before = _cpu_times()
        steal0 = _steal()
        time.sleep(seconds)
        after = _cpu_times()
        steal1 = _steal()
    except OSError:
        return {}
    shares = [(b1 - b0) / max(t1 - t0, 1) for (b0, t0), (b1, t1) in zip(before, after, strict=False)]
    out = {"other_cores": round(sum(shares), 2), "busiest_core": round(max(shares, default=0.0), 2)}
    if steal0 is not None and steal1 is not None:
        out["steal_share"] = round((steal1 - steal0) / seconds / max(len(shares), 1), 3)
    return out


def busy_line(found: dict[str, float], threads: int, cores: int) -> str | None:
    """The warning a run prints first when other work would share its cores; None on a quiet machine."""
    other = found.get("other_cores", 0.0)
    if other < 0.5:
        return None
    free = max(cores - round(other), 0)
    if threads <= free:
        return (f"the machine is busy: other work keeps {other:.1f} of {cores} cores busy; measuring on "
                f"{threads} pinned core(s), contended blocks are re-taken")
    advice = f" (use --threads {max(free, 1)})" if threads > max(free, 1) else ""
    return (f"the machine is busy: other work keeps {other:.1f} of {cores} cores busy, and {threads} thread(s) "
            f"need {threads} free core(s): expect contended blocks to be re-taken and intervals to widen{advice}")
