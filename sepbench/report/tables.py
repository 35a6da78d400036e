"""Terminal tables: results side by side with theory, and the cost calculator. Present only; every
figure comes from the store or the cost model."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sepbench.case import Case
from sepbench.records import ABGate, ABHeader, ABSide, Attribution, CandidateFigures, ModelSiteRecord, RunEnd
from sepbench.theory import Cost

if TYPE_CHECKING:
    from pathlib import Path

    from sepbench.ab.stats import (  # annotations only: the statistics import scipy
        CompileTimes,
        Control,
        NetworkVerdict,
        Summary,
    )
    from sepbench.measure.peaks import Peaks  # annotations only: peaks import torch
    from sepbench.model.explain import Stage
    from sepbench.store import ModelFile

UNSTABLE_MARK = "⚠"  # the speedup a run reports is not steady
DRIFT_MARK = "~"  # the raw block times drifted (pairing cancels it)


def fmt_count(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def fmt_bytes(n: float | None) -> str:
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "–"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def fmt_time(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"


def missing(v: object) -> bool:
    """None or NaN: a figure that was not recorded."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def _ratio(x: float) -> str:
    return f"{x:.2f}×"


def _realized(row: pd.Series) -> str:
    if missing(row.get("realized_speedup")):
        return "ref" if row["variant"] == Case(row["variant"]).baseline().variant else "–"
    text = _ratio(row["realized_speedup"])
    if not missing(row.get("realized_low")):
        text += f" [{row['realized_low']:.2f}–{row['realized_high']:.2f}]"
    return text


def _theory_memory(row: pd.Series) -> str:
    """Activations apart from weights: the measured rise starts after the module is built, so it
    holds activations (and, in training, weight gradients) but not the weights themselves."""
    return f"{fmt_bytes(row['theory_activation_bytes'])} + {fmt_bytes(row['theory_weight_bytes'])}"


def _measured_memory(row: pd.Series) -> str:
    for key in ("memory_cuda_alloc_peak_bytes", "memory_cpu_rss_rise_bytes"):
        if not missing(row.get(key)):
            return fmt_bytes(row[key])
    return "err" if not missing(row.get("memory_error")) else "–"


def results_table(df: pd.DataFrame, title: str = "") -> Table:
    """One row per case, groups of one geometry together, theory and measurement in separate columns."""
    table = Table(title=title or None, title_justify="left", header_style="bold", pad_edge=False)
    table.add_column(escape("case (geometry | batch dtype mode [device])"), overflow="fold", max_width=44)
    table.add_column("variant")
    table.add_column("theory ×\n(FLOPs 2mac)", justify="right", style="cyan")
    table.add_column("roofline ×", justify="right", style="cyan")
    table.add_column(escape("realized × [95% CI]"), justify="right", style="green")
    table.add_column("efficiency\nreal/theory", justify="right")
    table.add_column("median", justify="right", style="green")
    table.add_column("IQR", justify="right")
    table.add_column("params", justify="right", style="cyan")
    table.add_column("mem theory\nact + weights", justify="right", style="cyan")
    table.add_column("mem measured\n(peak rise)", justify="right", style="green")
    table.add_column("bottleneck\ntime / FLOPs", justify="right")
    group_order = df.groupby("group_id", sort=False).ngroup()
    df = df.assign(_g=group_order, _base=df["realized_speedup"].isna() if "realized_speedup" in df else True)
    for _, group in df.sort_values(["_g", "_base"], ascending=[True, False]).groupby("_g", sort=False):
        table.add_section()
        for i, (_, row) in enumerate(group.sort_values("_base", ascending=False).iterrows()):
            geometry = row["geometry"] if i == 0 else ""
            if row["status"] != "ok":
                table.add_row(
                    geometry, row["label"], _ratio(row["theory_speedup"]), _ratio(row["theory_roofline_speedup"]),
                    f"skipped: {row['reason']}", "", "", "", fmt_count(row["theory_params"]), _theory_memory(row),
                    "", "",
                )
                continue
            unstable, drift = (not missing(row.get(c)) and bool(row.get(c)) for c in ("realized_unstable",
                                                                                        "timing_unstable"))
            eff = "" if missing(row.get("realized_efficiency")) else f"{row['realized_efficiency']:.0%}"
            iqr = (row["timing_q3_s"] - row["timing_q1_s"]) / row["timing_median_s"]
            reason = "" if missing(row.get("realized_reason")) else f" {row['realized_reason']}"
            table.add_row(
                geometry, row["label"] + (f" {UNSTABLE_MARK}{reason}" if unstable else ""),
                _ratio(row["theory_speedup"]), _ratio(row["theory_roofline_speedup"]), _realized(row), eff,
                fmt_time(row["timing_median_s"]), f"{iqr:.0%}" + (f" {DRIFT_MARK}" if drift else ""),
                fmt_count(row["theory_params"]), _theory_memory(row), _measured_memory(row), _bottleneck(row),
            )
    return table


