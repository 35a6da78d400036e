"""`sepbench explain`: where one case's time goes, stage by stage, from the results that have it or measured
now; or one layer of a network measured by `sepbench model`."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from sepbench.case import VARIANTS, Case, check
from sepbench.console import err, out, say_left_out
from sepbench.errors import SepbenchError


def main(variant: str | None, *, device: str, threads: int | None, paths: list[Path], measure: bool,
         model_file: Path | None, layer: str | None, c_out: int | None, **knobs: Any) -> int:
    if model_file is not None or layer is not None:
        if model_file is None or layer is None or variant is not None:
            raise SepbenchError("explain a model's layer with --model FILE --layer NAME (and no VARIANT)")
        return explain_layer(model_file, layer, threads or 1)
    if variant is None:
        raise SepbenchError("give a VARIANT (see `sepbench list`), or --model FILE --layer NAME")
    if variant not in VARIANTS:
        raise SepbenchError(f"unknown variant {variant!r}; valid: {', '.join(VARIANTS)}")
    knobs["c_out"] = knobs["c_in"] if c_out is None else c_out
    case = Case(variant, device=device, **knobs)
    check(case)
    if not measure and from_results(case, paths or [Path("results")]):
        return 0
    if paths and not measure:
        err.print(f"no profiled record of this case in {', '.join(map(str, paths))}: measuring it now",
                  markup=False, highlight=False, soft_wrap=True)
    from sepbench.measure.explain import measure_case
    from sepbench.report.tables import attribution_table

    att, timer_s, step_flops, where = measure_case(case, threads)
    out.print(attribution_table(att, step_flops, f"{case.label()} at {case.geometry()} · measured now on {where}",
                                timer_s))
    out.print(f"bottleneck: {att.bottleneck} (◀). Times are per step, profiler cost taken off; achieved against "
              "this machine's measured peaks.", style="dim", markup=False)
    return 0


def explain_layer(path: Path, layer: str, threads: int) -> int:
    """One layer of a measured network: its record, then its candidates stage by stage, timed now."""
    from sepbench.measure.timer import cores_for, intra_op_threads, pinned
    from sepbench.model.explain import stage_times
    from sepbench.report.tables import layer_table, stages_table
    from sepbench.store import read_model

    found = read_model(path)
    names = [name for r in found.sites for name in r.layers]
    record = next((r for r in found.sites if layer in r.layers), None)
    if found.header is None or record is None:
        close = difflib.get_close_matches(layer, names, n=4, cutoff=0.5)
        raise SepbenchError(f"{path.name} has no measured layer {layer!r}"
                            + (f"; close matches: {', '.join(close)}" if close else ""))
    out.print(layer_table(found, record, layer))
    with pinned(cores_for(threads)), intra_op_threads(threads):
        times = stage_times(found, record, threads)
    out.print(stages_table(times, f"{layer}: each stage timed alone on its real input, now"))
    return 0


def from_results(case: Case, paths: list[Path]) -> int:
    """Print the case's attribution from every environment in the results that has one; how many."""
    from sepbench.records import Attribution
    from sepbench.report.tables import attribution_table
    from sepbench.store import attributions

    if not any(p.exists() for p in paths):
        return 0
    rows, problems = attributions([p for p in paths if p.exists()], case.id)
    say_left_out(problems)
    for row in rows:
        att = Attribution.model_validate(json.loads(row["attribution_json"]))
        title = f"{case.label()} at {case.geometry()} · {row['env_machine']} torch {row['env_torch']} · {row['file']}"
        out.print(attribution_table(att, int(row["theory_flops_step"]), title, row["timing_median_s"]))
    return len(rows)
