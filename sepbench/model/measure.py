"""Timing a network's conv sites against their candidates, and the whole network against itself with the
recommended swaps.

Each distinct site shape is measured once, for every layer that has it: the site as it is and each
candidate, built fresh for every sitting (random weights, a fresh input of the site's real shape),
timed in interleaved rounds, until every candidate's interval over sittings is within ±target or the
site's share of the budget is spent (`timer.measure_sittings`, the stopping rule of `sepbench run`).
A site's share is its share of the network's estimated conv time (one calibrated block per shape).

The add-up check times the network as it is and the network with the swaps in one process, in
interleaved rounds and sittings, and sets the measured ratio beside the prediction from the per-layer
medians: the network's time less, for each swapped site, its calls × (time as it is − the candidate's).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

import torch
from torch import nn

from sepbench.grid import MeasureSettings
from sepbench.measure import machine
from sepbench.measure.between import REFERENCE_TAU
from sepbench.measure.timer import (
    RoundLog,
    Sitting,
    Timing,
    calibrate,
    diagnose,
    measure_interleaved,
    measure_sittings,
    synchronizer,
    time_block,
)
from sepbench.model.candidates import Site, as_is, macs, why_none
from sepbench.records import CandidateFigures, ModelNetworkRecord, ModelSiteRecord
from sepbench.speedup import realized_speedup

AS_IS = "as is"


_RUN = MeasureSettings()  # how hard `sepbench run` looks at a case: a model's sites are looked at alike


@dataclass(frozen=True)
class Settings:
    """How a model run times: on what, and how hard it looks at each site (`sepbench run`'s defaults)."""

    device: str = "cpu"
    dtype: str = "float32"
    mode: str = "inference"
    threads: int = 1
    block_time: float = _RUN.block_time
    warmup_time: float = _RUN.warmup_time
    target: float = _RUN.target
    sitting_rounds: int = _RUN.sitting_rounds
    min_sittings: int = _RUN.min_sittings
    max_rounds: int = _RUN.max_rounds
    compile: str = "eager"  # or an inductor mode (`case.COMPILE_MODES`): sites, candidates and network compiled
    # The between-run component every interval holds (`measure.between`): a site's sittings, like a run's,
    # do not sample the spell, the process or the host the whole measurement fell in.
    between: float = REFERENCE_TAU


def step(module: nn.Module, shape: tuple[int, ...], s: Settings, seed: int) -> Callable[[], None]:
    """One call as the network would make it: a forward under no_grad, or forward + backward with the
    input requiring grad (any layer but the first does), gradients accumulating in place."""
    dtype = getattr(torch, s.dtype)
    gen = torch.Generator(device=s.device).manual_seed(seed)
    module = module.to(device=s.device, dtype=dtype)
    x = torch.randn(shape, generator=gen, device=s.device, dtype=dtype)
    run = module
    if s.compile != "eager":  # a network may break its graph: that is counted, not refused
        from sepbench.measure.compiled import compile_module

        run = compile_module(module, s.compile, fullgraph=False)
    if s.mode == "train":
        module.train()
        x.requires_grad_(True)
        with torch.no_grad():
            out = module(x)
        grad = torch.randn(out.shape, generator=gen, device=s.device, dtype=dtype)

        def train() -> None:
            run(x).backward(grad)

        return train
    module.eval()

    def infer() -> None:
        with torch.no_grad():
            run(x)

    return infer


def best_block(step: Callable[[], None], device: str, block_time: float, blocks: int) -> float:
    """Seconds per call of a step, quickly: the best of `blocks` calibrated blocks, after one call."""
    sync = synchronizer(device)
    step()
    number = calibrate(step, sync, block_time)
    return min(time_block(step, sync, number) for _ in range(blocks))


def per_call(site: Site, s: Settings) -> float:
    """A quick estimate of the site's time per call as it is: the best of three calibrated blocks."""
    return best_block(step(as_is(site), site.in_shape, s, seed=0), s.device, s.block_time, 3)


def _sitting(builders: Mapping[str, Callable[[], nn.Module]], shape: tuple[int, ...], s: Settings) -> Sitting:
    sittings = 0

    def sit(rounds: int, numbers: Mapping[str, int] | None, first_round: int) -> dict[str, Timing]:
        nonlocal sittings
        sittings += 1
        torch.manual_seed(sittings)
        fns = {name: step(make(), shape, s, seed=sittings) for name, make in builders.items()}
        return measure_interleaved(fns, synchronizer(s.device), min_run_time=0.0, min_rounds=rounds,
                                   max_rounds=rounds, block_time=s.block_time,
                                   warmup_time=s.block_time if numbers else s.warmup_time, threads=s.threads,
                                   cpu_bound=s.device != "cuda", numbers=numbers, first_round=first_round)

    return sit


def _timed(builders: Mapping[str, Callable[[], nn.Module]], shape: tuple[int, ...], s: Settings,
           allowance: float) -> dict[str, Timing]:
    return measure_sittings(_sitting(builders, shape, s), baseline=AS_IS, target=s.target, allowance=allowance,
                            sitting_rounds=s.sitting_rounds, min_sittings=s.min_sittings, max_rounds=s.max_rounds,
                            between=s.between)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _unstable(timings: Mapping[str, Timing], target: float, between: float) -> str | None:
    """Why the widest interval against the site as it is stayed above ±target (`timer.diagnose`, from the
    blocks, the re-takes and the reference probe of this measurement), or None when all reached it."""
    ref = timings[AS_IS]
    widest, worst = 0.0, None
    for name, t in timings.items():
        if name == AS_IS:
            continue
        speed = realized_speedup(ref.times, t.times, ref.sittings, between=between)
        half = (speed.high - speed.low) / 2 / speed.ratio if speed.low and speed.high else float("inf")
        if half > target and half >= widest:
            widest, worst = half, t
    return None if worst is None else diagnose(ref.times, worst.times, ref.log, ref.sittings)


def _count(into: RoundLog | None, timings: Mapping[str, Timing]) -> RoundLog:
    """This measurement's log (shared by its timings), added into the run's when one is given."""
    log = next(iter(timings.values())).log or RoundLog()
    if into is not None:
        into.retaken.update(log.retaken)
        into.kept_contended += log.kept_contended
        into.blocks += log.blocks
        into.probe_s += log.probe_s
    return log


def measure_site(model_id: str, site: Site, layers: list[str], calls: int, shape: str,
                 builders: Mapping[str, Callable[[], nn.Module]], s: Settings, allowance: float,
                 run_log: RoundLog | None = None) -> ModelSiteRecord:
    """The site as it is and each candidate, interleaved, on the site's real input shape; its blocks are
    counted into `run_log` (the whole run's re-takes and probe)."""
    started = time.monotonic()
    base = dict(model_id=model_id, site=site.name, layers=layers, shape=shape, site_kind=site.kind, calls=calls,
                in_shape=site.in_shape, out_shape=site.out_shape, macs=site.macs)
    if not builders:
        return ModelSiteRecord(**base, status="no_candidate", finished=now(), reason=why_none(site))
    try:
        timings = _timed({AS_IS: lambda: as_is(site), **builders}, site.in_shape, s, allowance)
    except (RuntimeError, MemoryError) as exc:  # a candidate the backend refuses, or out of memory
        return ModelSiteRecord(**base, status="failed", reason=f"{type(exc).__name__}: {exc}".splitlines()[0],
                               seconds=time.monotonic() - started, finished=now())
    ref = timings[AS_IS]
    log = _count(run_log, timings)
    figures = []
    for name, make in builders.items():
        t = timings[name]
        speed = realized_speedup(ref.times, t.times, ref.sittings, between=s.between)
        cost = macs(make(), site.in_shape)
        figures.append(CandidateFigures(name=name, macs=cost, theory=site.macs / cost if cost else 1.0,
                                        median_s=t.median, realized=speed.ratio, low=speed.low, high=speed.high))
    return ModelSiteRecord(**base, status="ok", median_s=ref.median, candidates=figures,
                           sittings=ref.sittings or [len(ref.times)], seconds=time.monotonic() - started,
                           unstable=_unstable(timings, s.target, s.between), retaken=dict(log.retaken),
                           kept_contended=log.kept_contended, finished=now())


def swapped(model: nn.Module, replacements: Mapping[str, nn.Module]) -> nn.Module:
    """A copy of the network with each named conv replaced by its module (module replacement: the
    parent's attribute, or a ModuleList's entry, set to the new module)."""
    model = copy.deepcopy(model)
    for name, module in replacements.items():
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, module)
    return model