def _bottleneck(row: pd.Series) -> str:
    """'dw 62% / 4%': the stage whose share of the step's time most exceeds its share of the FLOPs."""
    name = row.get("attribution_bottleneck")
    if missing(name):
        return "err" if not missing(row.get("attribution_error")) else "–"
    flop_share = row.get("attribution_bottleneck_flop_share")
    flops = "–" if missing(flop_share) else f"{flop_share:.0%}"
    return f"{name} {row['attribution_bottleneck_share']:.0%} / {flops}"


def print_results(df: pd.DataFrame, console: Console) -> None:
    """A table per environment (machine × torch × device)."""
    keys = ["env_machine", "env_torch", "device"]
    for (machine, torch_version, device), part in df.groupby(keys, sort=False, dropna=False):
        threads = part["timing_threads"].dropna().unique() if "timing_threads" in part else []
        thread_text = f", {int(threads[0])} threads" if len(threads) == 1 else ""
        console.print(results_table(part, f"{machine} · torch {torch_version} · {device}{thread_text}"))
    ok = df[df["status"] == "ok"]
    variants = ok[ok["realized_speedup"].notna()] if "realized_speedup" in ok else ok.iloc[:0]
    unstable = int(variants["realized_unstable"].sum()) if "realized_unstable" in variants else 0
    drift = int(ok["timing_unstable"].sum()) if "timing_unstable" in ok else 0
    targeted = "realized_half_width" in variants and variants["realized_half_width"].notna().any()
    reasons = variants["realized_reason"].value_counts() if "realized_reason" in variants else pd.Series(dtype=int)
    why = ", ".join(f"{n} {r}" for r, n in reasons.items())
    flag = ("the interval did not reach the run's target (±{:.0%}) within its budget".format(
        float(df["run_target"].dropna().iloc[0])) if targeted and "run_target" in df and df["run_target"].notna().any()
        else "the per-round speedups' IQR/median above threshold after one re-measure")
    console.print(
        "theory × = FLOP ratio vs the baseline (2mac); roofline × = ratio of roofline lower bounds from this "
        "machine's measured peaks; realized × = ratio of median times from interleaved "
        "rounds (median over sittings on fresh tensors, spread over the run), 95% interval over sittings (order "
        "statistics; older runs: t over sittings, or bootstrap over rounds); "
        f"{UNSTABLE_MARK} = {flag} ({unstable} of {len(variants)} variants{': ' + why if why else ''}); "
        f"{DRIFT_MARK} = raw block times' IQR/median above the threshold: the machine's speed moved, which "
        f"pairing cancels ({drift} of {len(ok)} cases).",
        style="dim", markup=False,
    )


def machine_line(thread_policy: str, start: dict[str, float] | None, end: RunEnd) -> str:
    """The machine's condition over a run, in one line: what the header and the end record hold."""
    first = (start or {}).get("other_cores")
    last = end.machine_end.get("other_cores")
    load = (f"other work on {first:.1f} → {last:.1f} cores" if first is not None and last is not None
            else "load unknown")
    drift = f", probe drift {end.probe_drift:.2f}×" if end.probe_drift is not None else ""
    return f"machine: {thread_policy}; {load}; {end.retaken_share:.1%} of blocks re-taken (contended){drift}"


