"""The report's sections, planned one by one: each is a function of the derived table that returns its
part of the page's data and plans its figures (`drawing.Plan`; drawn later, all at once). `page` loads,
calls them in page order, draws, and renders; the sections neither load nor render."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sepbench.ab import stats as ab_stats
from sepbench.report import analysis, plots, summary, versions
from sepbench.report import comparisons as ab_files
from sepbench.report.comparisons import ComparisonReport
from sepbench.report.drawing import Figure, Plan
from sepbench.report.modelruns import ModelRun
from sepbench.report.tables import missing

TOP = 15  # rows in the largest-regressions table
TRENDS = 12  # panels in the trend plot
SLOWER_SHOWN = 30  # rows per environment in the cheaper-but-slower table (records.csv holds them all)

Section = dict[str, Any]


def ratio(x: float | None, digits: int = 2) -> str:
    return "–" if missing(x) else f"{x:.{digits}f}×"


def interval(low: float | None, high: float | None) -> str:
    return "" if missing(low) else f"[{low:.2f}–{high:.2f}]"


def percent(x: float | None) -> str:
    return "–" if missing(x) else f"{x:.0%}"


def percent2(x: float | None) -> str:
    return "–" if x is None or missing(x) else f"{100 * x:.2f} %"


def text(value: object) -> str:
    return "–" if missing(value) or value == "" else str(value)


def _environment(df: pd.DataFrame, ceilings: pd.DataFrame) -> pd.DataFrame:
    """One row per environment: its fingerprint, runs and ceilings (`analysis.ceilings`)."""
    rows = []
    for env, part in df.groupby("env", sort=True):
        first = part.iloc[0]
        peaks = ceilings[ceilings["env"] == env].set_index("ceiling")["peak_flops"]
        rows.append({
            "env": env, "cpu": text(first["env_cpu"]), "gpu": text(first["env_gpu"]),
            "onednn": text(first["env_onednn"]),
            "cudnn": "–" if missing(first["env_cudnn"]) else f"{int(first['env_cudnn'])}",
            "commits": ", ".join(sorted({str(c)[:12] for c in part["env_sepbench_commit"].dropna()})),
            "runs": part["run_id"].nunique(), "records": len(part),
            "skipped": int((part["status"] != "ok").sum()),
            "unstable": int(part["realized_unstable"].sum()),
            "drift": int(part["timing_unstable"].fillna(False).astype(bool).sum()),
            "grids": ", ".join(sorted(part["run_grid"].dropna().unique())),
            "ceilings": ", ".join(f"{k} {v / 1e12:.3g} TFLOP/s" for k, v in peaks.dropna().items()),
            "bandwidth": part["peak_bandwidth"].max(),
            "first": part["run_started"].min(), "last": part["run_started"].max(),
        })
    return pd.DataFrame(rows)


def _conditions(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run that recorded its machine: thread policy, load at both ends, blocks re-taken, probe
    drift, unstable variants, and whether the machine was contended. Older runs recorded none of it."""
    if "run_retaken_share" not in df:
        return pd.DataFrame()
    known = df[df["run_retaken_share"].notna() | df["run_other_cores_start"].notna()]
    rows = []
    for (env, _), part in known.groupby(["env", "run_id"], sort=False):
        first = part.iloc[0]
        variants = part[part["realized_speedup"].notna()]
        rows.append({
            "env": env, "file": Path(first["file"]).name, "started": first["run_started"],
            "policy": text(first["run_thread_policy"]),
            "load": f"{text(first['run_other_cores_start'])} → {text(first['run_other_cores_end'])}",
            "retaken": percent(first["run_retaken_share"]), "drift": ratio(first["run_probe_drift"]),
            "unstable": f"{int(variants['realized_unstable'].sum())} of {len(variants)}",
            "contended": bool(first["run_contended"]),
        })
    return pd.DataFrame(rows).sort_values("started") if rows else pd.DataFrame()


