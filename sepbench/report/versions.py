"""Did the upgrade make it worse? The same case on the same machine, device and thread count under
two PyTorch versions, flagged only when the change lies beyond run-to-run noise.

Why runs, not blocks: on a shared VM a whole run can read 1.5–2× slower than the next run of the
same build, in every case at once. An interval built from the blocks of one run (its IQR, or a
bootstrap over its rounds) is blind to that and flags a third of all cases. So the unit of
replication is the run: each run gives one log median per case, the noise is the spread of those
across runs of one version, and a version needs repeated runs before anything is flagged.

The model, per case c: log median y = μ(c, version) + ε, ε ~ N(0, σ_c²) per run. σ_c² is
moderated towards the pooled variance of all cases in the comparison (a prior worth `PRIOR_DF`
degrees of freedom, as limma does for few replicates), the ratio newer/older gets a t interval,
and flags are controlled for the false discovery rate over all cases (Benjamini–Hochberg).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from packaging.version import InvalidVersion, Version
from scipy import stats

# Runs are compared only within one machine, device, thread count, heap policy and settings: the allocator
# policy moves some training steps by 1.1–1.8× (results/crosscheck/process-spread.csv), and oneDNN held
# to AVX2 some convs by up to 1.6× (docs/ab.md), as much as a version change would, so runs under two
# policies or settings are never set against each other.
GROUP = ["env_machine", "device", "threads", "env_heap", "env_settings"]
KEYS = ["machine", "device", "threads", "heap", "settings"]  # the same, as the comparison's columns
PRIOR_DF = 4.0
CONFIDENCE = 0.95
FDR = 0.05


def version_key(text: str) -> tuple:
    try:
        return (0, Version(text))
    except InvalidVersion:
        return (1, text)


def run_medians(df: pd.DataFrame) -> pd.DataFrame:
    """One row per measured case per run: the unit that cross-version noise is estimated from."""
    ok = df[(df["status"] == "ok") & df["timing_median_s"].notna()]
    settings = ok["env_settings"].fillna("") if "env_settings" in ok else ""  # none recorded: none set
    ok = ok.assign(env_settings=settings)
    cols = [*GROUP, "env_torch", "env_sepbench_commit", "run_id", "run_started", "case_id", "label", "geometry",
            "variant", "timing_median_s", "timing_q1_s", "timing_q3_s"]
    return ok[cols].assign(log_t=np.log(ok["timing_median_s"]))


def _pooled(rm: pd.DataFrame) -> tuple[pd.DataFrame, float, float]:
    """Per case: sum of squares and degrees of freedom within versions; and the pooled variance."""
    g = rm.groupby(["case_id", "env_torch"])["log_t"]
    within = rm.assign(dev2=(rm["log_t"] - g.transform("mean")) ** 2, one=1)
    per_case = within.groupby("case_id").agg(ss=("dev2", "sum"), n=("one", "sum"))
    per_case["df"] = per_case["n"] - rm.groupby("case_id")["env_torch"].nunique()
    total_df = float(per_case["df"].sum())
    pooled = float(per_case["ss"].sum() / total_df) if total_df > 0 else np.nan
    return per_case, pooled, total_df


def compare_versions(df: pd.DataFrame) -> pd.DataFrame:
    """Every case measured under two consecutive PyTorch versions of one machine × device × threads:
    ratio of geometric-mean run medians (newer / older: > 1 is slower), its interval and a verdict."""
    rm = run_medians(df)
    out = []
    for key, part in rm.groupby(GROUP, sort=True):
        versions = sorted(part["env_torch"].unique(), key=version_key)
        if len(versions) < 2:
            continue
        per_case, pooled, pooled_df = _pooled(part)
        for older, newer in itertools.pairwise(versions):
            out.append(_compare_pair(part, per_case, pooled, pooled_df, older, newer, key))
    if not out:
        return pd.DataFrame()
    return pd.concat(out, ignore_index=True)


def _compare_pair(part: pd.DataFrame, per_case: pd.DataFrame, pooled: float, pooled_df: float,
                  older: str, newer: str, key: tuple) -> pd.DataFrame:
    stats_by = part.groupby(["case_id", "env_torch"]).agg(
        mean=("log_t", "mean"), n=("log_t", "size"), label=("label", "first"), geometry=("geometry", "first"))
    a = stats_by.xs(older, level="env_torch")
    b = stats_by.xs(newer, level="env_torch")
    both = a.merge(b, left_index=True, right_index=True, suffixes=("_old", "_new")).join(per_case[["ss", "df"]])
    d = both["mean_new"] - both["mean_old"]
    res = pd.DataFrame({
        **dict(zip(KEYS, key, strict=True)), "older": older, "newer": newer,
        "case_id": both.index, "label": both["label_old"].to_numpy(), "geometry": both["geometry_old"].to_numpy(),
        "runs_old": both["n_old"].to_numpy(), "runs_new": both["n_new"].to_numpy(),
        "old_s": np.exp(both["mean_old"]).to_numpy(), "new_s": np.exp(both["mean_new"]).to_numpy(),
        "ratio": np.exp(d).to_numpy(),
    })
    if not pooled_df > 0:
        res[["low", "high", "q", "se", "dof"]] = np.nan
        res["verdict"] = "no repeat runs"
        return res
    prior = min(PRIOR_DF, pooled_df)
    var = (prior * pooled + both["ss"]) / (prior + both["df"])
    dof = (prior + both["df"]).to_numpy()
    se = np.sqrt(var * (1 / both["n_old"] + 1 / both["n_new"])).to_numpy()
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, dof) * se
    with np.errstate(divide="ignore", invalid="ignore"):  # se = 0: identical runs; p = 0 for any change, else 1
        t = np.where(se > 0, np.abs(d.to_numpy()) / se, np.where(d.to_numpy() != 0, np.inf, 0.0))
    p = 2 * stats.t.sf(t, dof)
    res["low"], res["high"] = np.exp(d.to_numpy() - half), np.exp(d.to_numpy() + half)
    res["se"], res["dof"] = se, dof
    res["q"] = stats.false_discovery_control(p)
    res["verdict"] = np.where(res["q"] >= FDR, "within noise", np.where(res["ratio"] > 1, "regression", "improvement"))
    return res


def summarize(cmp: pd.DataFrame) -> pd.DataFrame:
    """One row per compared pair of versions: how many cases, flags, and how many cases' own
    interval excludes 1 before the correction for many cases (against how many would by chance)."""
    pair = [*KEYS, "older", "newer"]
    return cmp.assign(beyond=(cmp["low"] > 1) | (cmp["high"] < 1)).groupby(pair, as_index=False).agg(
        runs_old=("runs_old", "max"), runs_new=("runs_new", "max"), cases=("case_id", "size"),
        median_ratio=("ratio", "median"), regressions=("verdict", lambda v: int((v == "regression").sum())),
        improvements=("verdict", lambda v: int((v == "improvement").sum())),
        unrepeated=("verdict", lambda v: bool((v == "no repeat runs").any())), beyond=("beyond", "sum"),
    ).assign(expected=lambda d: (1 - CONFIDENCE) * d["cases"]).merge(
        cmp.groupby(pair).apply(_resolvable, include_groups=False).rename("resolvable").reset_index(), on=pair)


def _resolvable(part: pd.DataFrame) -> float:
    """The smallest ratio a lone changed case must show to be flagged among all of them (the
    Benjamini–Hochberg bar for the strongest case is α / m), at the median case's noise: what these
    runs can resolve. More runs per version lower it."""
    if part["se"].isna().all():
        return np.nan
    t = stats.t.ppf(1 - FDR / (2 * len(part)), part["dof"])
    return float(np.median(np.exp(t * part["se"])))


def runs(df: pd.DataFrame) -> pd.DataFrame:
    """The runs behind the comparisons, numbered in start order within machine × device × threads:
    the run numbers of the trend plot, with the PyTorch version and sepbench commit of each."""
    return _numbered_runs(run_medians(df))


def _numbered_runs(rm: pd.DataFrame) -> pd.DataFrame:
    table = rm.groupby([*GROUP, "run_id"], as_index=False).agg(
        started=("run_started", "first"), torch=("env_torch", "first"), commit=("env_sepbench_commit", "first"),
        cases=("case_id", "nunique"))
    table = table.sort_values([*GROUP, "started"])
    table["run"] = table.groupby(GROUP).cumcount() + 1
    return table


def trend(df: pd.DataFrame, cases: pd.DataFrame) -> pd.DataFrame:
    """Run-by-run medians (with IQR) of the compared cases given (rows of `compare_versions`), on
    their own machine, device and thread count, with the run numbers of `runs`."""
    keys = cases[[*KEYS, "case_id"]].drop_duplicates()
    keys.columns = [*GROUP, "case_id"]
    rm = run_medians(df)
    numbered = _numbered_runs(rm)[[*GROUP, "run_id", "run"]]
    return rm.merge(keys, on=[*GROUP, "case_id"]).merge(numbered, on=[*GROUP, "run_id"]).sort_values("run_started")