def resolution_line(df: pd.DataFrame, grid: str, between_run: dict[str, Any] | None) -> str | None:
    """What resolution this run reached on this machine (its variants' median half-width), beside the
    between-run part every interval holds and what the docs measured for the grid elsewhere."""
    from sepbench.measure.between import DOCUMENTED, Z95

    v = df[df["realized_speedup"].notna()] if "realized_speedup" in df else df.iloc[:0]
    if v.empty or v["realized_half_width"].isna().all():
        return None
    text = (f"resolution: median half-width ±{v['realized_half_width'].median():.1%} over {len(v)} variants, "
            f"{int(v['realized_unstable'].sum())} above the target")
    if between_run:
        text += f"; each interval holds ±{Z95 * between_run['tau']:.1%} between runs ({between_run['source']})"
    documented = DOCUMENTED.get(grid)
    if documented:
        low, high, where = documented
        text += f"; measured for {grid} on the reference VMs: ±{low:.1%} to ±{high:.1%} ({where})"
    return text


def layers_table(cost: Cost, title: str, stages_only: bool = False) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold", pad_edge=False)
    columns: tuple[tuple[str, Literal["left", "right"]], ...] = (
        ("layer", "left"), ("type", "left"), ("input", "left"), ("output", "left"), ("params", "right"),
        ("MACs", "right"), ("FLOPs [2mac]", "right"), ("FLOPs [exact]", "right"))
    for name, justify in columns:
        table.add_column(escape(name), justify=justify)
    for lc in cost.layers:
        if stages_only and not lc.stage:
            continue
        table.add_row(lc.name, lc.kind, "×".join(map(str, lc.in_shape)), "×".join(map(str, lc.out_shape)),
                      f"{lc.params:,}", f"{lc.macs:,}", f"{2 * lc.macs:,}", f"{lc.flops_exact:,}")
    table.add_section()
    table.add_row("total", "", "×".join(map(str, cost.in_shape)), "×".join(map(str, cost.out_shape)),
                  f"{cost.params:,}", f"{cost.macs:,}", f"{cost.flops_2mac:,}", f"{cost.flops_exact:,}", style="bold")
    return table


def comparison_table(rows: list[tuple[Case, Cost, Cost]], mode: str, title: str) -> Table:
    """Variants of one case against their baseline, theory only."""
    table = Table(title=title, title_justify="left", header_style="bold", pad_edge=False)
    for name in ("variant", "output", "params (no bias)", "MACs", "FLOPs [2mac]", "FLOPs [exact]",
                 f"bytes ({mode})", "intensity\n[2mac FLOP/B]", f"memory ({mode})\nact+weights",
                 "theory ×\n(FLOPs 2mac)", "params\nratio"):
        table.add_column(escape(name), justify="left" if name in ("variant", "output") else "right")
    for case, cost, base in rows:
        table.add_row(
            case.label(), "×".join(map(str, cost.out_shape)), f"{cost.params:,} ({cost.params_no_bias:,})",
            fmt_count(cost.macs), fmt_count(cost.flops_2mac), fmt_count(cost.flops_exact),
            fmt_bytes(cost.bytes(mode)), f"{cost.intensity(mode):.2f}", fmt_bytes(cost.memory_bytes(mode)),
            _ratio(base.flops(mode) / cost.flops(mode)), f"{cost.params / base.params:.3f}",
        )
    return table


def _table(title: str | None, columns: list[str], left: tuple[str, ...]) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold", pad_edge=False)
    for col in columns:
        table.add_column(escape(col), justify="left" if col in left else "right")
    return table


def variants_table(variants: list) -> Table:
    """The variant catalogue: name, family, baseline and what each is."""
    table = _table("variants", ["name", "family", "baseline", "what it is"],
                   left=("name", "family", "baseline", "what it is"))
    for v in variants:
        table.add_row(v.name, v.family, v.baseline, v.summary)
    return table


def presets_table(rows: list[tuple[str, list[str], str]]) -> Table:
    """Presets with their case and group counts per device."""
    table = _table("presets (cases / groups per device)", ["name", "cpu", "cuda", "what it is"],
                   left=("name", "cpu", "cuda", "what it is"))
    for name, counts, description in rows:
        table.add_row(name, *counts, description)
    return table