def _compiled_swapped(make: Callable[[], nn.Module], shape: tuple[int, ...], s: Settings) -> tuple[float, int]:
    """The swapped network compiled before it is timed (its first call, timed), and the graph breaks the
    run met; later builds of it reuse the compiled code. (The network as it is compiled in the estimate.)"""
    from sepbench.measure import compiled

    seconds = compiled.first_call(step(make(), shape, s, seed=0), synchronizer(s.device)).seconds
    return seconds, compiled.graph_breaks()


def network_check(model_id: str, model: nn.Module, replacements: Mapping[str, nn.Module], swaps: dict[str, str],
                  shape: tuple[int, ...], saved_s: float, s: Settings, allowance: float,
                  run_log: RoundLog | None = None, sites_s: float | None = None,
                  as_is_compile_s: float | None = None) -> ModelNetworkRecord:
    """The network as it is against the network with the swaps, interleaved in rounds and sittings; the
    prediction subtracts the per-layer savings (`saved_s`: Σ calls × (as it is − candidate)) from the
    measured as-is time. The record closes the run: the machine's load now and the run's re-takes."""
    changed = swapped(model, replacements)
    from sepbench.model.census import census, network_macs

    with torch.device("meta"):
        before = network_macs(census(copy.deepcopy(model).to("meta"), torch.empty(shape)))
        after = network_macs(census(copy.deepcopy(changed).to("meta"), torch.empty(shape)))
    builders = {AS_IS: lambda: copy.deepcopy(model), "swapped": lambda: copy.deepcopy(changed)}
    compile_s, breaks = None, None
    if s.compile != "eager":
        swapped_s, breaks = _compiled_swapped(builders["swapped"], shape, s)
        compile_s = {AS_IS: as_is_compile_s or 0.0, "swapped": swapped_s}
    timings = _timed(builders, shape, s, allowance)
    ref, new = timings[AS_IS], timings["swapped"]
    log = _count(run_log, timings)
    total = run_log or log
    speed = realized_speedup(ref.times, new.times, ref.sittings, between=s.between)
    predicted = max(ref.median - saved_s, 1e-12)
    return ModelNetworkRecord(model_id=model_id, swaps=swaps, macs=before, swapped_macs=after, as_is_s=ref.median,
                              swapped_s=new.median, predicted_s=predicted, measured=speed.ratio, low=speed.low,
                              high=speed.high, sittings=ref.sittings or [len(ref.times)],
                              unstable=_unstable(timings, s.target, s.between),
                              retaken_share=total.retaken_total / max(total.blocks, 1),
                              kept_contended=total.kept_contended, machine_end=machine.load(), sites_s=sites_s,
                              compile_s=compile_s, graph_breaks=breaks, finished=now())
