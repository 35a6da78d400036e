"""The answer first: one environment per device class (each CPU machine, each GPU), compared on the
cases they share, and a few findings sentences generated from the records.

Nothing here pools settings that differ. A summary column is one environment under one setting
(batch, dtype, TF32, layout, autotuning, threads); its cases are the layer geometries × modes that
every column measured, so a row compares like with like across devices. Everything else is in the
per-setting tables further down the page.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from sepbench.report import analysis
from sepbench.report.versions import version_key

# What makes two records the same case on two devices: the geometry, batch, dtype, mode and variant.
CASE_KEY = ["mode", "label", "c_in", "c_out", "size", "kernel", "stride", "dilation", "padding", "bias", "act",
            "batch", "dtype"]
# The axes of a setting besides the mode (which the summary keeps as rows).
SETTING_AXES = ["batch", "dtype", "tf32", "memory_format", "cudnn_benchmark"]
LEAD = "depthwise_separable"  # the variant the findings lead with, where it was measured


@dataclass
class Column:
    """One environment under one setting: a column of the summary."""

    env: str
    setting: str  # setting without the mode, e.g. "n1 float32 TF32 cudnn.benchmark"


def _layer_variants(df: pd.DataFrame) -> pd.DataFrame:
    v = analysis.variants(df)
    return v[v["family"] != "network"]


def _case_key(part: pd.DataFrame) -> pd.Series:
    """Each row's CASE_KEY as one string: what the columns intersect on and a case is deduplicated by."""
    return part[CASE_KEY].astype(object).map(str).agg("|".join, axis=1)


def _setting_without_mode(setting: str, mode: str) -> str:
    return " ".join(w for w in setting.split() if w != mode)


def representative_envs(df: pd.DataFrame) -> list[str]:
    """One environment per device class (machine × device, a machine being one host where runs record it):
    the newest PyTorch, then the thread count with the most variant records. The class with the newest run
    first, so that a user's own run answers for their machine first; CPU before CUDA on a tie."""
    v = _layer_variants(df)
    chosen = []
    for (_, device), part in v.groupby(["env_machine", "device"], sort=True):
        latest = str(part["run_started"].max())
        newest = max(part["env_torch"].unique(), key=version_key)
        part = part[part["env_torch"] == newest]
        chosen.append((latest, device == "cpu", part["env"].value_counts().index[0]))
    return [env for *_, env in sorted(chosen, reverse=True)]


def common_cases(df: pd.DataFrame) -> tuple[list[Column], pd.DataFrame]:
    """The summary's columns and its variant rows (column `column` names one): for each representative
    environment its most measured setting, restricted to the cases all of them measured. Where the
    device classes share no case, each column keeps its own cases and `shared` is False on the rows."""
    v = _layer_variants(df)
    picks = []
    for env in representative_envs(df):
        part = v[v["env"] == env]
        setting_key = part[SETTING_AXES].astype(object).map(str).agg(" ".join, axis=1)
        top = setting_key.value_counts().index[0]
        picks.append((env, part[setting_key == top]))
    if not picks:
        return [], pd.DataFrame()
    shared = set.intersection(*(set(_case_key(part)) for _, part in picks))
    columns, rows = [], []
    for env, part in picks:
        part = _one_per_case(part[_case_key(part).isin(shared)] if shared else part)
        columns.append(Column(env, _setting_without_mode(part["setting"].iloc[0], part["mode"].iloc[0])))
        rows.append(part.assign(column=env, shared=bool(shared)))
    return columns, pd.concat(rows, ignore_index=True)