def environment_table(fingerprint: dict, peaks: Peaks | None) -> Table:
    """The fingerprint, key by key, then the measured ceilings when there are any."""
    table = Table(show_header=False, pad_edge=False, box=None)
    for key, value in fingerprint.items():
        table.add_row(key, str(value))
    if peaks is not None:
        for dtype, flops in peaks.flops.items():
            table.add_row(f"peak FLOP/s {dtype}", f"{fmt_count(flops)}FLOP/s")
        table.add_row("peak bandwidth", f"{peaks.bandwidth / 1e9:.1f} GB/s")
        table.add_row("ridge point (float32)",
                      f"{peaks.flops['float32'] / peaks.bandwidth:.1f} FLOP/byte")
        table.add_row("peaks method", peaks.method)
    return table


def _maybe(x: float | None, fmt: str) -> str:
    return "–" if missing(x) else format(x, fmt)


def timercheck_table(rows: pd.DataFrame, threads: int) -> Table:
    """One row per checked case: both medians and their ratio (CUDA events beside them on a GPU)."""
    table = _table(f"timer agreement, {threads} threads",
                   ["case", "variant", "sepbench median", "Timer median", "sepbench / Timer", "CUDA events",
                    "sepbench / events"], left=("case", "variant"))
    for _, r in rows.iterrows():
        table.add_row(r["geometry"], r["variant"], fmt_time(r["sepbench_s"]), fmt_time(r["timer_s"]),
                      f"{r['sepbench_over_timer']:.3f}", "–" if missing(r["events_s"]) else fmt_time(r["events_s"]),
                      _maybe(r["sepbench_over_events"], ".3f"))
    return table


def timercheck_summary(rows: pd.DataFrame) -> str:
    ratios = rows["sepbench_over_timer"]
    text = (f"median sepbench/Timer ratio over {len(ratios)} cases: {ratios.median():.3f} "
            f"(range {ratios.min():.3f}–{ratios.max():.3f})")
    events = rows["sepbench_over_events"].dropna()
    if len(events):
        text += f"; sepbench/CUDA-events: {events.median():.3f}"
    return text


def crosscheck_table(table: pd.DataFrame) -> Table:
    """Median step time by harness, and each harness over sepbench paired by pass."""
    view = _table(f"median step time by harness, and each harness / sepbench paired by pass "
                  f"({int(table['passes'].min())} passes): median [lowest–highest]",
                  ["device", "mode", "c_in", "variant", "sepbench run", "asv", "pytest-benchmark", "asv / sepbench",
                   "pytest-benchmark / sepbench"], left=("device", "mode", "variant"))
    for _, row in table.iterrows():
        cells = [f"{row[f'{h} / sepbench']:.3f} [{row[f'{h} / sepbench low']:.2f}–{row[f'{h} / sepbench high']:.2f}]"
                 for h in ("asv", "pytest-benchmark")]
        view.add_row(row["device"], row["mode"], str(row["c_in"]), row["variant"], fmt_time(row["sepbench"]),
                     fmt_time(row["asv"]), fmt_time(row["pytest_benchmark"]), *cells)
    return view


def side_label(side: ABSide) -> str:
    """One side of a comparison in words: its torch, and the settings it ran under."""
    settings = ", ".join(f"{k}={v}" for k, v in sorted(side.env.items()))
    return f"torch {side.environment.get('torch', '?')}" + (f" with {settings}" if settings else "")


def ab_summary_line(s: Summary, path: Path) -> str:
    """A finished comparison in one line: counts, flags by direction, median ratio, resolution."""
    return (f"{s.compared} of {s.cases} cases compared; {s.flagged} flagged at a 5 % false discovery rate "
            f"({s.b_slower} B slower, {s.b_faster} B faster); median ratio B/A {s.median_ratio:.4f}, median "
            f"half-width of the intervals {100 * s.median_mdc:.2f} %; with 80 % power the median case is flagged when "
            f"it alone changed by {100 * s.median_d80_alone:.2f} %, or by {100 * s.median_d80:.2f} % where most cases "
            f"changed → {path}")