def _nvml(df: pd.DataFrame) -> pd.DataFrame:
    if "memory_nvml_process_bytes" not in df:
        return pd.DataFrame()
    cuda = analysis.ok(df)[df["memory_nvml_process_bytes"].notna()]
    return cuda.groupby(["env", "mode"], as_index=False).agg(
        cases=("case_id", "size"), process_median=("memory_nvml_process_bytes", "median"),
        process_max=("memory_nvml_process_bytes", "max"), device_max=("memory_nvml_device_used_bytes", "max"),
        allocator_max=("memory_cuda_alloc_peak_bytes", "max"))


def _with_baselines(df: pd.DataFrame, common: pd.DataFrame) -> pd.DataFrame:
    """The summary's variant rows and the baseline rows they were measured against (same run and
    group), each tagged with its summary column: the data of the time-against-channels figure."""
    if common.empty:
        return common
    groups = common[["run_id", "group_id", "column"]].drop_duplicates()
    base = analysis.ok(df)
    base = base[base["is_baseline"]].merge(groups, on=["run_id", "group_id"])
    rows = pd.concat([common, base], ignore_index=True)
    return rows[rows["timing_median_s"].notna()]


def speedup_span(df: pd.DataFrame) -> float:
    """The one colour scale of every speedup heatmap on the page: theory and realized alike."""
    v = analysis.variants(df)
    return plots.speedup_span(np.concatenate([v["theory_speedup"].to_numpy(float),
                                              v["realized_speedup"].to_numpy(float)]))


def answer(df: pd.DataFrame, comparisons: list[ComparisonReport], plan: Plan) -> Section:
    """The first screen: the two answers (the separable saving per device class; the newest upgrade's
    verdict), each variant's theoretical against realized speedup on the cases every device class
    measured, the other findings, and time against channels."""
    columns, common = summary.common_cases(df)
    table = summary.summary_table(common)
    summary_plot = plan.figure("summary", plots.summary_dots, table, [c.env for c in columns],
                               title="Theoretical against realized speedup, same cases on every device",
                               alt="theoretical and realized speedup per variant, per device class") \
        if len(table) else None
    channel_rows = _with_baselines(df, common)
    channels_plot = plan.figure("time-vs-channels", plots.time_vs_channels, channel_rows, [c.env for c in columns],
                                title="Time per step against channels, per device",
                                alt="median time per step against input channels, log-log, per device and input "
                                    "size") if len(channel_rows) else None
    newest = ab_files.newest_upgrade(comparisons)
    compiled_table = analysis.compiled(df)
    findings = summary.findings(df, columns, common)
    findings += analysis.compile_finding(compiled_table) if len(compiled_table) else []
    return {"answer": table, "columns": columns, "findings": findings,
            "upgrade": newest, "upgrade_verdict": ab_files.verdict(newest) if newest else None,
            "network_upgrades": [(c, ab_files.network_short(c)) for c in ab_files.network_upgrades(comparisons)],
            "summary_plot": summary_plot, "channels_plot": channels_plot,
            "shared": bool(len(common)) and bool(common["shared"].iloc[0])}


def environments(df: pd.DataFrame) -> Section:
    """What each environment is, and the machine's condition per run."""
    return {"envs": sorted(df["env"].unique()), "environment": _environment(df, analysis.ceilings(df)),
            "conditions": _conditions(df)}


def overview(df: pd.DataFrame, plan: Plan, span: float) -> Section:
    """Per environment, setting and variant; and per setting where an environment measured several."""
    settings: dict[str, Figure] = {}
    for env in sorted(df["env"].unique()):
        pivot = analysis.settings_pivot(df, env)
        if pivot.shape[0] > 2:  # several settings measured here (a GPU run over its axes)
            title = f"{env}: realized × per setting (geometric mean over geometries)"
            settings[env] = plan.figure(f"settings-{len(settings)}", plots.settings_heatmap, pivot, title,
                                        span, title=title)
    overview = analysis.like_with_like(df, analysis.summary(df, ["env", "setting", "label"]))
    return {"overview": overview, "settings": settings}


