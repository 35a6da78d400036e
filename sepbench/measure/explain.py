"""One case measured and profiled on the spot, for `sepbench explain` when no results have it: the
same steps a run takes for it (pinned cores, the timer, then the profile), without a results file."""

from __future__ import annotations

from sepbench import theory
from sepbench.case import Case
from sepbench.grid import MeasureSettings
from sepbench.measure import attribution
from sepbench.measure.environment import fingerprint
from sepbench.measure.peaks import measure_peaks
from sepbench.measure.runner import default_threads
from sepbench.measure.timer import check_threads, cores_for, intra_op_threads, measure_interleaved, pinned, synchronizer
from sepbench.measure.workload import Workload, backend_flags, require_device
from sepbench.records import Attribution


def measure_case(case: Case, threads: int | None = None) -> tuple[Attribution, float, int, str]:
    """The case's attribution, its timer median, its step FLOPs, and where it was measured."""
    require_device(case.device)
    threads = threads or default_threads([case.device])[0]
    check_threads(threads)
    with pinned(cores_for(threads)), intra_op_threads(threads), backend_flags(case):
        peaks = measure_peaks(case.device, threads)
        work = Workload(case)
        timing = measure_interleaved({"case": work.step}, synchronizer(case.device), threads=threads,
                                     cpu_bound=case.device != "cuda", **MeasureSettings().interleaved())["case"]
        att = attribution.attribute(case, work, peaks, attribution.event_cost())
    env = fingerprint(case.device, threads)
    return (att, timing.median, theory.case_cost(case).flops(case.mode),
            f"{env['machine']} torch {env['torch']}, {threads} threads")