def ab_between_line(header: ABHeader) -> str:
    """What a re-run of the comparison can move that its worker pairs do not sample, as its intervals
    hold it: τ and where it comes from (`measure.between.for_ab`)."""
    b = header.between_run
    if b is None:
        return "intervals over worker pairs only (recorded before the between-run component)"
    return f"intervals hold a between-run component τ = {100 * b['tau']:.2f} %, {b['source']}"


def control_line(control: Control | None, summary: Summary) -> str:
    """The in-run control beside the verdict: false flags, bias, position effect, what it withheld."""
    if control is None:
        return "no in-run control in this file (recorded before protocol 2, or --control 0)"
    text = (f"control ({control.cases} cases, one side against itself): {control.flagged} false flags, "
            f"{control.below_05} with p < 0.05; bias {control.bias:.4f} [{control.bias_low:.4f}–"
            f"{control.bias_high:.4f}], second block of a round ×{control.position:.4f}; 95 % of its cases "
            f"within ±{control.fake_change:.2f} %")
    if summary.withheld:
        text += (f"; {summary.withheld} flags that do not stand out of the control's bias withheld "
                 "(verdict 'within control')")
    if control.flagged:
        text += "; this machine fakes flags now: read the verdict with care"
    return text


def compile_line(times: CompileTimes) -> str:
    """What compiling cost each side of a comparison of compiled cases (never inside a timed block), and
    whether the two first compilations were alike (both cold) or one side's cache already held graphs."""
    def side(name: str, first: float, cold: int, cached: float | None) -> str:
        later = "" if cached is None else f", later workers {cached:.2f} s"
        return f"{name} first worker {first:.2f} s (cold in {cold} of {times.cases}){later}"

    alike = "" if times.a_cold == times.b_cold == times.cases else \
        "; not like for like: a side's cache held graphs before its first worker compiled"
    return (f"compilation ({times.cases} compiled cases, median per case): "
            f"{side('A', times.a_first, times.a_cold, times.a_cached)}; "
            f"{side('B', times.b_first, times.b_cold, times.b_cached)}; B / A first ×{times.ratio:.2f}{alike}")


def network_ab_line(found: NetworkVerdict, header: ABHeader) -> str:
    """A network comparison's answer in one line: the whole network's B / A with its interval and verdict,
    and the sites that carry most of it."""
    assert header.network is not None
    top = found.sites[found.sites["ratio"].notna()].head(3)
    carried = ", ".join(f"{r['label']} ×{r['ratio']:.3f} "
                        f"({100 * r['carries']:+.2f} % of the network)" for _, r in top.iterrows())
    change = (f"{100 * (found.ratio - 1):+.2f} %" if np.isfinite(found.ratio) else "?")
    return (f"{header.network.spec}: the whole network under B {change} [{100 * (found.low - 1):+.2f} … "
            f"{100 * (found.high - 1):+.2f} %] ({found.verdict}); its conv sites are "
            f"{100 * found.share_timed:.0f} % of its time under A; most carried by {carried or 'none'}")


def network_ab_table(found: NetworkVerdict, header: ABHeader, limit: int = 25) -> Table:
    """A network comparison's sites, ordered by what each carries of the network's change: its share of
    A's network time × its own change."""
    assert header.network is not None
    view = _table(f"{header.network.spec} at {'×'.join(map(str, header.network.input_shape))}: B = "
                  f"{side_label(header.b)} against A = {side_label(header.a)}, sites by what they carry",
                  ["layers", "kind", "input → output", "calls", "share of A", "B / A", "95 % interval", "carries",
                   "verdict"], left=("layers", "kind", "input → output", "verdict"))
    for _, r in found.sites.head(limit).iterrows():
        view.add_row(r["layers"], r["variant"], r["geometry"], str(r["calls"]), f"{r['share']:.1%}",
                     f"{r['ratio']:.4f}", f"{r['low']:.3f}–{r['high']:.3f}", f"{100 * r['carries']:+.2f} %",
                     r["verdict"])
    return view