def grids(df: pd.DataFrame, plan: Plan, span: float) -> Section:
    """A heatmap set per environment and setting; theory, which depends on the geometry alone, is drawn in
    the first figure of each set of geometries and referred to by the others."""
    found: list[tuple[Figure, str | None]] = []
    theory_drawn: dict[tuple[str, frozenset], str] = {}
    for i, (env, setting, part) in enumerate(analysis.grids(df)):
        shape = (setting.split(" · ", 1)[-1], frozenset(zip(part["label"], part["c_in"], part["size"], strict=True)))
        first = theory_drawn.setdefault(shape, f"fig-grid-{i}")
        own = first == f"fig-grid-{i}"
        title = f"{env} · {setting}"
        found.append((plan.figure(f"grid-{i}", plots.grid_heatmaps, part, title, own, span, title=title),
                      None if own else first))
    return {"grids": found}


def theory_against_realized(df: pd.DataFrame, plan: Plan) -> Section:
    layers = analysis.variants(df)
    layers = layers[layers["family"] != "network"]
    scatter = plan.figure("theory-vs-realized", plots.speedup_scatter, layers,
                          title="Every layer case: theoretical against realized") if len(layers) else None
    return {"scatter": scatter, "slower": analysis.slower_than_baseline(df), "slower_shown": SLOWER_SHOWN}


def roofline(df: pd.DataFrame, plan: Plan) -> Section:
    points, ceilings = analysis.roofline_points(df), analysis.ceilings(df)
    figure = plan.figure("roofline", plots.roofline, points, ceilings, title="Roofline per environment") \
        if len(points) else None
    share_plot = plan.figure("roofline-share", plots.roofline_share, points,
                             title="Share of the roofline bound reached") if len(points) else None
    share = points.groupby(["env", "label"], as_index=False)["roofline_share"].median() \
        .pivot(index="label", columns="env", values="roofline_share") if len(points) else pd.DataFrame()
    return {"roofline": figure, "roofline_share": share_plot, "share": share}


def where_time_goes(df: pd.DataFrame, plan: Plan) -> Section:
    shares = analysis.stage_shares(analysis.stages(df))
    stage_plots = [(env, setting, plan.figure(f"stages-{i}", plots.stage_shares, shares, env, setting,
                                              title=f"Time and FLOP share per stage: {env} · {setting}"))
                   for i, (env, setting) in enumerate(shares[["env", "setting"]].drop_duplicates()
                                                      .itertuples(index=False))] if len(shares) else []
    return {"stage_plots": stage_plots, "bottlenecks": analysis.bottlenecks(df), "sums": analysis.attribution_sums(df),
            "composition": analysis.composition_summary(analysis.composition(df)),
            "busy": analysis.device_busy(df), "sum_tolerance": analysis.SUM_TOLERANCE,
            "composition_tolerance": analysis.COMPOSITION_TOLERANCE}


def memory(df: pd.DataFrame, plan: Plan) -> Section:
    rows = analysis.ok(df)
    rows = rows[rows["measured_memory_bytes"].notna()]
    rows = rows.assign(memory_method=rows["measured_memory_method"] + "\n" + rows["env"])
    figure = plan.figure("memory", plots.memory, rows, title="Theoretical against measured memory") \
        if len(rows) else None
    return {"memory": figure, "memory_methods": sorted(set(zip(rows["device"], rows["measured_memory_method"],
                                                               strict=True))),
            "nvml": _nvml(df)}


