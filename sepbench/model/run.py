"""`sepbench model`: a network from its name to a results file, site by site, resumable.

The census runs once on the real input; its sites are grouped by shape (one measurement serves every
layer of that shape); the budget is spread over the shapes by their share of the network's estimated
conv time, with a part kept for the add-up check. Each shape's record is appended (fsync'd) as soon as
it is measured, so a run killed at any moment resumes with `--resume` where it stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from sepbench.budget import Budget, minutes_up
from sepbench.errors import SepbenchError
from sepbench.measure import between, compiled, machine
from sepbench.measure.environment import fingerprint
from sepbench.measure.timer import RoundLog, cores_for, intra_op_threads, pinned, synchronizer
from sepbench.model import spec as specs
from sepbench.model.candidates import Site, candidates, sites
from sepbench.model.census import census, out_of_memory
from sepbench.model.measure import (
    Settings,
    best_block,
    measure_site,
    network_check,
    now,
    per_call,
    step,
)
from sepbench.model.verdicts import verdict
from sepbench.records import ModelHeader, ModelNetworkRecord
from sepbench.store import ModelFile, ResultsFile, file_kind, read_model, reopen, resumable

NETWORK_SHARE = 0.2  # of the budget, kept for the add-up check


class ModelResultsFile(ResultsFile):
    record_kind = "model_site"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def shapes(found: list[Site]) -> dict[str, list[Site]]:
    """The sites grouped by shape, in network order of each shape's first site, keyed by a digest."""
    groups: dict[str, list[Site]] = {}
    for site in found:
        groups.setdefault(_digest(repr(site.shape_key)), []).append(site)
    return groups


def _resumable(out: Path, header: ModelHeader) -> ModelFile:
    """The newest model file in `out` that measured this very network and settings (the store's one rule);
    when there is none but other model files are there, the refusal names what the newest one measured."""
    path = resumable(out, "model", lambda h: h.grid_digest == header.grid_digest)
    if path is not None:
        return read_model(path)
    files = sorted((p for p in out.glob("*.jsonl") if p.is_file() and file_kind(p) == "model"),
                   key=lambda p: p.stat().st_mtime)
    if not files:
        raise SepbenchError(f"nothing to resume in {out}: no model file of {header.spec} at these settings; start "
                            "one without --resume")
    last = read_model(files[-1])
    what = f"{last.header.spec} at {'×'.join(map(str, last.header.input_shape))}" if last.header else "?"
    raise SepbenchError(f"--resume: the newest model file in {out} ({files[-1].name}) measured {what} under "
                        "other settings, not this run; give another --out or leave out --resume")


DEFAULT = Settings()


def minimum_budget(weights: dict[str, float], counts: dict[str, int], network_s: float, s: Settings) -> float:
    """The least wall time the measuring takes, whatever the budget: every site shape (as it is and its
    candidates) and the network (as it is and swapped) get `min_sittings` sittings of `sitting_rounds`
    rounds, each block at least one call and `block_time` long, after a warm-up and a calibration. The
    candidates are costed at the site's own time per call (a rough floor: some are slower)."""
    blocks = s.min_sittings * (s.sitting_rounds + 1) + 3

    def cost(per_call: float, timed: int) -> float:
        return timed * blocks * max(per_call, s.block_time)

    sites = sum(cost(w, 1 + counts[k]) for k, w in weights.items())
    return (sites + cost(network_s, 2)) / (1 - NETWORK_SHARE)


def _busy(say: Callable[[str], None], threads: int) -> dict[str, float]:
    """The machine's load before anything is measured; its busy line said first when others share it."""
    found = machine.load()
    line = machine.busy_line(found, threads, len(os.sched_getaffinity(0)))
    if line:
        say(f"sepbench: {line}")
    return found


def _environment(s: Settings) -> dict:
    env = fingerprint(s.device, s.threads)
    if s.compile != "eager":
        from sepbench.measure.compiled import settings as inductor

        env["inductor"] = inductor()
    return env


def _between(s: Settings) -> dict:
    """The between-run component the run's intervals hold, and where it comes from: a model's sites are
    each measured once, so it is the reference VM's (`measure.between`) unless the caller set one."""
    source = "the reference VM's (results/trust)" if s.between == between.REFERENCE_TAU else "given"
    return between.Between(s.between, source).as_dict()