def gate_line(gate: ABGate) -> str:
    """The gate's verdict: which cases or sites are slower than the threshold, at the comparison's FDR."""
    if not gate.failed:
        return (f"gate passed: no case slower by more than {100 * gate.fail_above:g} % at a "
                f"{100 * gate.fdr:g} % false discovery rate")
    shown = ", ".join(f"{name} ×{ratio:.3f}" for name, ratio in zip(gate.failed[:5], gate.ratios[:5], strict=True))
    more = f" and {len(gate.failed) - 5} more" if len(gate.failed) > 5 else ""
    return (f"gate failed: {len(gate.failed)} slower by more than {100 * gate.fail_above:g} % at a "
            f"{100 * gate.fdr:g} % false discovery rate: {shown}{more}")


def ab_table(table: pd.DataFrame, header: ABHeader, limit: int = 25) -> Table:
    """A comparison's flagged cases (or, when none is, its largest ratios) and the cases one side lacked."""
    from sepbench.ab.stats import FLAGS, WITHIN_CONTROL

    calibration = " (A/A" + (f", B slowed by {100 * header.inject:g} %" if header.inject else "") + ")" \
        if header.aa else ""
    flagged = table[table["verdict"].isin([*FLAGS, WITHIN_CONTROL])]
    shown = flagged if len(flagged) else table[table["p"].notna()]
    shown = shown.reindex(np.log(shown["ratio"]).abs().sort_values(ascending=False).index).head(limit)
    what = (f"{len(shown)} of {len(flagged)} flagged cases" if len(flagged) else
            "no case flagged; the largest ratios")
    view = _table(f"B = {side_label(header.b)} against A = {side_label(header.a)}{calibration}: {what}",
                  ["case", "variant", "A", "B", "B / A", "95 % interval", "q", "± half-width", "rounds", "verdict"],
                  left=("case", "variant", "verdict"))
    for _, r in shown.iterrows():
        view.add_row(r["geometry"], r["label"], fmt_time(r["a_s"]), fmt_time(r["b_s"]), f"{r['ratio']:.4f}",
                     f"{r['low']:.3f}–{r['high']:.3f}", f"{r['q']:.3f}", f"{100 * r['mdc']:.2f} %", str(r["rounds"]),
                     r["verdict"])
    for _, r in table[table["status"] != "ok"].iterrows():
        view.add_row(r["geometry"], r["label"], "", "", "", "", "", "", "0", f"{r['status']}: {r['reason']}")
    return view


def attribution_table(att: Attribution, step_flops: int, title: str, timer_s: float | None = None) -> Table:
    """One case's step, stage by stage: time and its share beside the FLOP share, what each stage
    achieved and how close to the roofline at its intensity; then the named overheads."""
    table = Table(title=title, title_justify="left", header_style="bold", pad_edge=False)
    columns: tuple[tuple[str, Literal["left", "right"]], ...] = (
        ("stage", "left"), ("kind", "left"), ("time / step", "right"), ("time share", "right"),
        ("FLOP share", "right"), ("achieved", "right"), ("of roofline", "right"))
    for name, justify in columns:
        table.add_column(name, justify=justify)
    for s in sorted(att.stages, key=lambda s: -s.seconds):
        achieved = (f"{fmt_count(s.flop_s)}FLOP/s" if s.flop_s else
                    f"{fmt_bytes(s.byte_s)}/s" if s.byte_s else "–")
        mark = " ◀" if s.name == att.bottleneck else ""
        table.add_row(s.name + mark, s.kind, fmt_time(s.seconds), f"{s.share:.0%}",
                      f"{s.flops / step_flops:.0%}" if step_flops else "–", achieved,
                      "–" if s.ceiling_share is None else f"{s.ceiling_share:.1%}")
    table.add_section()
    total = att.total_s or 1.0
    for name, seconds in att.overheads.items():
        table.add_row(name, "overhead", fmt_time(seconds), f"{seconds / total:.0%}", "–", "–", "–")
    table.add_section()
    table.add_row("sum of parts", "", fmt_time(att.total_s), "", "", "", "")
    if timer_s:
        table.add_row("timer median", "", fmt_time(timer_s), f"parts {att.total_s / timer_s - 1:+.0%}", "", "", "")
    return table