def across_versions(df: pd.DataFrame, plan: Plan) -> Section:
    """Runs of one case under several PyTorch versions: the ratios, the flagged changes, their trends."""
    cmp = versions.compare_versions(df)
    if not cmp.empty:
        cmp = cmp.assign(abs_log=cmp["ratio"].map(lambda r: abs(math.log(r)))).sort_values("abs_log", ascending=False)
    flagged = cmp[cmp["verdict"].isin(["regression", "improvement"])] if not cmp.empty else cmp
    version_plot = plan.figure("versions", plots.version_ratios, cmp, title="Time ratio per case between versions") \
        if not cmp.empty else None
    # The trend of the largest flagged changes, or of the largest ratios when none is flagged.
    largest = (flagged if len(flagged) else cmp).head(TRENDS)
    trend_plot = plan.figure("trends", plots.trends, versions.trend(df, largest), title="Trend per case") \
        if not cmp.empty else None
    runs = versions.runs(df[df.set_index(versions.GROUP).index.isin(cmp.set_index(versions.KEYS).index)]) \
        if len(cmp) else cmp
    return {"cmp": cmp, "version_summary": versions.summarize(cmp) if len(cmp) else cmp, "version_runs": runs,
            "top": flagged.head(TOP), "flagged": flagged, "version_plot": version_plot, "trend_plot": trend_plot,
            "fdr": versions.FDR, "prior_df": versions.PRIOR_DF, "confidence": versions.CONFIDENCE}


def ab_comparisons(comparisons: list[ComparisonReport], plan: Plan) -> Section:
    """One card per comparison; the current method's comparisons with their plots, its calibrations and the
    earlier designs and protocols as verdicts and tables (they vouch for the comparisons, or are kept as
    measured; a plot of each would outweigh the page)."""
    for i, c in enumerate(comparisons):
        if c.group == ab_files.CURRENT:  # calibrations and earlier ones: their verdict and tables suffice
            c.plot = plan.figure(f"ab-{i}", plots.ab_ratios, c.table, c.title,
                                 title=f"Every case's B / A, sorted: {c.kind} of {c.stamp}",
                                 alt=f"ratio B / A per case with 95 % intervals: {c.title}")
    return {"comparisons": comparisons, "ab_fdr": ab_stats.FDR, "ab_groups": ab_files.GROUPS,
            "verdict": ab_files.verdict}


def compiled(df: pd.DataFrame, plan: Plan) -> Section:
    """Eager and compiled side by side, a figure per environment and compile mode, and whether compiling
    changes the answer on each machine."""
    table = analysis.compiled(df)
    figures = []
    if len(table):
        for i, ((env, how), part) in enumerate(table.groupby(["env", "compile"], sort=True)):
            figures.append(plan.figure(f"compiled-{i}", plots.compiled, part, title=f"Eager against {how}: {env}",
                                       alt=f"realized speedup eager and compiled, and eager over compiled time, "
                                           f"per variant: {env}, {how}"))
    return {"compiled": table, "compiled_plots": figures,
            "compiled_findings": analysis.compile_finding(table) if len(table) else []}


def networks(df: pd.DataFrame, plan: Plan, span: float) -> Section:
    net = analysis.networks(df)
    figure = plan.figure("networks", plots.networks, net, span,
                         title="Networks against their full-conv twins") if len(net) else None
    return {"net": net, "networks": figure}


def models(runs: list[ModelRun], plan: Plan) -> Section:
    """A card per network measured layer by layer: its figure, its sites and the add-up check."""
    for i, run in enumerate(runs):
        rows = run.figure_rows()
        if len(rows):
            run.plot = plan.figure(f"model-{i}", plots.model_layers, rows, run.title,
                                   title=f"Site by site: {run.path.stem}",
                                   alt=f"share of time and realized × per conv site of {run.title}")
    return {"model_runs": runs}


def plan_all(df: pd.DataFrame, comparisons: list[ComparisonReport], plan: Plan) -> Section:
    """Every section's data, in page order, its figures planned in `plan`; one speedup scale for them all."""
    span = speedup_span(df)
    return {**answer(df, comparisons, plan), **environments(df), **overview(df, plan, span), **grids(df, plan, span),
            **theory_against_realized(df, plan), **roofline(df, plan), **where_time_goes(df, plan),
            **memory(df, plan), **compiled(df, plan), **across_versions(df, plan),
            **ab_comparisons(comparisons, plan), **networks(df, plan, span)}
