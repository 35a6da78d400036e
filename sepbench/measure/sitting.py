"""One sitting of a group: its variants built fresh and timed in interleaved rounds.

`sepbench run` takes its sittings in its own process, each on fresh tensors (`in_process`). A
variant's speedup keeps a value of its own for one set of tensors and one moment, so each sitting is
one draw of what a user would see. `in_fresh_process` takes a sitting in a new process forked from
the forkserver (its own oneDNN primitives too): `benchmarks/sittings.py` and the runs under
`results/trust/fresh-process/` measured it, and it was not adopted: between two runs it moved a
speedup no less than sittings in one process did, and its start-up cost sittings beside a busy core.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from multiprocessing.connection import Connection

from sepbench.case import Case
from sepbench.measure import fresh
from sepbench.measure.timer import Sitting, Timing, measure_interleaved, synchronizer
from sepbench.measure.workload import Workload, backend_flags

SITTING_TIMEOUT_S = 600.0


class SittingFailed(RuntimeError):
    """The sitting's process could not time the group (out of memory, crash, time-out)."""


def _build(cases: list[Case]) -> dict[str, Workload]:
    with backend_flags(cases[0]):
        return {c.id: Workload(c) for c in cases}


def _time(works: Mapping[str, Workload], case: Case, rounds: int, numbers: Mapping[str, int] | None,
          first_round: int, threads: int, block_time: float, warmup_time: float) -> dict[str, Timing]:
    """Time one sitting of the built workloads: `rounds` interleaved rounds, warmed up first (the first
    sitting for `warmup_time`, the later ones, already calibrated, for a block)."""
    with backend_flags(case):
        return measure_interleaved({k: w.step for k, w in works.items()}, synchronizer(case.device),
                                   min_run_time=0.0, min_rounds=rounds, max_rounds=rounds, block_time=block_time,
                                   warmup_time=block_time if numbers else warmup_time, threads=threads,
                                   cpu_bound=case.device != "cuda", numbers=numbers, first_round=first_round)


def in_process(cases: list[Case], threads: int, block_time: float, warmup_time: float,
               works: dict[str, Workload] | None = None) -> Sitting:
    """Sittings in this process, each on fresh tensors: how `sepbench run` times a group. `works`, if
    given, holds the group as already built: the first sitting times it, each later one replaces its
    contents (the old tensors freed before the new ones are made, so one set is in memory at a time),
    and it ends holding the last sitting's workloads."""
    works = {} if works is None else works
    built = bool(works)

    def sit(rounds: int, numbers: Mapping[str, int] | None, first_round: int) -> dict[str, Timing]:
        nonlocal built
        if not built:
            works.clear()
            works.update(_build(cases))
        built = False
        return _time(works, cases[0], rounds, numbers, first_round, threads, block_time, warmup_time)

    return sit


def _child(cases: list[Case], rounds: int, numbers: Mapping[str, int] | None, first_round: int, threads: int,
           cores: list[int], block_time: float, warmup_time: float, conn: Connection) -> None:
    try:
        import torch

        torch.set_num_threads(threads)
        os.sched_setaffinity(0, cores)
        conn.send(("ok", _time(_build(cases), cases[0], rounds, numbers, first_round, threads, block_time,
                               warmup_time)))
    except MemoryError:
        with contextlib.suppress(OSError):
            conn.send(("oom", "out of memory"))
    except BaseException as exc:  # the parent records what went wrong
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def in_fresh_process(cases: list[Case], threads: int, cores: list[int], block_time: float, warmup_time: float,
                     timeout: float = SITTING_TIMEOUT_S) -> Sitting:
    """Sittings each in a new process (CPU only: a forked child cannot use CUDA)."""
    def sit(rounds: int, numbers: Mapping[str, int] | None, first_round: int) -> dict[str, Timing]:
        try:
            status, value = fresh.call(_child, (cases, rounds, dict(numbers) if numbers else None, first_round,
                                                threads, cores, block_time, warmup_time), timeout,
                                       "a sitting's process")
        except fresh.FreshFailed as exc:
            raise SittingFailed(str(exc)) from None
        if status == "oom":
            raise MemoryError(value)
        if status != "ok":
            raise SittingFailed(value)
        return value

    return sit