def _one_per_case(part: pd.DataFrame) -> pd.DataFrame:
    """One record per case: where several runs measured it, the one with the median realized ×, so each
    case weighs the same in every column however often it was run."""
    part = part.sort_values("realized_speedup")
    key = _case_key(part)
    rank, size = part.groupby(key).cumcount(), key.map(key.value_counts())
    return part[rank == (size - 1) // 2]


def summary_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per mode and variant: the theoretical × (the same cases in every column, so one figure) and per
    column the realized × with its interval and how many cases ran slower than the standard conv."""
    return rows if rows.empty else analysis.summary(rows, ["mode", "label", "column"])


def _name(env: str) -> str:
    """'vm · cpu · torch 2.13.0+cpu · 1 thr' → 'vm (cpu, torch 2.13.0+cpu, 1 thread)'."""
    machine, device, torch, threads = [*env.split(" · "), "", "", ""][:4]
    threads = threads.replace(" thr", "")
    return f"{machine} ({device}, {torch}, {threads} thread{'s' if threads != '1' else ''})"


def _batch(setting: str) -> str:
    """'n1 float32 …' → 'batch 1'."""
    return "batch " + setting.split()[0].removeprefix("n")


def _label(label: str) -> str:
    return label.replace("_", "-")


def findings(df: pd.DataFrame, columns: list[Column], rows: pd.DataFrame) -> list[str]:
    """Three to five sentences, each computed from the records given: the headline speedup per device
    class with its interval (the first screen's first answer), where a variant loses, what TF32 does,
    where the time goes, and how many cheaper cases ran slower. A sentence whose data is absent is left
    out. (The second answer, the upgrade's verdict, is `comparisons.verdict`.)"""
    out = []
    table = summary_table(rows)
    if len(table):
        lead = LEAD if LEAD in set(table["label"]) else table.sort_values("theory")["label"].iloc[-1]
        for mode in ("inference", "train"):
            part = table[(table["label"] == lead) & (table["mode"] == mode)]
            if part.empty:
                continue
            cases = int(part["cases"].iloc[0])
            order = [c.env for c in columns]
            part = part.assign(order=part["column"].map(order.index)).sort_values("order")
            realized = ", ".join(f"{r.realized:.2f}× [{r.realized_low:.2f}–{r.realized_high:.2f}] on "
                                 f"{_name(r.column)}" for r in part.itertuples())
            out.append(f"{_label(lead).capitalize()} {mode} ({cases} cases, {_batch(columns[0].setting)}, "
                       f"{columns[0].setting.split()[1]}): {part['theory'].iloc[0]:.1f}× fewer FLOPs in theory; "
                       f"realized {realized}.")
            break
        slow = table[(table["slower"] > 0) & (table["theory"] > 1)]
        slow = slow[slow["label"] == lead] if lead in set(slow["label"]) else slow
        if len(slow):
            worst = slow.assign(share=slow["slower"] / slow["cases"]).sort_values(["share", "cases"]).iloc[-1]
            setting = next(c.setting for c in columns if c.env == worst["column"])
            out.append(f"On {_name(worst['column'])} at {_batch(setting)}, "
                       f"{_label(worst['label'])} {worst['mode']} is slower than the standard conv in "
                       f"{worst['slower']} of {worst['cases']} cases, though it needs {worst['theory']:.1f}× "
                       "fewer FLOPs.")
    tf32 = _tf32_effect(df)
    if tf32:
        out.append(tf32)
    neck = _bottleneck(df)
    if neck:
        out.append(neck)
    out.append(_cheaper_but_slower(df))
    return out[:5]


def _cheaper_but_slower(df: pd.DataFrame) -> str:
    """Over every environment and setting: how many variant cases that need fewer FLOPs ran slower."""
    v = _layer_variants(df)
    cheaper = v[v["theory_speedup"] > 1]
    slow = analysis.slower_than_baseline(df)
    slow = slow[slow["family"] != "network"]
    envs = v["env"].nunique()
    return (f"Over all {envs} environment{'s' if envs != 1 else ''} and their settings, {len(slow)} of "
            f"{len(cheaper)} layer cases that need fewer FLOPs than the standard conv ran slower than it "
            f"({int(slow['sure'].sum())} with the whole 95 % interval below 1×).")


def _tf32_effect(df: pd.DataFrame) -> str | None:
    """Where the same float32 CUDA cases ran with TF32 on and off: how the lead variant's realized ×
    moves (TF32 speeds the standard conv's matmul-like kernels, rarely a depthwise one)."""
    rows = analysis.ok(df)
    rows = rows[(rows["device"] == "cuda") & (rows["dtype"] == "float32") & rows["tf32"].notna()
                & rows["timing_median_s"].notna()]
    if rows.empty:
        return None
    key = ["env", *[c for c in CASE_KEY if c != "label"], "memory_format", "cudnn_benchmark"]

    def on_off(part: pd.DataFrame, column: str) -> pd.DataFrame:
        tf32 = part["tf32"].astype(bool)
        return pd.concat({"on": part[tf32].groupby(key)[column].median(),
                          "off": part[~tf32].groupby(key)[column].median()}, axis=1).dropna()

    lead = on_off(rows[(rows["label"] == LEAD) & rows["realized_speedup"].notna()], "realized_speedup")
    base = on_off(rows[rows["is_baseline"]], "timing_median_s")
    both = lead.join(base.add_suffix("_base"), how="inner")
    if both.empty:
        return None
    batch = both.index.get_level_values("batch")
    b = int(pd.Series(batch).value_counts().index[0])
    part = both[batch == b]
    env = part.index.get_level_values("env")[0]
    part = part[part.index.get_level_values("env") == env]
    geo = analysis.geomean
    return (f"TF32 decides the answer on {_name(env)}: at batch {b}, {_label(LEAD)} realizes "
            f"{geo(part['off']):.2f}× with TF32 off and {geo(part['on']):.2f}× with it on ({len(part)} matched "
            f"cases); TF32 makes the standard conv {geo(part['off_base'] / part['on_base']):.2f}× faster.")


def _bottleneck(df: pd.DataFrame) -> str | None:
    """The lead variant's most frequent bottleneck stage, in the environment with the most attributed cases."""
    b = analysis.bottlenecks(df)
    if b.empty:
        return None
    b = b[b["label"] == LEAD] if LEAD in set(b["label"]) else b
    r = b.assign(inference=b["mode"] == "inference").sort_values(["cases", "inference", "times"]).iloc[-1]
    return (f"Where the time goes on {_name(r['env'])} ({r['setting']}): the {r['stage']} stage is the bottleneck "
            f"in {r['times']} of {r['cases']} {_label(r['label'])} cases, taking a median {r['time_share']:.0%} of "
            f"the step's time for {r['flop_share']:.0%} of its FLOPs.")