def _candidate_line(c: CandidateFigures) -> str:
    interval = f" [{c.low:.2f}–{c.high:.2f}]" if c.low is not None and c.high is not None else ""
    return f"{c.name}: {c.theory:.2f}× → {c.realized:.2f}×{interval}"


def network_line(found: ModelFile) -> str:
    """The add-up check in one line: theory ×, predicted ×, measured × with its interval, and the gap. A gap
    on a run that met a busy machine is put down to that, never to the network."""
    from sepbench.model.verdicts import contention

    n = found.network
    if n is None:
        return "the whole network was not timed yet (interrupted: --resume finishes it)"
    busy = contention(found)
    header = found.header
    how = header.compile if header is not None else "eager"
    sites = (f"; its conv sites, {'compiled one by one' if how != 'eager' else 'timed one by one'}, add up to "
             f"{n.sites_s / n.as_is_s:.0%} of the {'compiled ' if how != 'eager' else ''}network's time"
             if n.sites_s else "")
    if n.compile_s:
        sites += (f"; compiling it took {n.compile_s.get('as is', 0.0):.1f} s as is, "
                  f"{n.compile_s.get('swapped', 0.0):.1f} s swapped, {n.graph_breaks or 0} graph breaks")
    if not n.swaps:
        interval = f" [{n.low:.3f}–{n.high:.3f}]" if n.low and n.high else ""
        return (f"no single conv is surely faster with a candidate: nothing swapped; the network as it is takes "
                f"{fmt_time(n.as_is_s)}, and against an unchanged copy reads {n.measured:.3f}×{interval} "
                "(what the check reads when nothing changed)" + (f"; {busy}" if busy else "") + sites)
    gap = n.as_is_s / n.measured / n.predicted_s  # the swapped network's time as the paired ratio implies it
    gap_range = (f" [{n.as_is_s / n.high / n.predicted_s:.3f}–{n.as_is_s / n.low / n.predicted_s:.3f}]"
                 if n.low and n.high else "")
    swaps = f"{len(n.swaps)} swap{'s' if len(n.swaps) != 1 else ''}"
    if abs(gap - 1) <= 0.10:
        why = f" ({busy})" if busy else ""
    elif busy:
        why = f" — outside ±10 %, on a contended run ({busy}): measure again on a quiet machine before reading it"
    elif how != "eager":
        why = " — outside ±10 %: the compiled network is not the sum of its compiled layers (inductor fuses " \
              "across them)"
    else:
        why = " — outside ±10 %: the network is not the sum of its layers here (fusion, layout or cache effects " \
              "between them)"
    return (f"network with {swaps}: theory {n.macs / n.swapped_macs:.2f}×, predicted "
            f"{n.as_is_s / n.predicted_s:.2f}×, measured {n.measured:.2f}×"
            + (f" [{n.low:.2f}–{n.high:.2f}]" if n.low and n.high else "")
            + f"; measured / predicted time {gap:.3f}{gap_range}" + why + sites)


def model_table(found: ModelFile) -> Table:
    """One row per conv site in network order: its share of the network's time, each candidate's theory ×
    → realized × [95 % interval], and the verdict (swap / keep / slower)."""
    from sepbench.model.verdicts import site_rows

    header = found.header
    assert header is not None
    how = f" compiled ({header.compile})" if header.compile != "eager" else ""
    view = _table(f"{header.spec} at {'×'.join(map(str, header.input_shape))}, {header.dtype} {header.mode}{how}, "
                  f"{header.environment.get('machine', '?')} · {header.device} · torch "
                  f"{header.environment.get('torch', '?')} · {header.threads} thr",
                  ["layer", "kind", "input → output", "share of time", "candidate: theory × → realized × [95 %]",
                   "verdict"], left=("layer", "kind", "input → output", "candidate: theory × → realized × [95 %]",
                                     "verdict"))
    for row in site_rows(found):
        r = row["record"]
        lines = "\n".join(_candidate_line(c) for c in r.candidates) or (r.reason or r.status)
        view.add_row(row["site"], row["kind"], f"{'×'.join(map(str, r.in_shape[1:]))} → "
                     f"{'×'.join(map(str, r.out_shape[1:]))}", f"{row['share']:.1%}", lines,
                     row["verdict"] + (f"\nunstable: {r.unstable}" if r.unstable else ""))
    return view