def run(spec: str, out: Path, *, input_shape: tuple[int, int, int, int] | None = None, s: Settings = DEFAULT,
        budget_s: float = 600.0, resume: bool = False, say: Callable[[str], None] = lambda _: None) -> Path:
    """Measure the network `spec` names, site by site, then the add-up check; return the results file.
    Everything that can refuse the input (the SPEC, the memory, a budget too small for the network)
    speaks before anything is written."""
    with torch.device(s.device):
        net = specs.resolve(spec)
    shape = input_shape or net.input_shape
    dtype = getattr(torch, s.dtype)
    try:
        module = net.module.to(device=s.device, dtype=dtype).eval()
        layers = census(module, torch.randn(shape, device=s.device, dtype=dtype))
    except (RuntimeError, MemoryError) as exc:
        if not out_of_memory(exc):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SepbenchError(f"{spec} at {'×'.join(map(str, shape))} does not fit in the {s.device}'s memory "
                            f"({first})") from None
    found = sites(layers)
    groups = shapes(found)
    settings = {"spec": spec, "input": list(shape), **asdict(s)}
    machine_start = _busy(say, s.threads)
    header = ModelHeader(
        grid_name="model", grid_digest=_digest(json.dumps(settings, sort_keys=True) + repr(layers)),
        grid={"grid": {}, "measure": asdict(s)}, started=now(), model_id=uuid.uuid4().hex[:12], spec=spec,
        input_shape=shape, dtype=s.dtype, device=s.device, mode=s.mode, threads=s.threads, budget_s=budget_s,
        environment=_environment(s), census=[asdict(layer) for layer in layers],
        machine_start=machine_start, compile=s.compile, between_run=_between(s))
    done: set[str] = set()
    previous = _resumable(Path(out), header) if resume else None
    if previous is not None and previous.header is not None:
        header = previous.header
        done = {r.shape for r in previous.sites}
        if previous.network is not None:
            say(f"{previous.path.name} is complete")
            return previous.path
    run_log = RoundLog()
    cache = compiled.cache_in(Path(out) / ".compile-cache") if s.compile != "eager" else contextlib.nullcontext()
    with pinned(cores_for(s.threads)), intra_op_threads(s.threads), cache:
        pending = {k: g for k, g in groups.items() if k not in done}
        weight, compile_s = _estimate(spec, module, shape, pending, s, budget_s, say)
        results = _results(Path(out), header, previous)
        budget = Budget(budget_s * (1 - NETWORK_SHARE))
        try:
            for i, (key, group) in enumerate(pending.items(), start=1):
                share = weight[key] / max(sum(weight[k] for k in list(pending)[i - 1:]), 1e-12)
                site = group[0]
                say(f"site {i}/{len(pending)}: {site.name} ({site.kind}, {'×'.join(map(str, site.in_shape))})")
                record = measure_site(header.model_id, site, [x.name for g in group for x in g.layers],
                                      sum(x.first.calls for x in group), key, candidates(site), s,
                                      budget.left() * share, run_log)
                results.append(record)
            file = read_model(results.path)
            say("the whole network, as it is and with the swaps")
            results.append(_network(header.model_id, module, found, groups, file, shape, s,
                                    max(budget.left() + budget_s * NETWORK_SHARE, 1.0), run_log, compile_s))
        finally:
            results.unlock()
    return results.path


def _estimate(spec: str, module: torch.nn.Module, shape: tuple[int, int, int, int], pending: dict[str, list[Site]],
              s: Settings, budget_s: float, say: Callable[[str], None]) -> tuple[dict[str, float], float | None]:
    """Each pending site shape's share of the network's conv time (calls × the best of three blocks as it
    is), after refusing a budget below what the shapes and the network need whatever it is; and, compiled,
    what the network's compilation took (its first call, before its blocks)."""
    weight = {k: per_call(g[0], s) * sum(site.first.calls for site in g) for k, g in pending.items()}
    counts = {k: len(candidates(g[0])) for k, g in pending.items()}
    network = step(module, shape, s, seed=0)
    compile_s = None if s.compile == "eager" else compiled.first_call(network, synchronizer(s.device)).seconds
    network_s = best_block(network, s.device, s.block_time, 1)
    least = minimum_budget({k: weight[k] / sum(x.first.calls for x in pending[k]) for k in pending}, counts,
                           network_s, s)
    if least > budget_s:
        raise SepbenchError(f"{spec} at {'×'.join(map(str, shape))} needs a budget of at least "
                            f"{minutes_up(least)} min at these settings ({len(pending)} site "
                            f"shapes; the network takes {network_s * 1e3:.1f} ms a call): give --budget "
                            f"{minutes_up(least)} or more; nothing was written")
    say(f"{len(pending)} site shapes to measure; the network takes {network_s * 1e3:.1f} ms a call")
    return weight, compile_s


def _results(out: Path, header: ModelHeader, previous: ModelFile | None) -> ResultsFile:
    """The results file: the one being resumed, locked and its tail repaired, or a new one."""
    if previous is not None:
        return reopen(previous.path, ModelResultsFile)
    how = f"-{header.compile}" if header.compile != "eager" else ""
    stem = f"model-{header.spec.replace(':', '-')}{how}-{header.device}-{header.environment['machine']}-torch" \
           f"{header.environment['torch']}"
    return ModelResultsFile.create(out, header, stem=stem)


def _network(model_id: str, module: torch.nn.Module, found: list[Site], groups: dict[str, list[Site]],
             file: ModelFile, shape: tuple[int, ...], s: Settings, allowance: float,
             run_log: RoundLog, compile_s: float | None = None) -> ModelNetworkRecord:
    """The add-up check with every single-conv site whose best candidate is surely faster swapped."""
    by_shape = {r.shape: r for r in file.sites}
    replacements, swaps, saved = {}, {}, 0.0
    for key, group in groups.items():
        record = by_shape.get(key)
        if record is None:
            continue
        decision, best = verdict(record)
        if decision != "swap" or best is None or len(group[0].layers) != 1 or record.median_s is None:
            continue
        for site in group:
            make = candidates(site)[best.name]
            replacements[site.first.name] = make()
            swaps[site.first.name] = best.name
            saved += site.first.calls * (record.median_s - best.median_s)
    sites_s = sum((r.median_s or 0.0) * r.calls for r in file.sites)
    return network_check(model_id, module, replacements, swaps, shape, saved, s, allowance, run_log, sites_s,
                         compile_s)