def layer_table(found: ModelFile, record: ModelSiteRecord, layer: str) -> Table:
    """A measured layer: its shapes and calls, and each candidate's theory × → realized × and time."""
    header = found.header
    assert header is not None
    entry = next(e for e in header.census if e["name"] == layer)
    pads = entry["padding"]
    title = (f"{layer} in {header.spec}: {'×'.join(map(str, entry['in_shape'][1:]))} → "
             f"{'×'.join(map(str, entry['out_shape'][1:]))}, kernel {entry['kernel'][0]}×{entry['kernel'][1]}, "
             f"stride {entry['stride'][0]}×{entry['stride'][1]}, padding {pads if pads is None else tuple(pads)}, "
             f"groups {entry['groups']}, {entry['calls']} call(s); site {record.site} ({record.site_kind}), "
             f"{len(record.layers)} layer(s) of this shape")
    view = _table(title, ["candidate", "MACs", "theory ×", "time", "realized ×", "95 % interval"], left=("candidate",))
    view.add_row("as is", fmt_count(record.macs), "1.00×", fmt_time(record.median_s) if record.median_s else "–",
                 "1.00×", "")
    for c in record.candidates:
        view.add_row(c.name, fmt_count(c.macs), f"{c.theory:.2f}×", fmt_time(c.median_s), f"{c.realized:.2f}×",
                     f"{c.low:.2f}–{c.high:.2f}" if c.low is not None and c.high is not None else "")
    return view


def stages_table(times: dict[str, list[Stage]], title: str) -> Table:
    """Each module's stages, timed alone: time, share of the module's time, share of its MACs."""
    view = _table(title, ["module", "stage", "kind", "time", "time share", "MAC share"],
                  left=("module", "stage", "kind"))
    for label, stages in times.items():
        total_s = sum(s.seconds for s in stages) or 1.0
        total_macs = sum(s.macs for s in stages) or 1
        for i, s in enumerate(stages):
            view.add_row(label if i == 0 else "", s.name, s.kind, fmt_time(s.seconds), f"{s.seconds / total_s:.0%}",
                         f"{s.macs / total_macs:.0%}")
    return view


def compile_lines(df: pd.DataFrame) -> list[str]:
    """A compiled run's answer under its table: whether compiling changes the answer here, the cases that did
    not compile and why, and any recompilation while blocks were timed (their figures then mix two codes)."""
    if "compile" not in df or not (df["compile"].fillna("eager") != "eager").any():
        return []
    from sepbench.report import analysis

    made = df[df["compile"].fillna("eager") != "eager"]
    table = analysis.compiled(analysis.prepare(df))
    lines = analysis.compile_finding(table) if len(table) else []
    failed = made[made["status"] == "skipped"]
    for reason, part in failed.groupby("reason"):
        lines.append(f"not compiled ({len(part)} cases): {reason}")
    recompiled = made[made.get("timing_recompiled", pd.Series(0, index=made.index)).fillna(0) > 0]
    if len(recompiled):
        lines.append(f"{len(recompiled)} compiled cases recompiled while timed: their blocks mix two compiled "
                     "codes; measure them again")
    return lines


def shards_table(coverage: list) -> Table:
    """Shards per (grid, torch, device) as `merge` found them (`merge.coverage`)."""
    table = Table("grid", "torch", "device", "files", "shards", "cases", "measured", "missing", "duplicated",
                  title="shards", title_justify="left")
    for c in coverage:
        shards = f"{len({r.header.shard for r in c.runs if r.header})} of {c.shards_of}" if c.shards_of else "unsharded"
        table.add_row(c.grid_name, c.torch, c.device, str(len(c.runs)), shards, str(c.expected), str(c.measured),
                      str(len(c.missing)), str(len(c.duplicated)))
    return table
