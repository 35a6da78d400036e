"""The figures of the README and of docs/, derived from the committed results files with plain pandas (not
sepbench's analysis code), and written into the pages between markers:

    <!-- fig:NAME -->…<!-- /fig:NAME -->

Prose around a figure is free to change; the figure itself is generated. `--check` (what the test suite
runs) fails when a page's figure is not what its files give, when a marker names no figure, or when a
figure is on no page; a results file that goes missing fails too.

    python docs/figures.py            # rewrite every figure from the committed files
    python docs/figures.py --check    # exit 1, naming them, when any figure is stale
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FRONT = (ROOT / "README.md").read_text()
README = "\n\n".join([FRONT, *(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))])


def committed(*patterns: str) -> list[Path]:
    """Committed results files by exact name or glob, each of which must match: a renamed or deleted file
    fails instead of quietly leaving its figures out."""
    found: list[Path] = []
    for pattern in patterns:
        matches = sorted(RESULTS.glob(pattern))
        if not matches:
            raise FileNotFoundError(f"committed results missing: results/{pattern}")
        found += matches
    return found


def sepbench(*args: str | os.PathLike, timeout: float = 300, columns: int = 200) -> subprocess.CompletedProcess:
    """The CLI as a user meets it: a separate process."""
    return subprocess.run([sys.executable, "-m", "sepbench", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": str(columns)})


VARIANTS = ["depthwise_separable", "grouped", "pointwise", "spatially_separable", "inverted_residual"]
CHANNELS = [32, 64, 128, 256]
# The default preset at 1 thread under torch 2.13.0, three runs; and the two runs at 2 threads.
ONE_THREAD = ["default-cpu-vm-torch2.13.0+cpu-20261123T050308Z.jsonl",
              "default-cpu-vm-torch2.13.0+cpu-20261123T061926Z.jsonl",
              "default-cpu-vm-torch2.13.0+cpu-20261123T062609Z.jsonl"]
TWO_THREADS = ["default-cpu-vm-torch2.13.0+cpu-20261123T004437Z.jsonl",
               "default-cpu-vm-torch2.13.0+cpu-20261123T014825Z.jsonl"]


def json_lines(path: Path) -> list[dict]:
    """A results file's lines, header first."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def records(name: str) -> pd.DataFrame:
    """One results file as a flat table, read with json and pandas only."""
    (path,) = committed(name)
    lines = json_lines(path)
    header, cases = lines[0], [r for r in lines[1:] if r["kind"] == "case"]
    rows = [{**r["case"], "status": r["status"], "median_s": (r.get("timing") or {}).get("median_s"),
             "unstable": (r.get("timing") or {}).get("unstable"),
             "realized": (r.get("realized") or {}).get("speedup"),
             "low": (r.get("realized") or {}).get("low"), "high": (r.get("realized") or {}).get("high"),
             "theory": r["theory"]["speedup"], "threads": header["environment"]["threads"]} for r in cases]
    return pd.DataFrame(rows)


def cpu_table() -> str:
    """Median realized speedup over the three sizes (inference), per run; the table gives the median
    of the three runs and, in brackets, the lowest and highest run."""
    per_run = []
    for name in ONE_THREAD:
        df = records(name)
        ok = df[(df["mode"] == "inference") & df["realized"].notna()]
        per_run.append(ok.groupby(["variant", "c_in"])["realized"].median())
    runs = pd.concat(per_run, axis=1)
    theory = records(ONE_THREAD[0]).query("mode == 'inference'").groupby("variant")["theory"].agg(["min", "max"])
    lines = ["| variant | theory × | " + " | ".join(f"C={c}" for c in CHANNELS) + " |",
             "|---|---|" + "---|" * len(CHANNELS)]
    for v in VARIANTS:
        lo, hi = theory.loc[v, "min"], theory.loc[v, "max"]
        th = f"{lo:.2f}–{hi:.2f}×" if round(lo, 2) != round(hi, 2) else f"{lo:g}×"
        cells = [f"{runs.loc[(v, c)].median():.2f}× [{runs.loc[(v, c)].min():.2f}–{runs.loc[(v, c)].max():.2f}]"
                 for c in CHANNELS]
        lines.append(f"| {v} | {th} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def two_thread_dws32() -> list[str]:
    """depthwise_separable 32→32, inference, at 2 threads: the median over sizes in each run."""
    out = []
    for name in TWO_THREADS:
        df = records(name)
        part = df[(df["variant"] == "depthwise_separable") & (df["c_in"] == 32) & (df["mode"] == "inference")]
        out.append(f"{part['realized'].median():.2f}×")
    return out


def unstable_counts(names: list[str]) -> list[str]:
    return [f"{int(records(n)['unstable'].fillna(False).sum())}" for n in names]


def gpu_tf32_table() -> str:
    df = records(committed("gpu-cuda-h100-*.jsonl")[0].name)
    part = df[(df["variant"] == "depthwise_separable") & (df["dtype"] == "float32") & (df["mode"] == "inference")
              & (df["memory_format"] == "contiguous") & (df["cudnn_benchmark"] == True)]  # noqa: E712
    lines = ["| channels | TF32 off | TF32 on |", "|---|---|---|"]
    for c in sorted(part["c_in"].unique()):
        cells = []
        for tf32 in (False, True):
            r = part[(part["c_in"] == c) & (part["tf32"] == tf32)].iloc[0]
            cells.append(f"{r['realized']:.2f}× [{r['low']:.2f}–{r['high']:.2f}]")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cudnn_benchmark_off() -> dict[tuple[str, int, bool], float]:
    """Standard conv, fp32 contiguous, batch 32: time with cudnn.benchmark off / on."""
    df = records(committed("gpu-cuda-h100-*.jsonl")[0].name)
    st = df[(df["variant"] == "standard") & (df["dtype"] == "float32") & (df["memory_format"] == "contiguous")
            & (df["status"] == "ok")]
    piv = st.pivot_table(index=["mode", "c_in", "tf32"], columns="cudnn_benchmark", values="median_s")
    return {k: piv.loc[k, False] / piv.loc[k, True] for k in piv.index}


def cpu_headline_table() -> Iterator[str]:
    yield cpu_table()


def two_thread_figures_and_unstable_counts() -> Iterator[str]:
    yield from two_thread_dws32()
    re.sub(r"\s+", " ", README)
    one, two = unstable_counts(ONE_THREAD), unstable_counts(TWO_THREADS)
    yield f"{', '.join(one)} of 216 cases at 1 thread"
    yield f"{' and '.join(two)} of 216 at 2 threads"


def one_thread_efficiency_and_extremes() -> Iterator[str]:
    re.sub(r"\s+", " ", README)
    eff = {m: [] for m in ("inference", "train")}
    small, large = [], []
    for name in ONE_THREAD:
        df = records(name)
        rated = df[df["realized"].notna()].assign(eff=lambda d: d["realized"] / d["theory"])
        for mode in eff:
            eff[mode].append(round(100 * rated[rated["mode"] == mode]["eff"].median()))
        dws = df[(df["variant"] == "depthwise_separable") & (df["mode"] == "inference")]
        small.append(dws[(dws["c_in"] == 32) & (dws["size"] == 14)]["realized"].iloc[0])
        large.append(dws[(dws["c_in"] == 256) & (dws["size"] == 56)]["realized"].iloc[0])
    yield (f"{min(eff['inference'])}–{max(eff['inference'])} % for inference and "
            f"{min(eff['train'])}–{max(eff['train'])} % for training")
    yield f"({min(small):.2f}–{max(small):.2f}× at 1 thread)"
    yield f"It reaches {min(large):.2f}–{max(large):.2f}× at 256 channels and 56²"




def cudnn_benchmark_figures() -> Iterator[str]:
    off = cudnn_benchmark_off()
    re.sub(r"\s+", " ", README)
    yield f"{off[('inference', 32, True)]:.2f}× for inference and {off[('train', 32, True)]:.2f}× for training"
    others = [r for k, r in off.items() if not (k[1] == 32 and k[2])]
    yield f"by at most {100 * max(abs(r - 1) for r in others):.1f} %"




def two_consecutive_crosschecks_pass_as_the_readme_says() -> Iterator[str]:
    """The acceptance of the asv agreement: the last two committed comparisons, all 16 cases within ±10 %
    for both harnesses, with the per-pass spans the README quotes."""
    re.sub(r"\s+", " ", README)
    for folder in ("20261123T220449Z", "20261123T221131Z"):
        (csv,) = committed(f"crosscheck/{folder}/crosscheck.csv")
        table = pd.read_csv(csv)
        for harness in ("asv", "pytest-benchmark"):
            assert ((table[f"{harness} / sepbench"] - 1).abs() <= 0.10).all(), (folder, harness)
        low, high = table["asv / sepbench low"].min(), table["asv / sepbench high"].max()
        pb = table["pytest-benchmark / sepbench"]
        yield f"`{folder}` | fixed (`heap`), every harness pinned | 16 of 16 | "
        yield f"asv's per-pass ratios {low:.2f}–{high:.2f}; pytest-benchmark {pb.min():.2f}–{pb.max():.2f} median"


def gpu_batch_one_and_network_figures() -> Iterator[str]:
    re.sub(r"\s+", " ", README)
    d = records(committed("default-cuda-h100-*.jsonl")[0].name)
    std = d[(d["variant"] == "standard") & (d["mode"] == "inference") & (d["status"] == "ok")]["median_s"] * 1e6
    yield f"takes {std.min():.0f}–{std.max():.0f} µs at every width"
    dws = d[(d["variant"] == "depthwise_separable") & (d["mode"] == "inference")]
    small, above = dws[dws["c_in"] == 32]["realized"], dws[dws["c_in"] > 32]["realized"]
    yield f"reads {small.median():.2f}× at 32 channels and {above.min():.2f}–{above.max():.2f}× above"
    net = records(committed("networks-cuda-h100-*.jsonl")[0].name)
    v1 = net[net["variant"] == "mobilenet_v1"]
    yield f"({v1['realized'].min():.2f}–{v1['realized'].max():.2f}×,"
    yield f"{v1['theory'].min():.1f}–{v1['theory'].max():.1f}× fewer FLOPs"
    g = records(committed("gpu-cuda-h100-*.jsonl")[0].name)
    same = (g["dtype"] == "float32") & (g["memory_format"] == "contiguous") & (g["cudnn_benchmark"] == True)  # noqa: E712
    st = g[same & (g["variant"] == "standard") & (g["mode"] == "inference")]
    gain = st.pivot_table(index="c_in", columns="tf32", values="median_s")
    gain = gain[False] / gain[True]
    low, high = (f"{gain.iloc[i]:.1f}× ({gain.index[i]} channels)" for i in (0, -1))
    yield f"up {low} to {high}"
    train = g[same & (g["variant"] == "depthwise_separable") & (g["mode"] == "train")]["realized"]
    yield f"realize {train.min():.2f}–{train.max():.2f}×"


EXCERPT_RUN = "default-cpu-vm-torch2.13.0+cpu-20261123T204719Z.jsonl"




def cpu_timer_agreement() -> Iterator[str]:
    (csv,) = committed("timercheck/smoke-cpu-vm-torch2.13.0+cpu-20261123T120456Z.csv")
    ratio = pd.read_csv(csv)["sepbench_over_timer"]
    re.sub(r"\s+", " ", README)
    yield f"{ratio.median():.3f} over {len(ratio)} cases ({ratio.min():.2f}–{ratio.max():.2f})"




# The cross-version paragraph: 2.12.0 against 2.13.0, default preset at 1 thread, each run a unit.
OLDER = ["default-cpu-vm-torch2.12.0+cu130-20261123T045948Z.jsonl",
         "default-cpu-vm-torch2.12.0+cu130-20261123T061600Z.jsonl",
         "default-cpu-vm-torch2.12.0+cu130-20261123T062255Z.jsonl"]
NEWER = [*ONE_THREAD, "crosscheck/grid-cpu-vm-torch2.13.0+cpu-20261123T015155Z.jsonl"]
PRIOR_DF, FDR = 4.0, 0.05


def _case_key(df: pd.DataFrame) -> pd.Series:
    return df[["variant", "c_in", "c_out", "size", "kernel", "groups", "expansion", "mode"]].astype(str).agg("|".join,
                                                                                                          axis=1)


def _benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """q-values by hand: q_(i) = min over j ≥ i of p_(j) · m / j."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p)
    ranked = p[order] * len(p) / np.arange(1, len(p) + 1)
    q = np.empty(len(p))
    q[order] = np.minimum(1, np.minimum.accumulate(ranked[::-1])[::-1])
    return q


def cross_version() -> tuple[pd.DataFrame, float, float]:
    """Per case: the ratio of geometric-mean run medians, newer / older, with the README's noise model
    written out again in numpy: within-version variance pooled over cases and shrunk towards the pooled
    value with 4 prior degrees of freedom, a t interval, Benjamini–Hochberg q-values by hand."""
    from scipy import stats

    runs = []
    for version, names in (("old", OLDER), ("new", NEWER)):
        for name in names:
            df = records(name)
            df = df[(df["status"] == "ok") & df["median_s"].notna()]
            runs.append(pd.DataFrame({"key": _case_key(df), "version": version, "log_t": np.log(df["median_s"]),
                                      "variant": df["variant"], "c_in": df["c_in"], "size": df["size"],
                                      "mode": df["mode"]}))
    rm = pd.concat(runs)
    rm = rm[rm["key"].isin(rm[rm["version"] == "old"]["key"])]
    g = rm.groupby(["key", "version"])["log_t"]
    stats_by = g.agg(["mean", "size"]).unstack("version")
    ss = ((rm["log_t"] - g.transform("mean")) ** 2).groupby(rm["key"]).sum()
    dof_case = stats_by["size"].sum(axis=1) - 2
    pooled = ss.sum() / dof_case.sum()
    prior = min(PRIOR_DF, dof_case.sum())
    var = (prior * pooled + ss) / (prior + dof_case)
    dof = prior + dof_case
    se = np.sqrt(var * (1 / stats_by["size"]["old"] + 1 / stats_by["size"]["new"]))
    d = stats_by["mean"]["new"] - stats_by["mean"]["old"]
    half = stats.t.ppf(0.975, dof) * se
    p = 2 * stats.t.sf(np.abs(d) / se, dof)
    q = _benjamini_hochberg(p)
    m = len(p)
    first = rm.drop_duplicates("key").set_index("key")
    table = pd.DataFrame({"ratio": np.exp(d), "low": np.exp(d - half), "high": np.exp(d + half), "q": q,
                          "se": se, "dof": dof}).join(first[["variant", "c_in", "size", "mode"]])
    resolvable = float(np.median(np.exp(stats.t.ppf(1 - FDR / (2 * m), dof) * se)))
    return table, float(np.sqrt(pooled)), resolvable


def cross_version_paragraph() -> Iterator[str]:
    from scipy import stats

    table, log_sd, resolvable = cross_version()
    text = re.sub(r"\s+", " ", README.split("What the committed results say across versions", 1)[1][:2500])
    assert len(table) == 216
    yield f"over {len(table)} cases the median time ratio 2.13 / 2.12 is {table['ratio'].median():.2f}"
    assert (table["q"] < FDR).sum() == 0 and "**no case is flagged**" in text
    beyond = int(((table["low"] > 1) | (table["high"] < 1)).sum())
    yield f"{beyond} cases have a 95 % interval that excludes 1 on its own, where {round(0.05 * 216)}"
    top = table.loc[np.log(table["ratio"]).abs().idxmax()]
    assert (top["variant"], top["c_in"], top["size"], top["mode"]) == ("depthwise", 256, 14, "inference")
    yield f"{top['ratio']:.2f}× [{top['low']:.2f}–{top['high']:.2f}] (q = {top['q']:.2f})"
    dw = table[(table["variant"] == "depthwise") & (table["c_in"] == 32) & (table["size"] == 28)
               & (table["mode"] == "inference")].iloc[0]
    yield f"{dw['ratio']:.2f}× [{dw['low']:.2f}–{dw['high']:.2f}] with the repeats"
    yield f"about {100 * log_sd:.0f} % (log SD)"
    yield f"must reach about {resolvable:.1f}×"
    ten = float(np.exp(stats.t.ppf(1 - FDR / (2 * 216), 18 + PRIOR_DF) * log_sd * np.sqrt(2 / 10)))
    yield f"10 runs each would bring it to about {ten:.2f}×"


# `sepbench ab`: the committed comparisons, re-derived with numpy and scipy's t-test, BH by hand.
AA = "aa-default-cpu-vm-torch2.13.0+cpu-vs-torch2.13.0+cpu"
AB_AB = "2.12.0 (A) → 2.13.0 (B)"
AB_INJECT = "A/A, B slowed 5 % (`--inject 5`)"
AB_AB_EARLIER = "2.12.0 (A) → 2.13.0 (B), 6 pairs, 50 ms warm-up"
AB_FILES = {"A/A": f"{AA}-20261123T194301Z.jsonl",
            "A/A, again": f"{AA}-20261123T202*.jsonl",
            AB_INJECT: f"{AA}-inject5pct-20261123T192320Z.jsonl",
            AB_AB: "ab-default-cpu-vm-torch2.12.0+cu130-vs-torch2.13.0+cpu-20261123T20*.jsonl",
            "A/A, 6 pairs, 50 ms warm-up": f"{AA}-20261123T171839Z.jsonl",
            "A/A, B slowed 5 %, 6 pairs, 50 ms warm-up": f"{AA}-inject5pct-20261123T165856Z.jsonl",
            "A/A, 10 pairs, 50 ms warm-up, every pair": f"{AA}-20261123T180925Z.jsonl",
            "A/A, B slowed 5 %, 10 pairs, 50 ms warm-up, every pair": f"{AA}-inject5pct-20261123T174552Z.jsonl",
            AB_AB_EARLIER: "ab-default-cpu-vm-torch2.12.0+cu130-vs-torch2.13.0+cpu-20261123T145351Z.jsonl",
            "A/A, earlier driver": f"{AA}-20261123T141815Z.jsonl",
            "A/A, B slowed 5 %, earlier driver": f"{AA}-inject5pct-20261123T151401Z.jsonl",
            "A/A, 8 min, earlier driver": f"{AA}-20261123T153414Z.jsonl"}


def ab_file(pattern: str) -> tuple[dict, list[dict]]:
    (path,) = [p for p in committed(f"ab/{pattern}") if "inject" not in p.name or "inject" in pattern]
    lines = json_lines(path)
    return lines[0], lines[1:]


def ab_cases(records: list[dict], unit: str = "median", tau: float = 0.0) -> pd.DataFrame:
    """Per case: mean over worker pairs of the pair's median (or `unit`: "mean") log ratio B/A; t interval
    over the pairs, with the between-run component `tau` (the header's) added to its standard error; q."""
    from scipy import stats

    rows = []
    for r in records:
        if r["status"] != "ok":
            rows.append({"case_id": r["case_id"], "status": r["status"]})
            continue
        d = pd.Series(np.log(np.array(r["b_s"]) / np.array(r["a_s"]))).groupby(r["instance"]).agg(unit)
        se = np.sqrt(d.var(ddof=1) / len(d) + tau ** 2)
        crit = stats.t.ppf(0.975, len(d) - 1)
        p = 2 * stats.t.sf(abs(d.mean()) / se, len(d) - 1)
        rows.append({"case_id": r["case_id"], "status": "ok", "variant": r["case"]["variant"],
                     "c_in": r["case"]["c_in"], "size": r["case"]["size"], "mode": r["case"]["mode"],
                     "ratio": np.exp(d.mean()), "low": np.exp(d.mean() - crit * se),
                     "high": np.exp(d.mean() + crit * se), "p": p,
                     "mdc": np.expm1(crit * se), "a_s": np.median(r["a_s"]), "instances": len(d),
                     "b_s": np.median(r["b_s"])})
    table = pd.DataFrame(rows)
    ok = table["status"] == "ok"
    table.loc[ok, "q"] = _benjamini_hochberg(table.loc[ok, "p"].to_numpy())
    return table


def _minutes(header: dict, records: list[dict]) -> float:
    from datetime import datetime

    start, end = (datetime.fromisoformat(x) for x in (header["started"], records[-1]["finished"]))
    return (end - start).total_seconds() / 60


def ab_summary_table() -> str:
    lines = ["| comparison | file (`results/ab/`) | cases compared | flagged (B slower / faster) | median B / A | "
             "median half-width | wall time |", "|---|---|---|---|---|---|---|"]
    for name, pattern in AB_FILES.items():
        header, records = ab_file(pattern)
        table = ab_cases(records)
        ok = table[table["status"] == "ok"]
        flagged = ok[ok["q"] < 0.05]
        path = committed(f"ab/{pattern}")[0].name
        lines.append(f"| {name} | `{path}` | {len(ok)} of {len(table)} | {len(flagged)} "
                     f"({int((flagged['ratio'] > 1).sum())} / {int((flagged['ratio'] < 1).sum())}) | "
                     f"{ok['ratio'].median():.4f} | {100 * ok['mdc'].median():.2f} % | "
                     f"{_minutes(header, records):.1f} min |")
    return "\n".join(lines)


def ab_flagged_table(pattern: str = AB_FILES[AB_AB]) -> str:
    _, records = ab_file(pattern)
    table = ab_cases(records)
    flagged = table[(table["status"] == "ok") & (table["q"] < 0.05)].sort_values("ratio")
    return flag_rows(flagged, "| case | variant | 2.12.0 | 2.13.0 | 2.13 / 2.12 [95 %] | q |")


def flag_rows(flagged: pd.DataFrame, head: str) -> str:
    """Flagged cases as table rows: case, variant, A and B medians, ratio with interval, q."""
    lines = [head, "|---|---|---|---|---|---|"]
    for _, r in flagged.iterrows():
        lines.append(f"| {r['c_in']}→{r['c_in']} {r['size']}² {r['mode']} | {r['variant']} | "
                     f"{1e6 * r['a_s']:.1f} µs | {1e6 * r['b_s']:.1f} µs | {r['ratio']:.3f} "
                     f"[{r['low']:.3f}–{r['high']:.3f}] | {r['q']:.3f} |")
    return "\n".join(lines)




def ab_findings() -> str:
    """The side-by-side and calibration bullets under the A/B table, from the files."""
    from scipy import stats

    table, _, resolvable = cross_version()
    run_mdc = float(np.expm1(np.log(table["high"] / table["low"]) / 2).median())
    header, records = ab_file(AB_FILES[AB_AB])
    ab = ab_cases(records)
    ok = ab[ab["status"] == "ok"]
    pairs = header["workers"]
    se = np.log(ok["high"] / ok["low"]) / 2 / stats.t.ppf(0.975, pairs - 1)
    bar = float(np.median(np.exp(stats.t.ppf(1 - FDR / (2 * len(ok)), pairs - 1) * se)))
    inject = ab_cases(ab_file(AB_FILES[AB_INJECT])[1])
    aa = [ab_cases(ab_file(AB_FILES[name])[1]) for name in ("A/A", "A/A, again")]
    six = ab_cases(ab_file(AB_FILES["A/A, B slowed 5 %, 6 pairs, 50 ms warm-up"])[1])
    every = "A/A, B slowed 5 %, 10 pairs, 50 ms warm-up, every pair"
    ten = ab_cases(ab_file(AB_FILES[every])[1])
    walls = {name: _minutes(*ab_file(AB_FILES[name])) for name in ("A/A", "A/A, again", AB_INJECT, AB_AB, every)}
    fewer = [r for r in records if r["status"] == "ok" and len(set(r["instance"])) < pairs]

    def found(t: pd.DataFrame) -> int:
        return int((t["q"] < FDR).sum())

    return f"""- **Side by side, the same 20 minutes of this machine.** Six whole runs alternated between the two
  versions (3 + 3, 19.7 min; the cross-version paragraph under [The report](report.md#the-report)) leave each
  case a 95 % interval of ±{100 * run_mdc:.0f} % (median over the 216 cases), and a lone change must
  reach {resolvable:.2f}× to be flagged among them. `sepbench ab` in {walls[AB_AB]:.1f} minutes leaves
  ±{100 * ok["mdc"].median():.2f} % (the median half-width), and a lone change is flagged from
  about {bar:.3f}×.
- **Calibration.** The two A/A comparisons count what this machine flags by chance: {found(aa[0])} and
  {found(aa[1])} of 216 ({walls["A/A"]:.1f} and {walls["A/A, again"]:.1f} minutes). With B's blocks stretched by 5 %,
  {found(inject)} of {len(inject)} cases are flagged ({found(inject) / len(inject):.0%}) and the median ratio reads
  {inject["ratio"].median():.4f} ({walls[AB_INJECT]:.1f} minutes).
- **What bought the power.** The worker pair is the unit, so the number of pairs sets the interval's
  degrees of freedom: with 6 pairs the same injected 5 % was flagged in {found(six)} of {len(six)} cases.
  10 pairs found {found(ten)}, but with a 50 ms warm-up per visit, a sixth of it, and every pair visited
  in every case, they took {walls[every]:.1f} minutes. A 20 ms warm-up (a fresh worker's first kept round was no
  slower than its later ones) and a first pass that may stop after 6 pairs once the case's share of
  the budget is spent bring 10 pairs within the budget: {len(fewer)} of the 216 cases of the A/B
  comparison stopped short of 10 pairs."""


def ab_tables() -> Iterator[str]:
    yield ab_summary_table()
    yield ab_flagged_table()
    yield ab_findings()


def stability_shares() -> Iterator[str]:
    """Both judgements recomputed from the runs' stored block times, not read from the CSV."""
    import sys

    sys.path.insert(0, str(RESULTS.parent / "benchmarks"))
    from stability_share import shares

    one = shares([p for p in sorted(RESULTS.glob("default-cpu-vm-*.jsonl"))]).query("threads == 1")
    assert len(one) >= 6
    re.sub(r"\s+", " ", README)
    yield (f"the raw rule flagged {one['raw_flagged_variants'].min()}–{one['raw_flagged_variants'].max()} of 192 "
            f"variants and the paired rule {one['paired_flagged_variants'].min()}–"
            f"{one['paired_flagged_variants'].max()}")
    pinned = {"173807Z": "slow", "204719Z": "quiet"}
    rows = {key: one[one["file"].str.contains(key)].iloc[0] for key in pinned}
    slow, quiet = rows["173807Z"], rows["204719Z"]
    yield (f"flagged {slow['paired_flagged_variants']} of 192 by the paired rule against "
            f"{slow['raw_flagged_variants']} by the raw one (median per-round speedup spread "
            f"{100 * slow['median_speedup_spread']:.1f} %)")
    assert quiet["paired_flagged_variants"] == quiet["raw_flagged_variants"] == 0
    yield f"flagged none by either (spread {100 * quiet['median_speedup_spread']:.1f} %)"
    rest = one[~one["file"].str.contains("|".join(pinned))]
    yield (f"flagged {rest['paired_flagged_variants'].min()}–{rest['paired_flagged_variants'].max()} by the "
            f"paired rule and {rest['raw_flagged_variants'].min()}–{rest['raw_flagged_variants'].max()} by the raw "
            f"one (spread {100 * rest['median_speedup_spread'].min():.0f}–"
            f"{100 * rest['median_speedup_spread'].max():.0f} %)")


SHARDS = {"H100 (torch 2.11.0+cu130)": ("full-shard1of200-cuda-h100-torch2.11.0+cu130-20261123T033422Z.jsonl",
                                        "cuda"),
          "this VM, 1 thread (torch 2.13.0+cpu)": ("full-shard1of200-cpu-vm-torch2.13.0+cpu-20261123T232118Z.jsonl",
                                                   "cpu")}


def _span(lo_hours: float, hi_hours: float) -> str:
    def one(h: float, unit: bool) -> str:
        text = f"{h:.1f}" if h >= 1 else f"{h * 60:.0f}"
        return text + ((" h" if h >= 1 else " min") if unit else "")

    same = (lo_hours >= 1) == (hi_hours >= 1)
    return f"{one(lo_hours, not same)}–{one(hi_hours, True)}"


@functools.cache
def full_grid_flops(device: str) -> tuple[int, dict[str, int]]:
    """The `full` grid on a device: its case count and each group's theoretical FLOPs per step (costing
    its 17 280 or 34 560 cases takes seconds, so once for every test that needs it)."""
    from sepbench.grid import load_preset
    from sepbench.theory import case_cost

    cases = load_preset("full").with_device(device).expand()[0]
    flops: dict[str, int] = defaultdict(int)
    for c in cases:
        flops[c.group_id] += case_cost(c).flops(c.mode)
    return len(cases), dict(flops)


def shard_cost_table_text() -> str:
    """Per device: the committed 1/200 shard's cases per minute (its wall time, from the header's start to
    the last record), its share of the full grid in cases and in theoretical FLOPs per step, and the wall
    time on 1, 20 and 100 runners projected by each share (measuring only; low–high)."""
    lines = ["| device | shard file (`results/`) | cases | wall time | cases / min | share of `full`: cases, FLOPs | "
             "1 runner | 20 runners | 100 runners |", "|---|---|---|---|---|---|---|---|---|"]
    for name, (pattern, device) in SHARDS.items():
        (path,) = committed(pattern)
        rows = json_lines(path)
        header, cases = rows[0], [r for r in rows[1:] if r["kind"] == "case"]
        minutes = _minutes(header, cases)
        total, flops = full_grid_flops(device)
        case_share = len(cases) / total
        flop_share = sum(r["theory"]["flops_step"] for r in cases) / sum(flops.values())
        hours = sorted(minutes / 60 / share for share in (case_share, flop_share))
        cells = [_span(hours[0] / n, hours[1] / n) for n in (1, 20, 100)]
        lines.append(f"| {name} | `{path.name}` | {len(cases)} | {minutes:.1f} min | {len(cases) / minutes:.1f} | "
                     f"{case_share:.2%}, {flop_share:.2%} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def shard_cost_table() -> Iterator[str]:
    yield shard_cost_table_text()


def heaviest_cpu_geometry() -> Iterator[str]:
    """A group is never split, so the grid's heaviest geometry bounds a job, however many shards."""
    from datetime import datetime

    (path,) = committed(SHARDS["this VM, 1 thread (torch 2.13.0+cpu)"][0])
    rows = json_lines(path)
    seconds: dict[str, float] = defaultdict(float)
    flops: dict[str, int] = defaultdict(int)
    before = datetime.fromisoformat(rows[0]["started"])
    for r in rows[1:]:  # a group's records are written together, after the group
        done = datetime.fromisoformat(r["finished"])
        seconds[r["group_id"]] += (done - before).total_seconds()
        flops[r["group_id"]] += r["theory"]["flops_step"]
        before = done
    measured = max(flops, key=flops.__getitem__)
    heaviest = max(full_grid_flops("cpu")[1].values())
    ratio = heaviest / flops[measured]
    assert "batch=32" in measured and "size=112" in measured and "dtype=bfloat16" in measured
    yield (f"holds {ratio:.1f}× the FLOPs per step of the heaviest this shard measured (256→256 7×7 at 112², "
            f"batch 32, bfloat16 inference: {seconds[measured] / 60:.1f} min for its 9 cases), so at that rate "
            f"it alone takes about {ratio * seconds[measured] / 3600:.1f} h")


# Protocol 2 of `sepbench ab` (docs/ab.md): the calibration files of 30 November, re-derived by hand.
AHEAD = "2.14.1 CUDA 13.0 build (A) → 2.15.0 CUDA 13.2 build (B)"
P2_FILES: dict[str, str] = {
    "A/A": f"{AA}-20261130T144555Z.jsonl",
    "A/A, again": f"{AA}-20261130T152817Z.jsonl",
    "A/A, slice 1: C 48 and 96 at 20²": f"slices/{AA}-20261130T150621Z.jsonl",
    "A/A, slice 2: C 24 and 160 at 10²": f"slices/{AA}-20261130T151159Z.jsonl",
    "A/A, slice 3: C 80 at 7² and 40²": f"slices/{AA}-20261130T151755Z.jsonl",
    "A/A, slice 1, B slowed 5 % (`--inject 5`)": f"slices/{AA}-inject5pct-20261130T152320Z.jsonl",
    "`DNNL_MAX_CPU_ISA=AVX2` (B) against the default ISA (A)":
        "ab-default-cpu-vm-torch2.13.0+cpu-vs-torch2.13.0+cpu-DNNL_MAX_CPU_ISA_AVX2-20261130T154813Z.jsonl",
    "2.13.0 CPU build (A) → 2.14.1 CUDA build (B)":
        "ab-default-cpu-vm-torch2.13.0+cpu-vs-torch2.14.1+cu130-20261130T161839Z.jsonl",
    "2.12.0 CUDA build (A) → 2.13.0 CPU build (B)":
        "ab-default-cpu-vm-torch2.12.0+cu130-vs-torch2.13.0+cpu-20261130T163507Z.jsonl",
    "2.13.0 (A) → 2.14.1 (B), both registry builds":
        "ab-default-cpu-vm-torch2.13.0+cu130-vs-torch2.14.1+cu130-20261206T*.jsonl",
    "A/A, B slowed 3 % (`--inject 3`)": f"{AA}-inject3pct-20261206T*.jsonl",
    "A/A beside one busy process": f"{AA}-20261206T*.jsonl",
    AHEAD: "ab-default-cpu-vm-torch2.14.1+cu130-vs-torch2.15.0+cu132-20261206T*.jsonl",
    **{f"`DNNL_MAX_CPU_ISA=AVX2` again, run {i} of 3 in one folder":
       f"ab-default-cpu-vm-torch2.13.0+cpu-vs-torch2.13.0+cpu-DNNL_MAX_CPU_ISA_AVX2-20261206T{t}Z.jsonl"
       for i, t in enumerate(("192828", "194936", "201053"), start=1)},
}


def _control_records(records: list[dict]) -> list[dict]:
    """The control's rounds as records of their own, for `ab_cases`."""
    return [{**r, "a_s": r["control"]["a_s"], "b_s": r["control"]["b_s"], "order": r["control"]["order"],
             "instance": r["control"]["instance"]} for r in records if r["status"] == "ok" and r.get("control")]


def p2_comparison(pattern: str, tau: float | None = None) -> dict:
    """One protocol-2 file by hand: flags, flags the control withholds, median B / A, the p-values' KS
    test, the second-block effect, median half-width, and the control's flags and bias. Its intervals
    hold the between-run component `tau` (None: the one its header records)."""
    from scipy import stats

    header, records = ab_file(pattern)
    if tau is None:
        tau = (header.get("between_run") or {}).get("tau", 0.0)
    table = ab_cases(records, tau=tau)
    ok = table[table["status"] == "ok"].copy()
    ctrl = ab_cases(_control_records(records), tau=tau)
    logs = np.log(ctrl["ratio"].to_numpy())
    lo, hi = stats.quantile_test(logs, q=float(np.median(logs))).confidence_interval(0.95)
    flagged = ok["q"] < FDR
    if not lo <= 0 <= hi:  # the control reads a bias: a flag must stand out of its interval too
        pairs = ok["instances"].to_numpy() - 1
        se = np.log(ok["high"] / ok["low"]).to_numpy() / (2 * stats.t.ppf(0.975, pairs))
        est = np.log(ok["ratio"].to_numpy())
        edge = np.clip(est, lo, hi)
        p = np.where(est == edge, 1.0, 2 * stats.t.sf(np.abs(est - edge) / se, pairs))
        stands = _benjamini_hochberg(p) < FDR
    else:
        stands = np.ones(len(ok), dtype=bool)
    kept = ok[flagged & stands]
    position = []
    for r in records:
        if r["status"] == "ok":
            d = np.log(np.array(r["b_s"]) / np.array(r["a_s"]))
            first = np.array(list(r["order"]))
            position.append((np.median(d[first == "A"]) - np.median(d[first == "B"])) / 2)
    return {"header": header, "records": records, "table": ok, "kept": kept, "withheld": int((flagged & ~stands).sum()),
            "ks_p": float(stats.kstest(ok["p"], "uniform").pvalue), "position": float(np.exp(np.median(position))),
            "control": ctrl, "control_flags": int((ctrl["q"] < FDR).sum()), "bias": np.exp([np.median(logs), lo, hi])}


def p2_table() -> str:
    lines = ["| comparison | VM, day | file (`results/ab/`) | flagged of cases (B slower / faster) | within control "
             "| median B / A | KS p | second block | median ± half-width "
             "| control: false flags of cases, bias [95 %] | wall time |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, pattern in P2_FILES.items():
        c = p2_comparison(pattern)
        ok, kept = c["table"], c["kept"]
        path = committed(f"ab/{pattern}")[0].relative_to(RESULTS / "ab")
        b = c["bias"]
        cpu = c["header"]["a"]["environment"]["cpu"].replace("(R)", "").replace(" Processor", "").split(" @")[0]
        lines.append(f"| {name} | {cpu}, {c['header']['started'][:10]} | `{path}` | {len(kept)} of {len(ok)} "
                     f"({int((kept['ratio'] > 1).sum())} / "
                     f"{int((kept['ratio'] < 1).sum())}) | {c['withheld']} | {ok['ratio'].median():.4f} | "
                     f"{c['ks_p']:.2f} | ×{c['position']:.4f} | {100 * ok['mdc'].median():.2f} % | "
                     f"{c['control_flags']} of {len(c['control'])}, {b[0]:.4f} [{b[1]:.4f}–{b[2]:.4f}] | "
                     f"{_minutes(c['header'], c['records']):.1f} min |")
    return "\n".join(lines)


ISA_AB = "ab-default-cpu-vm-torch2.13.0+cpu-vs-torch2.13.0+cpu-DNNL_MAX_CPU_ISA_AVX2-20261130T154813Z.jsonl"


def isa_runs() -> dict[str, pd.DataFrame]:
    """The two `sepbench run`s of the default preset beside it, keyed by the ISA setting they ran under."""
    runs = {}
    for path in committed("isa/default-cpu-vm-*.jsonl"):
        header = json_lines(path)[0]
        runs[header["environment"]["settings"].get("DNNL_MAX_CPU_ISA", "default")] = records(f"isa/{path.name}")
    return runs


def isa_cases() -> pd.DataFrame:
    """The AVX2 comparison's flagged cases beside the two runs' ratio of medians (AVX2 / default)."""
    c = p2_comparison(ISA_AB)
    runs = isa_runs()
    key = ["variant", "c_in", "size", "mode"]
    both = runs["default"].merge(runs["AVX2"], on=key, suffixes=("_default", "_avx2"))
    both["run_ratio"] = both["median_s_avx2"] / both["median_s_default"]
    kept = c["kept"].merge(both[[*key, "run_ratio"]], on=key, how="left").sort_values("ratio")
    kept["agree"] = np.sign(np.log(kept["ratio"])) == np.sign(np.log(kept["run_ratio"]))
    return kept


def isa_table() -> tuple[str, int, int]:
    """Every flagged case, and how many agree in sign with the two runs."""
    kept = isa_cases()
    lines = ["| case | variant | AVX2 / default, paired [95 %] | AVX2 / default, two runs | same sign |",
             "|---|---|---|---|---|"]
    for _, r in kept.iterrows():
        lines.append(f"| {r['c_in']}→{r['c_in']} {r['size']}² {r['mode']} | {r['variant']} | {r['ratio']:.3f} "
                     f"[{r['low']:.3f}–{r['high']:.3f}] | {r['run_ratio']:.3f} | {'yes' if r['agree'] else '**no**'} |")
    return "\n".join(lines), int(kept["agree"].sum()), len(kept)


def isa_variants() -> str:
    """Per variant: flagged cases of 24, their median and range, and their sign agreement with the runs."""
    kept = isa_cases()
    lines = ["| variant | flagged of 24 (slower / faster under AVX2) | median of the flagged | range | "
             "same sign in the two runs |", "|---|---|---|---|---|"]
    for v, g in kept.groupby("variant"):
        lines.append(f"| {v} | {len(g)} ({int((g['ratio'] > 1).sum())} / {int((g['ratio'] < 1).sum())}) | "
                     f"{g['ratio'].median():.3f} | {g['ratio'].min():.3f}–{g['ratio'].max():.3f} | "
                     f"{int(g['agree'].sum())} of {len(g)} |")
    return "\n".join(lines)


def isa_agreement() -> str:
    """The sentence on sign agreement: all flagged cases, and those beyond 5 %."""
    kept = isa_cases()
    big = kept[np.abs(np.log(kept["ratio"])) > np.log(1.05)]
    noise = float(np.median(np.abs(np.log(kept["run_ratio"] / kept["ratio"]))))
    corr = float(np.corrcoef(np.log(kept["ratio"]), np.log(kept["run_ratio"]))[0, 1])
    return (f"{int(kept['agree'].sum())} of the {len(kept)} flagged cases agree in sign with the two runs, and "
            f"{int(big['agree'].sum())} of the {len(big)} that changed by more than 5 %; the runs' ratio sits a "
            f"median {100 * noise:.1f} % from the paired one (correlation {corr:.2f} in log)")


UPGRADE = "2.13.0 (A) → 2.14.1 (B), both registry builds"  # the upgrade ahead, like for like
AGAIN = "2.12.0 CUDA build (A) → 2.13.0 CPU build (B)"  # the upgrade behind, again under protocol 2


def verdict_table(pattern: str, a: str, b: str) -> str:
    """Every case a comparison flags, slowest under B first."""
    kept = p2_comparison(pattern)["kept"].sort_values("ratio", ascending=False)
    return flag_rows(kept, f"| case | variant | {a} | {b} | {b} / {a} [95 %] | q |")


def again_against_protocol_1() -> str:
    """2.12 → 2.13 under protocol 2 against the committed protocol-1 comparison: flags in common, in
    one only, and any that changed direction."""
    new = p2_comparison(P2_FILES[AGAIN])["kept"]
    old_all = ab_cases(ab_file(AB_FILES[AB_AB])[1])
    old = old_all[(old_all["status"] == "ok") & (old_all["q"] < FDR)]
    key = ["variant", "c_in", "size", "mode"]
    both = new.merge(old, on=key, suffixes=("_new", "_old"))
    flipped = int((np.sign(np.log(both["ratio_new"])) != np.sign(np.log(both["ratio_old"]))).sum())
    return (f"{len(new)} flagged now against {len(old)} then; {len(both)} in both ({flipped} in the other "
            f"direction), {len(new) - len(both)} now only and {len(old) - len(both)} then only")


def upgrade_line() -> str:
    """The front door's answer to "did the upgrade make it slower?", from the upgrade-ahead comparison."""
    c = p2_comparison(P2_FILES[UPGRADE])
    kept, ok = c["kept"], c["table"]
    slower, faster = kept[kept["ratio"] > 1], kept[kept["ratio"] < 1]
    b = c["bias"]
    path = committed(f"ab/{P2_FILES[UPGRADE]}")[0].name
    return (f"**Did the upgrade make it slower?** Paired case by case between the registry's builds of both "
            f"releases (like for like), torch 2.14.1 reads {len(slower)} of the "
            f"{len(ok)} `default` cases slower than 2.13.0"
            + (f", by {100 * (slower['ratio'].min() - 1):.1f}–{100 * (slower['ratio'].max() - 1):.1f} % (median "
               f"{100 * (slower['ratio'].median() - 1):.1f} %)," if len(slower) else "")
            + f" and {len(faster)} faster; the comparison's in-run control, one side's workers against each other "
            f"on {len(c['control'])} of the cases, flagged {c['control_flags']} and read a bias of {b[0]:.4f} "
            f"[{b[1]:.4f}–{b[2]:.4f}]; {lone_power(P2_FILES[UPGRADE])} (`results/ab/{path}`; "
            f"[more](docs/ab.md#the-upgrade-ahead-and-the-one-behind)).")


def lone_power(pattern: str) -> str:
    """What the comparison's test finds with 80 % power, as sepbench states it (`ab.stats`): the figure the
    suite's simulated comparisons check (tests/test_ab_power.py), not re-derived here."""
    from sepbench.ab import stats as ab_stats
    from sepbench.store import read

    (path,) = committed(f"ab/{pattern}")
    found = read(path)
    s = ab_stats.summarize(ab_stats.comparison(found.records, found.header.protocol)[0])
    return (f"with 80 % power a case is flagged when it alone slowed by {100 * s.median_d80_alone:.1f} % "
            f"(the median case; {100 * s.median_d80:.1f} % where most cases changed)")


def upgrade_answer_on_the_front_door() -> Iterator[str]:
    yield upgrade_line()


ACROSS_BUILDS = "2.13.0 CPU build (A) → 2.14.1 CUDA build (B)"


def power_check() -> Iterator[str]:
    """The injected 3 %: the share found (counted here) against the share the power figure predicts
    (sepbench's `flag_share`, from the file's own per-case intervals); and the A/A beside a busy process."""
    from sepbench.ab import stats as ab_stats
    from sepbench.store import read

    name = "A/A, B slowed 3 % (`--inject 3`)"
    c = p2_comparison(P2_FILES[name])
    found = int((c["kept"]["ratio"] > 1).sum())
    (path,) = committed(f"ab/{P2_FILES[name]}")
    got = read(path)
    predicted = ab_stats.flag_share(ab_stats.comparison(got.records, got.header.protocol)[0], 0.03)
    yield (f"B slowed by 3 % in every case (`{path.name}`) was flagged in {found} of {len(c['table'])} cases "
           f"({found / len(c['table']):.1%}), where the power figure, simulated from the file's own per-case "
           f"intervals, predicted {predicted:.1%}")
    busy = p2_comparison(P2_FILES["A/A beside one busy process"])
    (busy_path,) = committed(f"ab/{P2_FILES['A/A beside one busy process']}")
    yield (f"{len(busy['kept'])} of {len(busy['table'])} cases flagged beside one busy process "
           f"(`{busy_path.name}`, median half-width ±{100 * busy['table']['mdc'].median():.2f} %)")


def upgrade_across_builds() -> Iterator[str]:
    yield verdict_table(P2_FILES[ACROSS_BUILDS], "2.13.0", "2.14.1")


def _comparison_words(name: str) -> str:
    """A comparison in a sentence: flags, the median change with its half-width, what the test could find,
    the control."""
    c = p2_comparison(P2_FILES[name])
    ok, kept, b = c["table"], c["kept"], c["bias"]
    slower, faster = int((kept["ratio"] > 1).sum()), int((kept["ratio"] < 1).sum())
    return (f"{len(kept)} of {len(ok)} cases flagged ({slower} slower, {faster} faster), median B / A "
            f"{ok['ratio'].median():.4f}, median half-width ±{100 * ok['mdc'].median():.2f} %: "
            f"{lone_power(P2_FILES[name])}. Its control flagged {c['control_flags']} of {len(c['control'])} and "
            f"read a bias of {b[0]:.4f} [{b[1]:.4f}–{b[2]:.4f}].")


def upgrade_like_for_like() -> Iterator[str]:
    """The like-for-like upgrade, and whether it could see what the comparison across builds flagged."""
    kept = p2_comparison(P2_FILES[UPGRADE])["kept"]
    across = p2_comparison(P2_FILES[ACROSS_BUILDS])["kept"]
    yield _comparison_words(UPGRADE) + (
        f" On this VM and day the comparison resolves changes of that size, not the "
        f"{_pct_span(list(across['ratio'] - 1), 0)} % the comparison across builds below flagged."
        if len(kept) == 0 and len(across) else "")


def upgrade_ahead() -> Iterator[str]:
    yield _comparison_words(AHEAD)


def upgrade_behind_again() -> Iterator[str]:
    re.sub(r"\s+", " ", README)
    yield again_against_protocol_1()
    yield verdict_table(P2_FILES[AGAIN], "2.12.0", "2.13.0")


def isa_comparison_and_its_two_runs() -> Iterator[str]:
    table, _, _ = isa_table()
    yield table
    yield isa_variants()
    yield isa_agreement()


ISA_AGAIN = "ab-default-cpu-vm-torch2.13.0+cpu-vs-torch2.13.0+cpu-DNNL_MAX_CPU_ISA_AVX2-20261206T*.jsonl"


def _ab_z(a: dict, b: dict, sims: int = 400) -> dict:
    """Two comparisons of one grid, case by case: z = Δ log ratio / √(se₁² + se₂²), what z would read were
    every interval exact (the same standard errors, each estimated over its pairs: simulated), the flags
    each run kept, the flags in both and those of opposite signs, and τ by the method of moments."""
    from scipy import stats

    ta, tb = (c["table"].set_index("case_id") for c in (a, b))
    both = ta.index.intersection(tb.index)
    ta, tb = ta.loc[both], tb.loc[both]

    def se_df(t: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        df = (t["instances"] - 1).to_numpy(float)
        return np.log(t["high"] / t["low"]).to_numpy() / (2 * stats.t.ppf(0.975, df)), df

    (sa, da), (sb, db) = se_df(ta), se_df(tb)
    d = np.log(ta["ratio"].to_numpy()) - np.log(tb["ratio"].to_numpy())
    z = d / np.hypot(sa, sb)
    rng = np.random.default_rng(0)
    exact = np.concatenate([(rng.normal(0, sa) - rng.normal(0, sb)) / np.hypot(
        sa * np.sqrt(rng.chisquare(da) / da), sb * np.sqrt(rng.chisquare(db) / db)) for _ in range(sims)])
    fa, fb = (ta.index.isin(c["kept"]["case_id"]) for c in (a, b))
    sign = np.sign(np.log(ta["ratio"].to_numpy())) != np.sign(np.log(tb["ratio"].to_numpy()))
    return {"cases": len(both), "sd": float(z.std()), "within": float((np.abs(z) <= 1.959964).mean()),
            "exact_sd": float(exact.std()), "exact_within": float((np.abs(exact) <= 1.959964).mean()),
            "r": float(np.corrcoef(np.log(ta["ratio"]), np.log(tb["ratio"]))[0, 1]),
            "flags": (int(fa.sum()), int(fb.sum())), "both": int((fa & fb).sum()),
            "opposite": int((fa & fb & sign).sum()),
            "jaccard": float((fa & fb).sum() / max((fa | fb).sum(), 1)),
            "tau": float(np.sqrt(max(np.mean((d ** 2 - sa ** 2 - sb ** 2) / 2), 0.0)))}


def _cpu(header: dict) -> str:
    return header["a"]["environment"]["cpu"].replace("(R)", "").replace(" Processor", "").split(" @")[0]


def ab_rerun_agreement() -> Iterator[str]:
    """The AVX2 comparison measured again on one VM, and against the first one, measured on another CPU:
    case by case, z against what exact intervals give, the flags of both, and τ. The newest run held the
    τ its predecessors measured: every run is read again with it, and the pairs with the newest are its
    test. Then the A/A excess that sets the reference τ of `ab` (the squared log ratio less the squared
    standard error, pooled)."""
    from scipy import stats

    names = [str(p.relative_to(RESULTS / "ab")) for p in committed(f"ab/{ISA_AGAIN}")]
    held = (ab_file(names[-1])[0].get("between_run") or {}).get("tau", 0.0)
    plain = [{**p2_comparison(n, 0.0), "name": n} for n in names]
    first = {**p2_comparison(ISA_AB, 0.0), "name": ISA_AB}
    lines = ["| comparisons (`results/ab/`) | where | intervals | cases | SD of z (exact intervals) "
             "| \\|z\\| ≤ 1.96 (exact) | correlation | flagged (each) | in both | opposite signs in both "
             "| Jaccard | τ |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def stamp(c: dict) -> str:
        return f"`…{c['name'][-22:-6]}`"

    rows: list[tuple[str, dict]] = []
    pairs = [(a, b, "over pairs") for a, b in itertools.combinations(plain, 2)]
    if held:
        wide = [{**p2_comparison(n, held), "name": n} for n in names]
        pairs += [(a, wide[-1], f"with τ = {100 * held:.2f} %") for a in wide[:-1]]
    pairs += [(first, b, "over pairs") for b in plain]
    for a, b, intervals in pairs:
        g = _ab_z(a, b)
        ca, cb = _cpu(a["header"]), _cpu(b["header"])
        where = f"one VM ({ca}), one day" if ca == cb else f"two CPUs ({ca}; {cb})"
        rows.append((intervals, g))
        lines.append(f"| {stamp(a)} · {stamp(b)} | {where} | {intervals} | {g['cases']} | "
                     f"{g['sd']:.2f} ({g['exact_sd']:.2f}) | {g['within']:.1%} ({g['exact_within']:.1%}) | "
                     f"{g['r']:.2f} | {g['flags'][0]} · {g['flags'][1]} | {g['both']} | {g['opposite']} | "
                     f"{g['jaccard']:.2f} | {100 * g['tau']:.2f} % |")
    yield "\n".join(lines)
    same = rows[0][1]
    yield (f"SD of z {same['sd']:.2f} where exact intervals give {same['exact_sd']:.2f}, |z| ≤ 1.96 in "
           f"{same['within']:.1%} of {same['cases']} cases ({same['exact_within']:.1%} exact), τ = "
           f"{100 * same['tau']:.2f} % between the two; {same['both']} cases flagged in both, {same['opposite']} of "
           f"them with opposite signs, Jaccard {same['jaccard']:.2f}")
    excess = []
    for pattern in AB_REFERENCE:
        t = p2_comparison(pattern)["table"]
        se = np.log(t["high"] / t["low"]).to_numpy() / (2 * stats.t.ppf(0.975, t["instances"].to_numpy() - 1))
        excess += list(np.log(t["ratio"].to_numpy()) ** 2 - se ** 2)
    yield (f"over the {len(AB_REFERENCE)} committed protocol-2 A/A comparisons ({len(excess)} cases) the squared log "
           f"ratio exceeds its squared standard error by {np.mean(excess) * 1e4:+.2f} × 10⁻⁴ on average: τ = "
           f"{100 * np.sqrt(max(np.mean(excess), 0.0)):.2f} %")
    tested = [g for intervals, g in rows if intervals.startswith("with")]
    if tested:
        def both(key: str, form: str) -> str:
            return " and ".join(format(g[key], form) for g in tested)

        yield (f"the third run held τ = {100 * held:.2f} %, measured by the first two; read with it, it agrees with "
               f"each of them with an SD of z of {both('sd', '.2f')} (exact intervals: {both('exact_sd', '.2f')}) "
               f"and |z| ≤ 1.96 in {both('within', '.1%')} of the cases")


AB_REFERENCE = [f"{AA}-{t}.jsonl" for t in ("20261130T144555Z", "20261130T152817Z", "20261206T172630Z")]


def _modelled_half_width(records: list[dict]) -> float:
    """Median half-width when a pair's figure is the mean of its two orders' medians (A first, B first)."""
    from scipy import stats

    widths = []
    for r in records:
        if r["status"] != "ok":
            continue
        d = pd.DataFrame({"d": np.log(np.array(r["b_s"]) / np.array(r["a_s"])), "k": r["instance"],
                          "first": list(r["order"])})
        by = d.groupby(["k", "first"])["d"].median().unstack()
        figure = by.mean(axis=1).where(by.notna().all(axis=1), d.groupby("k")["d"].median())
        ci = stats.ttest_1samp(figure, 0.0).confidence_interval(0.95)
        widths.append(np.expm1((ci.high - ci.low) / 2))
    return float(np.median(widths))


def order_model_cost() -> tuple[str, str]:
    """How much wider the median half-width reads when the order is modelled instead of designed away:
    on the protocol-1 A/A files (random order), and on the protocol-2 A/A files (balanced)."""
    def widen(patterns: list[str]) -> str:
        gains = [_modelled_half_width(ab_file(p)[1]) / ab_cases(ab_file(p)[1])["mdc"].median() - 1 for p in patterns]
        return f"{100 * min(gains):.0f}–{100 * max(gains):.0f} %"

    return widen([AB_FILES[k] for k in P1_AA]), widen([v for k, v in P2_FILES.items() if k.startswith("A/A")])


P1_AA = [k for k in AB_FILES if k.startswith("A/A") and "slowed" not in k]  # protocol 1, no injection


def pool_offset_p(records: list[dict]) -> float:
    """One-way ANOVA: does a worker-pair index keep a speed of its own across cases? Each pair's median
    log ratio about its case's mean, grouped by the pair's index."""
    from scipy import stats

    groups: dict[int, list[float]] = defaultdict(list)
    for r in records:
        if r["status"] != "ok":
            continue
        d = pd.Series(np.log(np.array(r["b_s"]) / np.array(r["a_s"]))).groupby(r["instance"]).median()
        for k, v in (d - d.mean()).items():
            groups[k].append(v)
    return float(stats.f_oneway(*[g for g in groups.values() if len(g) >= 3]).pvalue)


def calls_rho(records: list[dict]) -> tuple[float, float]:
    """Spearman's correlation of log(calls per block B / A) with a case's log ratio B / A."""
    from scipy import stats

    table = ab_cases(records).set_index("case_id")
    pairs = [(np.log(r["number_b"] / r["number_a"]), np.log(table.loc[r["case_id"], "ratio"])) for r in records
             if r["status"] == "ok"]
    rho = stats.spearmanr(*zip(*pairs, strict=True))
    return float(rho.statistic), float(rho.pvalue)


def protocol_findings_text() -> dict[str, str]:
    p2 = [pool_offset_p(ab_file(P2_FILES[k])[1]) for k in ("A/A", "A/A, again")]
    p1 = [pool_offset_p(ab_file(AB_FILES[k])[1]) for k in P1_AA]
    rhos = [calls_rho(ab_file(AB_FILES[k])[1]) for k in P1_AA]
    assert all(p < 0.01 for _, p in rhos)
    low, high = sorted(r for r, _ in rhos)[::len(rhos) - 1]
    p1_cost, p2_cost = order_model_cost()
    return {"pool-p2": f"{p2[0]:.2f} and {p2[1]:.2f}", "pool-p1": f"{sum(p < 0.05 for p in p1)} of the {len(p1)}",
            "calls-rho": f"{low:.2f} to {high:.2f}",
            "order-cost": f"{p1_cost} on the {len(P1_AA)} protocol-1 A/A files and by {p2_cost} on the protocol-2 "
                          "A/A files"}


def protocol_findings() -> Iterator[str]:
    re.sub(r"\s+", " ", README)
    f = protocol_findings_text()
    yield f"p = {f['pool-p2']} on the two A/A files; p below 0.05 on {f['pool-p1']} protocol-1 A/A files"
    yield f"log ratio was {f['calls-rho']} in the six protocol-1 A/A files, each with p < 0.01"
    yield f"widened the median half-width by {f['order-cost']}"


def protocol_2_table() -> Iterator[str]:
    assert P2_FILES
    yield p2_table()


def slow_spell_figure() -> Iterator[str]:
    """How much slower the same A workers read every case in the later injected comparison."""
    def a_medians(pattern: str) -> pd.Series:
        _, records = ab_file(pattern)
        return pd.Series({r["case_id"]: np.median(r["a_s"]) for r in records if r["status"] == "ok"})

    later = a_medians(f"{AA}-inject5pct-20261123T165856Z.jsonl")
    ratio = (later / a_medians(f"{AA}-inject5pct-20261123T151401Z.jsonl")).dropna()
    re.sub(r"\s+", " ", README)
    yield f"read the {len(ratio)} cases {ratio.median():.2f}× slower"


EARLIER = ["20261123T141815Z", "inject5pct-20261123T143935Z", "inject5pct-20261123T151401Z", "20261123T153414Z"]
EARLIER_AB = "ab-default-cpu-vm-torch2.12.0+cu130-vs-torch2.13.0+cpu-20261123T145351Z.jsonl"


def earlier_estimator_gain() -> tuple[str, str, list[int]]:
    """On the earlier driver's files: how much the pair median narrows the median half-width
    against the pair mean, and the injected 20-minute comparison's flags under each."""
    gains, flags, aa_flags = [], {}, []
    for pattern in [*(f"{AA}-{t}.jsonl" for t in EARLIER), EARLIER_AB]:
        _, records = ab_file(pattern)
        mean, median = ab_cases(records, "mean"), ab_cases(records)
        gains.append(1 - median["mdc"].median() / mean["mdc"].median())
        if "151401Z" in pattern:
            flags = {u: int((t["q"] < 0.05).sum()) for u, t in (("mean", mean), ("median", median))}
        if "inject" not in pattern and pattern != EARLIER_AB:
            aa_flags.append(int((median["q"] < 0.05).sum()))
    return (f"{100 * min(gains):.0f}–{100 * max(gains):.0f} %", f"{flags['mean']} to {flags['median']}", aa_flags)


def estimator_choice_figures() -> Iterator[str]:
    gain, inject, aa_flags = earlier_estimator_gain()
    assert aa_flags == [0, 0]
    re.sub(r"\s+", " ", README)
    yield f"narrowed the median half-width by {gain} and flagged no A/A case either"
    yield f"the injected 20-minute comparison went from {inject} of 216"


# Where the time goes: the committed 1-thread default run that carries a stage attribution.
def attributed_run() -> tuple[Path, dict, list[dict]]:
    found = []
    for path in committed("default-cpu-vm-torch*.jsonl"):
        lines = json_lines(path)
        if any(r.get("attribution") for r in lines[1:]):
            found.append((path, lines[0], [r for r in lines[1:] if r["status"] == "ok"]))
    (run,) = found
    return run


def composition_shares(paths: list[Path]) -> dict[str, float]:
    """Per file: the share of depthwise-separable cases within ±15 % of depthwise + pointwise (same group)."""
    shares = {}
    for path in paths:
        lines = json_lines(path)
        median = {(r["group_id"], r["case"]["variant"]): r["timing"]["median_s"] for r in lines[1:]
                  if r["status"] == "ok"}
        ratios = [m / (median[(g, "depthwise")] + median[(g, "pointwise")])
                  for (g, v), m in median.items() if v == "depthwise_separable"
                  and (g, "depthwise") in median and (g, "pointwise") in median]
        shares[path.name] = float(np.mean(np.abs(np.array(ratios) - 1) <= 0.15))
    return shares


def attribution_findings_text() -> str:
    from datetime import datetime

    path, header, cases = attributed_run()
    rel = np.array([r["attribution"]["total_s"] / r["timing"]["median_s"] - 1 for r in cases])
    within = float(np.mean(np.abs(rel) <= 0.10))
    q1, med, q3 = np.percentile(rel, [25, 50, 75])
    start = datetime.fromisoformat(header["started"])
    wall = (datetime.fromisoformat(cases[-1]["finished"]) - start).total_seconds()
    profiling = sum(r["attribution"]["profile_s"] for r in cases)
    added = profiling / (wall - profiling)
    one_thread = [p for p in committed("default-cpu-vm-torch*.jsonl")
                  if json.loads(p.read_text().splitlines()[0])["environment"]["threads"] == 1]
    comp = composition_shares(one_thread)

    def stage_share(variant: str, stage: str, mode: str) -> tuple[float, float, float]:
        rows = [r for r in cases if r["case"]["variant"] == variant and r["case"]["mode"] == mode]
        time = [next(s["share"] for s in r["attribution"]["stages"] if s["name"] == stage) for r in rows]
        flops = [next(s["flops"] for s in r["attribution"]["stages"] if s["name"] == stage) / r["theory"]["flops_step"]
                 for r in rows]
        roof = [next(s["ceiling_share"] for s in r["attribution"]["stages"] if s["name"] == stage) for r in rows]
        return float(np.median(time)), float(np.median(flops)), float(np.median(roof))

    dw = {m: stage_share("depthwise_separable", "dw", m) for m in ("inference", "train")}
    pw = {m: stage_share("depthwise_separable", "pw", m) for m in ("inference", "train")}
    framework = {m: float(np.median([r["attribution"]["overheads"]["framework"] / r["attribution"]["total_s"]
                                     for r in cases if r["case"]["mode"] == m])) for m in ("inference", "train")}
    dws_bottleneck = [r["attribution"]["bottleneck"] for r in cases if r["case"]["variant"] == "depthwise_separable"]
    di, dt, pi = dw["inference"], dw["train"], pw["inference"]
    return f"""Measured on this VM (`sepbench run --preset default --threads 1`, torch 2.13.0, one run:
`results/{path.name}`; generated by `docs/figures.py`):

- **The parts add up.** Stages plus named overheads came within ±10 % of the timer's median in
  {within:.0%} of the {len(cases)} cases (median {100 * med:+.1f} %, quartiles {100 * q1:+.1f} % to {100 * q3:+.1f} %).
- **What profiling costs.** {profiling:.0f} s of the run's {wall:.0f} s went to profiling ({added:.0%} added to the
  run without it), plus the per-event cost measured once per run.
- **The depthwise stage is the bottleneck** of the depthwise-separable layer in {dws_bottleneck.count("dw")} of
  {len(dws_bottleneck)} cases. It takes {di[0]:.0%} of the inference step's time for {di[1]:.0%} of
  its FLOPs ({dt[0]:.0%} for {dt[1]:.0%} in training), reaching {di[2]:.1%} of its roofline,
  where the pointwise stage reaches {pi[2]:.0%} (medians over the cases). The framework (Python,
  dispatcher, autograd engine) takes {framework["inference"]:.0%} of an inference step and {framework["train"]:.0%} of a
  training step at the median: at these sizes it is a fixed cost that a layer split into more ops pays more often.
- **Composition.** Over the committed 1-thread default runs, the depthwise-separable layer lies within
  ±15 % of depthwise + pointwise in {min(comp.values()):.0%}–{max(comp.values()):.0%} of its 24 cases per run
  ({comp[path.name]:.0%} in the run above)."""


def attribution_findings() -> Iterator[str]:
    yield attribution_findings_text()


def asv_versions_run_lasted_what_the_readme_says() -> Iterator[str]:
    """From the benchmarks' own start times and durations in the two committed asv results files."""
    spans = {}
    for version in ("2.12.0", "2.13.0"):
        data = json.loads((RESULTS / "asv" / "vm" / f"6d552053-virtualenv-py3.11-torch{version}.json").read_text())
        col = {name: i for i, name in enumerate(data["result_columns"])}
        runs = [(row[col["started_at"]] / 1000, row[col["duration"]]) for row in data["results"].values()]
        spans[version] = (min(s for s, _ in runs), max(s + d for s, d in runs))
    each = [(end - start) / 60 for start, end in spans.values()]
    total = (spans["2.13.0"][1] - spans["2.12.0"][0]) / 60
    yield (f"their 7 benchmarks ran for {each[0]:.1f} and {each[1]:.1f} minutes, {total:.1f} minutes from the "
            "first")


# `sepbench run` on a quiet and a busy machine: the README's main command, alternated quiet and beside one
# busy process, then beside two; the header's load as the run began says which.
TRUST = "trust/default-cpu-vm-torch2.13.0+cpu-20261130T*.jsonl"  # sittings spread over the run, their median
TRUST_AA = "aa-default-cpu-vm-torch2.13.0+cpu-vs-torch2.13.0+cpu-20261130T052710Z.jsonl"
TRUST_TIMERCHECK = "timercheck/smoke-cpu-vm-torch2.13.0+cpu-20261130T*.csv"


def trust_runs() -> list[tuple[Path, dict, list[dict], dict]]:
    """Each committed trust run: its path, header, case records and end line."""
    runs = []
    for path in committed(TRUST):
        lines = json_lines(path)
        end = [r for r in lines if r["kind"] == "end"]
        runs.append((path, lines[0], [r for r in lines if r["kind"] == "case"], end[0] if end else {}))
    return runs


def _minutes_span(values: list[float], unit: float = 60) -> str:
    """Lowest and highest as minutes to one decimal, one figure where they round alike."""
    low, high = f"{min(values) / unit:.1f}", f"{max(values) / unit:.1f}"
    return low if low == high else f"{low}–{high}"


def _condition(header: dict) -> str:
    busy = header["machine_start"]["other_cores"]
    return "quiet" if busy < 0.5 else f"beside {round(busy)} busy"


def trust_table() -> str:
    lines = ["| run (`results/trust/`) | machine as it began | variants unstable | median ± of the intervals | "
             "blocks re-taken | reference probe, median [10–90 %] | wall time of the timing |",
             "|---|---|---|---|---|---|---|"]
    for path, header, cases, end in trust_runs():
        realized = [r["realized"] for r in cases if r.get("realized")]
        unstable = sum(r["unstable"] for r in realized)
        half = float(np.median([r["half_width"] for r in realized]))
        groups = {r["group_id"]: r["timing"]["probe_s"] for r in cases if r.get("timing")}
        probe = 1e6 * np.percentile([x for g in groups.values() for x in g], [50, 10, 90])
        lines.append(f"| `{path.name}` | {_condition(header)} ({header['machine_start']['other_cores']:.1f} cores) | "
                     f"{unstable} of {len(realized)} | ±{100 * half:.1f} % | {100 * end['retaken_share']:.1f} % | "
                     f"{probe[0]:.1f} µs [{probe[1]:.1f}–{probe[2]:.1f}] | {end['seconds'] / 60:.1f} min |")
    return "\n".join(lines)


def _intervals(path: Path) -> pd.DataFrame:
    rows = [{"case_id": r["case_id"], "speedup": r["realized"]["speedup"], "low": r["realized"]["low"],
             "high": r["realized"]["high"]} for r in json_lines(path) if r["kind"] == "case" and r.get("realized")]
    return pd.DataFrame(rows).set_index("case_id")


def aa_of_run(pattern: str) -> tuple[float, int, float, float]:
    """Two quiet runs of one design: the share of variants whose 95 % intervals overlap, how many
    variants, the SD of the log ratio between the runs, and the median half-width (log)."""
    quiet = [p for p in committed(pattern) if _condition(json_lines(p)[0]) == "quiet"]
    a, b = _intervals(quiet[0]), _intervals(quiet[1])
    both = a.index.intersection(b.index)
    a, b = a.loc[both], b.loc[both]
    overlap = float(((a["low"] <= b["high"]) & (b["low"] <= a["high"])).mean())
    half = float(np.median(np.log(pd.concat([a, b])["high"] / pd.concat([a, b])["low"]) / 2))
    return overlap, len(both), float(np.log(a["speedup"] / b["speedup"]).std()), half


TRUST_ROUNDS = "trust/rounds/default-cpu-vm-torch2.13.0+cpu-20261130T*.jsonl"
TRUST_FRESH = "trust/fresh-process/default-cpu-vm-torch2.13.0+cpu-20261130T*.jsonl"
TRUST_BACK_TO_BACK = "trust/back-to-back/default-cpu-vm-torch2.13.0+cpu-20261130T*.jsonl"
TRUST_SPREAD_MEAN = "trust/spread-mean/default-cpu-vm-torch2.13.0+cpu-20261130T*.jsonl"
SHIFT = 0.03  # a pass whose sittings sat this far off the variants' medians, on average over all of them
SITTINGS = "machine/sittings-vm-torch2.13.0+cpu-20261130T*.csv"


def sittings_figures() -> pd.DataFrame:
    """Per kind of sitting: the SD of a variant's log speedup across sittings, and the SD that a
    bootstrap over one sitting's rounds implies (benchmarks/sittings.py)."""
    (csv,) = committed(SITTINGS)
    df = pd.read_csv(csv)
    df = df.assign(log=np.log(df["speedup"]), claimed=np.log(df["high"] / df["low"]) / 2 / 1.96)
    return pd.DataFrame({how: {"between": float(np.sqrt(g.groupby("case_id")["log"].var().mean())),
                               "claimed": float(g["claimed"].median())} for how, g in df.groupby("sittings")}).T


def state_correlation(pattern: str) -> tuple[float, int]:
    """Between two quiet runs, per group: the change of the baseline's median time against the mean
    change of its variants' log speedups; their correlation and the number of groups."""
    quiet = [json_lines(p) for p in committed(pattern) if _condition(json_lines(p)[0]) == "quiet"][:2]
    per = []
    for lines in quiet:
        cases = [r for r in lines if r["kind"] == "case" and r.get("timing")]
        base = {r["group_id"]: np.log(r["timing"]["median_s"]) for r in cases if r["case_id"] == r["group_id"]}
        speed = pd.Series([np.log(r["realized"]["speedup"]) for r in cases if r.get("realized")],
                          index=[r["group_id"] for r in cases if r.get("realized")]).groupby(level=0).mean()
        per.append(pd.DataFrame({"base": pd.Series(base), "speedup": speed}))
    d = (per[0] - per[1]).dropna()
    return float(d["base"].corr(d["speedup"])), len(d)


def pass_shifts(path: Path) -> pd.DataFrame:
    """Per pass of a run whose sittings are spread over it (sitting k of every group is taken in pass k),
    over the passes every group took: the mean over all variants of how far the sitting's log ratio sat
    from the variant's median over sittings, and the mean over groups of the same for the probe."""
    lines = [r for r in json_lines(path) if r["kind"] == "case" and r.get("timing")]
    base = {r["group_id"]: r["timing"] for r in lines if r["case_id"] == r["group_id"]}
    passes = min(len(t["sittings"]) for t in base.values())
    ratio, probe = [], []
    for r in lines:
        t, b = r["timing"], base[r["group_id"]]
        edges = np.cumsum([0, *t["sittings"]])[: passes + 1]
        if r["case_id"] == r["group_id"]:
            logs = np.array([np.log(np.median(t["probe_s"][i:j])) for i, j in itertools.pairwise(edges)])
            probe.append(logs - np.median(logs))
        elif r.get("realized"):
            logs = np.array([np.log(np.median(b["times_s"][i:j]) / np.median(t["times_s"][i:j]))
                             for i, j in itertools.pairwise(edges)])
            ratio.append(logs - np.median(logs))
    return pd.DataFrame({"ratio": np.expm1(np.mean(ratio, axis=0)), "probe": np.expm1(np.mean(probe, axis=0))},
                        index=pd.RangeIndex(1, passes + 1, name="pass"))


def spell_finding() -> str:
    """The spells a busy run of the first spread design met, pass by pass, and what the probe saw of them."""
    busy = [p for p in committed(TRUST_SPREAD_MEAN) if _condition(json_lines(p)[0]) == "beside 1 busy"]
    shifts = {p: pass_shifts(p) for p in busy}
    path = max(shifts, key=lambda p: int((shifts[p]["ratio"].abs() > SHIFT).sum()))
    d = shifts[path]
    spell = d[d["ratio"].abs() > SHIFT]
    calm = d[d["ratio"].abs() <= SHIFT]
    variants = sum(1 for r in json_lines(path) if r["kind"] == "case" and r.get("realized"))
    passes = ", ".join(str(i) for i in spell.index)
    return (f"In `results/trust/spread-mean/{path.name}`, beside one busy process, the sittings of passes {passes} "
            f"of {len(d)} sat {100 * spell['ratio'].min():+.1f} % to {100 * spell['ratio'].max():+.1f} % off the "
            f"variants' medians, on average over all {variants} variants at once, while every other pass stayed "
            f"within {100 * calm['ratio'].min():+.1f} % to {100 * calm['ratio'].max():+.1f} %. The probe read "
            f"{100 * spell['probe'].min():+.1f} % to {100 * spell['probe'].max():+.1f} % in those passes, and up to "
            f"{100 * calm['probe'].max():+.1f} % in passes without a shift: it cannot tell a spell on its own.")


def trust_findings() -> str:
    runs = trust_runs()
    frames = []
    for path, header, cases, _ in runs:
        rows = [{"case_id": r["case_id"], "variant": r["case"]["variant"], "speedup": r["realized"]["speedup"],
                 "low": r["realized"]["low"], "high": r["realized"]["high"], "run": path.name,
                 "condition": _condition(header)} for r in cases if r.get("realized")]
        frames.append(pd.DataFrame(rows))
    df = pd.concat(frames)
    one = df[df["condition"].isin(["quiet", "beside 1 busy"])]
    per = one.groupby(["variant", "condition"])["speedup"].median().unstack()
    ratio = per["beside 1 busy"] / per["quiet"]
    walls = {c: [e["seconds"] for _, h, _, e in runs if _condition(h) == c] for c in ("quiet", "beside 1 busy")}
    (csv,) = committed(TRUST_TIMERCHECK)
    timer = pd.read_csv(csv)["sepbench_over_timer"]
    header, records = ab_file(TRUST_AA)
    aa = ab_cases(records)
    quiet_aa = ab_cases(ab_file(AB_FILES["A/A, again"])[1])
    flagged = int((aa["q"] < FDR).sum())
    retaken = sum(sum((r.get("retaken") or {}).values()) for r in records)
    rounds = sum(len(r["a_s"]) for r in records if r["status"] == "ok")
    busy_walls = _minutes_span(walls["beside 1 busy"])
    quiet_walls = _minutes_span(walls["quiet"])
    timer_file = csv.relative_to(RESULTS)
    aa_name, quiet_name = committed("ab/" + TRUST_AA)[0].name, committed("ab/" + AB_FILES["A/A, again"])[0].name
    two = [(h, e) for _, h, _, e in runs if _condition(h) == "beside 2 busy"]
    budget = 2.0 * 216 / 60  # the default budget: 2 s a case, 216 cases
    aa_half = 100 * np.expm1(np.log(aa["high"] / aa["low"]) / 2).median()
    quiet_half = 100 * np.expm1(np.log(quiet_aa["high"] / quiet_aa["low"]) / 2).median()
    (contention,) = committed("machine/contention-vm-torch2.13.0+cpu-20261130T044926Z.csv")
    cdf = pd.read_csv(contention)
    clean = cdf[cdf["contended"].fillna("") == ""]
    conv = clean.groupby(["condition", "block_ms"])["per_call_s"].median() * 1e6
    probe = clean.groupby(["condition", "block_ms"])["probe_s"].median() * 1e6
    drifts = [e["probe_drift"] for _, _, _, e in runs]
    drifting = sum(r["realized"].get("reason") == "drifting" for _, _, cases, _ in runs for r in cases
                   if r.get("realized"))
    designs = {name: aa_of_run(pattern) for name, pattern in
               (("rounds", TRUST_ROUNDS), ("back", TRUST_BACK_TO_BACK), ("fresh", TRUST_FRESH),
                ("mean", TRUST_SPREAD_MEAN), ("now", TRUST))}
    mean_unstable = [sum(r["realized"]["unstable"] for r in json_lines(p) if r.get("realized"))
                     for p in committed(TRUST_SPREAD_MEAN)]
    fresh = [(p, json_lines(p)) for p in committed(TRUST_FRESH)]
    fresh_busy = [(p, lines) for p, lines in fresh if _condition(lines[0]) == "beside 1 busy"]
    fresh_unstable = [sum(r["realized"]["unstable"] for r in lines if r.get("realized")) for _, lines in fresh_busy]
    fresh_wall = [next(r for r in lines if r["kind"] == "end")["seconds"] / 60 for _, lines in fresh_busy]
    sit = sittings_figures()
    corr, groups = state_correlation(TRUST_BACK_TO_BACK)
    (sit_csv,) = committed(SITTINGS)

    def span(x: pd.Series | list[float], fmt: str) -> str:
        low, high = f"{min(x):{fmt}}", f"{max(x):{fmt}}"
        return low if low == high else f"{low}–{high}"

    def pct(x: float) -> str:
        return f"{100 * x:.1f} %"

    return f"""- **Busy against quiet.** Each of the 8 variants' median realized speedup over its 24 cases, beside one
  busy process, lies within {100 * (ratio.min() - 1):+.1f} % to {100 * (ratio.max() - 1):+.1f} % of the quiet runs'
  (the largest, {(ratio - 1).abs().idxmax()}). The busy runs' timing took {busy_walls} minutes against
  {quiet_walls} quiet.
- **A/A of `run`: two quiet runs' 95 % intervals overlap in {designs['now'][0]:.1%} of the {designs['now'][1]}
  variants** (median half-width ±{pct(designs['now'][3])}, while a variant's speedup moved by {pct(designs['now'][2])},
  SD of the log ratio, between the runs). Five designs were measured the same way, two quiet runs each:
  intervals over the rounds of one sitting (`results/trust/rounds/`) overlapped in {designs['rounds'][0]:.1%}
  (±{pct(designs['rounds'][3])} against {pct(designs['rounds'][2])}); sittings on fresh tensors taken back to back
  (`results/trust/back-to-back/`) in {designs['back'][0]:.1%} (±{pct(designs['back'][3])} against
  {pct(designs['back'][2])}); sittings each in a fresh process, back to back (`results/trust/fresh-process/`,
  `sepbench.measure.sitting.in_fresh_process`) in {designs['fresh'][0]:.1%} (±{pct(designs['fresh'][3])} against
  {pct(designs['fresh'][2])}), but beside one busy process that design left {span(fresh_unstable, "d")} of 192
  variants unstable in {span(fresh_wall, ".1f")} minutes; sittings spread over the run with their geometric mean
  and a t interval (`results/trust/spread-mean/`) in {designs['mean'][0]:.1%} (±{pct(designs['mean'][3])} against
  {pct(designs['mean'][2])}), with {span(mean_unstable, "d")} of 192 variants unstable over its four runs, as spells
  took the mean along; spread with their median, as now, in {designs['now'][0]:.1%}. Why rounds were not enough,
  from `results/{sit_csv.relative_to(RESULTS)}` (`python benchmarks/sittings.py`): a bootstrap over one sitting's
  rounds claims {pct(sit.loc['same tensors', 'claimed'])} (SD), but back-to-back sittings on the same tensors moved a
  speedup by {pct(sit.loc['same tensors', 'between'])}, on fresh tensors by {pct(sit.loc['fresh tensors', 'between'])},
  and in fresh processes by {pct(sit.loc['fresh process', 'between'])}. Why back to back was not enough: where a
  group's baseline ran faster in one run than in the other, its variants' speedups read lower (over the {groups}
  groups of the two quiet back-to-back runs, the baseline's change of time and the change of its variants'
  speedups correlate at {corr:+.2f}), as a compute-bound standard conv gains more from a faster core than a
  memory-bound depthwise one, and sittings taken back to back share one moment.
- **Spells.** {spell_finding()} A mean over sittings takes such a pass at full weight; the median and its
  order-statistic interval let a few go, which is why the run uses them.
- **The spell this VM showed: faster when busy.** In the contention file, the quiet blocks ran the conv at
  {span(conv["quiet"], ".0f")} µs a call with the probe at {span(probe["quiet"], ".1f")} µs, and beside one busy
  process at {span(conv["busy1"], ".0f")} µs with the probe at {span(probe["busy1"], ".1f")} µs: an idle vCPU sits in
  a slower state, and a busy neighbour keeps it awake. The probe moved with the conv, and the paired
  speedups did not (above). So the run discards no round for a spell: pairing within a round cancels a
  change of speed that hits every variant alike, the median over sittings lets the few sittings of a
  spell go, every round's probe is stored, a group whose ratio follows the probe and whose interval
  stayed wide is flagged *drifting* (these runs, under the earlier rule of a probe that moved by
  more than 1.2×, flagged {drifting} variants), and the run's probe drift ({span(drifts, ".2f")}× per run,
  90th over 10th percentile) is printed at its end and shown in the report.
- **Timer agreement.** `sepbench timercheck --preset smoke --threads 1` reads a median sepbench / Timer
  ratio of {timer.median():.3f} over {len(timer)} cases ({timer.min():.2f}–{timer.max():.2f}), in
  `results/{timer_file}`.
- **`sepbench ab --aa` beside one busy process** (`default`, 20 minutes, `results/ab/{aa_name}`):
  {flagged} of {len(aa)} cases flagged, a median half-width of ±{aa_half:.2f} % against ±{quiet_half:.2f} % in
  the quiet A/A `{quiet_name}`, and {retaken} of {rounds + retaken} rounds re-taken because a block lost the
  CPU.
- **Beside two busy processes** every block loses its core: {span([100 * e['retaken_share'] for _, e in two], ".0f")} %
  of the blocks were re-taken, and the run says so on its first line and in its last. Its budget is 2 s a
  case, {budget:.1f} minutes; its timing took {span([e['seconds'] / 60 for _, e in two], ".1f")} minutes."""


RERUN = "trust/between-run/*.jsonl"  # `default` runs whose intervals hold the between-run component


def _log_estimates(cases: list[dict], without_tau: bool = False) -> dict[str, tuple[float, float]]:
    """Each variant's log speedup and standard error from its recorded 95 % interval (the mean of its two
    log half-widths over 1.96); `without_tau` takes the recorded between-run τ back out of each half."""
    out = {}
    for r in cases:
        real = r.get("realized") or {}
        if r["status"] != "ok" or not real.get("low") or not real.get("high"):
            continue
        m = np.log(real["speedup"])
        halves = np.array([m - np.log(real["low"]), np.log(real["high"]) - m])
        if without_tau and real.get("between_run"):
            halves = np.sqrt(np.maximum(halves ** 2 - (1.959964 * real["between_run"]) ** 2, 0))
        out[r["case_id"]] = (float(m), float(halves.mean() / 1.959964))
    return out


def _pair_agreement(a: dict[str, tuple[float, float]], b: dict[str, tuple[float, float]]) -> tuple[float, float, int]:
    """Two runs of one grid: the SD of z = (log s₁ − log s₂) / √(se₁² + se₂²) and the share with |z| ≤ 1.96."""
    both = sorted(a.keys() & b.keys())
    z = np.array([(a[k][0] - b[k][0]) / np.hypot(a[k][1], b[k][1]) for k in both])
    return float(z.std()), float((np.abs(z) <= 1.959964).mean()), len(both)


def _tau(runs: list[dict[str, tuple[float, float]]]) -> float:
    """The between-run SD pooled over every pair of runs: mean of ((Δ log)² − se₁² − se₂²) / 2."""
    excess = [((a[k][0] - b[k][0]) ** 2 - a[k][1] ** 2 - b[k][1] ** 2) / 2
              for a, b in itertools.combinations(runs, 2) for k in a.keys() & b.keys()]
    return float(np.sqrt(max(np.mean(excess), 0.0)))


def stopping_coverage() -> Iterator[str]:
    """The stopping rule's coverage on resampled sittings, and τ read inside each run, from the CSV of
    `benchmarks/stopping_coverage.py`."""
    (path,) = committed("trust/stopping-coverage.csv")
    df = pd.read_csv(path)
    rules = df[df["coverage"].notna()].set_index("rule")
    median = rules.loc["peek-median"]
    yield (f"over {int(median['variants'])} variants with 12 or more sittings, {int(median['draws'])} draws each, "
           f"`run`'s rule kept the population's median inside {median['coverage']:.1%} of its intervals at nominal "
           f"95 % (median {median['median_sittings']:.0f} sittings); a Student t interval under the same rule kept "
           f"{rules.loc['peek-t', 'coverage']:.1%}, and a sample size fixed from a pilot of 6 (Stein's two-stage) "
           f"{rules.loc['two-stage-t', 'coverage']:.1%}")
    halves = df[df["tau"].notna()]["tau"]
    yield (f"split in halves, the committed runs read τ = {_pct_span(list(halves), 2)} % from their own sittings "
           f"(`{path.relative_to(ROOT)}`), while pairs of runs read {_pct_span(_pair_taus(), 2)} %.")


def _pair_taus(pattern: str = TRUST) -> list[float]:
    runs = [_log_estimates(c) for _, _, c, _ in _rerun_runs(pattern)]
    return [_tau([a, b]) for a, b in itertools.combinations(runs, 2)]


def rerun_agreement() -> Iterator[str]:
    """How two runs of `default` agree, z by z: the committed runs before τ (intervals over sittings only)
    and the runs with it, each pair with its condition and the τ each run held."""
    lines = ["| runs | conditions | intervals | SD of z | \\|z\\| ≤ 1.96 | median ± of the intervals |",
             "|---|---|---|---|---|---|"]
    before = [(p, h, c) for p, h, c, e in trust_runs() if h["machine_start"]["other_cores"] < 1.5]
    after = []
    for path in committed(RERUN):
        lines_ = json_lines(path)
        after.append((path, lines_[0], [r for r in lines_ if r["kind"] == "case"]))
    rows = []
    for label, runs, without in (("over sittings", before, False), ("with τ", after, False)):
        for (pa, ha, ca), (pb, hb, cb) in itertools.combinations(runs, 2):
            sd, within, _ = _pair_agreement(_log_estimates(ca, without), _log_estimates(cb, without))
            halves = [r["realized"]["half_width"] for r in ca + cb if (r.get("realized") or {}).get("half_width")]
            rows.append((sd, within))
            lines.append(f"| {ha['started'][:10]}: `…{pa.name[-14:-6]}` · `…{pb.name[-14:-6]}` | "
                         f"{_condition(ha)} · {_condition(hb)} | "
                         f"{label} | {sd:.2f} | {within:.1%} | ±{100 * np.median(halves):.1f} % |")
    yield "\n".join(lines)
    reference = _tau([_log_estimates(c) for _, _, c in before])
    yield f"τ = {100 * reference:.2f} %"
    measured = _tau([_log_estimates(c, without_tau=True) for _, _, c in after])
    yield f"τ = {100 * measured:.2f} %"
    drifts = [json_lines(p)[-1]["probe_drift"] for p, _, _ in after]
    yield f"{min(drifts):.2f}–{max(drifts):.2f}×"
    yield f"{_pct_span(_pair_taus(TRUST_FRESH), 2)} %"


def _rerun_runs(pattern: str) -> list[tuple[Path, dict, list[dict], dict]]:
    """Each committed run of a folder: path, header, case records, end line (runs beside two busy
    processes left out: their intervals saturate)."""
    runs = []
    for path in committed(pattern):
        lines = json_lines(path)
        end = [r for r in lines if r["kind"] == "end"]
        if lines[0]["machine_start"]["other_cores"] < 1.5:
            runs.append((path, lines[0], [r for r in lines if r["kind"] == "case"], end[0] if end else {}))
    return runs


def _agreement_span(pattern: str) -> tuple[list[float], list[float]]:
    runs = _rerun_runs(pattern)
    got = [_pair_agreement(_log_estimates(a[2]), _log_estimates(b[2])) for a, b in itertools.combinations(runs, 2)]
    return [g[0] for g in got], [g[1] for g in got]


def _half_widths(pattern: str) -> tuple[list[float], list[int], list[str], str]:
    """Each run's median half-width, its variants above the target, the day it ran, and the runs' CPU."""
    halves, unstable, days, cpus = [], [], [], set()
    for _, header, cases, _ in _rerun_runs(pattern):
        real = [r["realized"] for r in cases if r.get("realized")]
        halves.append(float(np.median([r["half_width"] for r in real])))
        unstable.append(sum(r["unstable"] for r in real))
        days.append(header["started"][:10])
        cpus.add(header["environment"]["cpu"].replace("(R)", "").replace(" Processor", ""))
    return halves, unstable, days, " / ".join(sorted(cpus))


def _pct_span(values: list[float], digits: int = 1) -> str:
    low, high = f"{100 * min(values):.{digits}f}", f"{100 * max(values):.{digits}f}"
    return low if low == high else f"{low}–{high}"


def front_door_rerun() -> Iterator[str]:
    """The README's re-run agreement and resolution, per VM and day, from the committed `default` runs."""
    sd_now, within_now = _agreement_span(RERUN)
    sd_then, within_then = _agreement_span(TRUST)
    yield (f"two runs with τ in their intervals, quiet against quiet and against one beside a busy process, "
           f"agreed with an SD of z of {min(sd_now):.2f}–{max(sd_now):.2f} and |z| ≤ 1.96 in "
           f"{_pct_span(within_now)} % of the 192 variants (`results/trust/between-run/`; 1 and 95 % are "
           f"right), where the intervals over sittings alone gave {min(sd_then):.2f}–{max(sd_then):.2f} and "
           f"{_pct_span(within_then)} % (`results/trust/`).")
    then, then_unstable, then_days, then_cpu = _half_widths(TRUST)
    now, now_unstable, now_days, now_cpu = _half_widths(RERUN)
    yield (f"the committed runs reached a median half-width of ±{_pct_span(then)} % with "
           f"{min(then_unstable)}–{max(then_unstable)} of 192 variants above the ±3 % target on "
           f"{then_days[0]} (`results/trust/`, a 2-core {then_cpu} VM, intervals over sittings alone) and "
           f"±{_pct_span(now)} % with {min(now_unstable)}–{max(now_unstable)} above it on {now_days[0]} "
           f"(`results/trust/between-run/`, a 2-core {now_cpu} VM, τ included).")


def main_command_resolution() -> Iterator[str]:
    """The README's resolution range of the main command: what `sepbench.measure.between.DOCUMENTED` holds."""
    now, _, days, _ = _half_widths(RERUN)
    yield f"±{_pct_span(now)} % on {days[0]}"


def busy_and_quiet_runs() -> Iterator[str]:
    re.sub(r"\s+", " ", README)
    yield trust_table()
    yield re.sub(r"\s+", " ", trust_findings())


def contention_thresholds() -> Iterator[str]:
    (csv,) = committed("machine/contention-vm-torch2.13.0+cpu-20261130T044926Z.csv")
    df = pd.read_csv(csv)
    df["flagged"] = df["contended"].fillna("") != ""
    quiet = df[df["condition"] == "quiet"]
    re.sub(r"\s+", " ", README)
    assert not quiet["flagged"].any()
    yield (f"got {100 * quiet['cpu_share'].min():.1f}–100 % of their wall time as CPU and waited at most "
            f"{100 * quiet['wait_share'].max():.2f} % of it")
    assert quiet["cpu_share"].max() <= 1.002
    two = df[df["condition"] == "busy2"].groupby(["flagged", "block_ms"])["per_call_s"].median() * 1e6
    one = df[(df["condition"] == "busy1") & ~df["flagged"]].groupby("block_ms")["per_call_s"].median() * 1e6
    yield (f"ran at {two[True].min():.0f}–{two[True].max():.0f} µs a call and the rest at "
            f"{two[False].min():.0f}–{two[False].max():.0f} µs, near the {one.min():.0f}–{one.max():.0f} µs")


def main_command_minutes() -> str:
    """The Two commands section's duration of `sepbench run --preset default`, from the trust runs' end lines."""
    walls: dict[str, list[float]] = defaultdict(list)
    for _, header, _, end in trust_runs():
        walls[_condition(header)].append(end["seconds"] / 60)
    return (f"{_minutes_span(walls['quiet'], 1)} minutes of measuring on a quiet 2-core VM and "
            f"{_minutes_span(walls['beside 1 busy'], 1)} beside one busy process")


def main_command_time() -> Iterator[str]:
    yield main_command_minutes()



TEST_RUNS = "tests/junit-*.xml"  # the README's test command as three callers started it: pytest's own JUnit files


def suite_minutes() -> str:
    import xml.etree.ElementTree as ET

    minutes = []
    for path in committed(TEST_RUNS):
        root = ET.parse(path).getroot()
        suite = root if root.tag == "testsuite" else root.find("testsuite")
        assert suite is not None and int(suite.get("failures", 0)) == int(suite.get("errors", 0)) == 0
        minutes.append(float(suite.get("time", "nan")) / 60)
    low, high = f"{min(minutes):.0f}", f"{max(minutes):.0f}"
    return f"{low} minutes" if low == high else f"{low}–{high} minutes"


def test_suite_time() -> Iterator[str]:
    yield f"the suite takes {suite_minutes()}"


# `sepbench model`: the committed networks, read with json alone.
MODELS = "models/model-*.jsonl"
RESNET = "models/model-torchvision-resnet18-*.jsonl"


def model_file(path: Path) -> tuple[dict, list[dict], dict | None]:
    lines = json_lines(path)
    sites = [r for r in lines[1:] if r["kind"] == "model_site"]
    network = next((r for r in lines[1:] if r["kind"] == "model_network"), None)
    return lines[0], sites, network


def _x(value: float) -> str:
    return f"{value:.2f}×"


def model_networks_table(pattern: str = MODELS) -> str:
    """One row per committed network: its conv site shapes, the swaps (single convs whose best candidate's
    whole interval lies above 1×), theory ×, predicted ×, measured × and measured / predicted time."""
    folder = "/".join(pattern.split("/")[:-1])
    rows = [f"| network (`results/{folder}/`) | conv layers | site shapes | swapped | theory × | predicted × | "
            "measured × [95 %] | measured / predicted time |", "|---|---|---|---|---|---|---|---|"]
    for path in committed(pattern):
        header, sites, n = model_file(path)
        assert n is not None
        gap = n["as_is_s"] / n["measured"] / n["predicted_s"]
        swapped = (f"{len(n['swaps'])}" if n["swaps"] else "0 (against an unchanged copy)")
        gap_text = (f"{gap:.3f} [{n['as_is_s'] / n['high'] / n['predicted_s']:.3f}–"
                    f"{n['as_is_s'] / n['low'] / n['predicted_s']:.3f}]") if n["swaps"] else "–"
        rows.append(f"| `{header['spec']}` | {len(header['census'])} | {len(sites)} | {swapped} | "
                    f"{_x(n['macs'] / n['swapped_macs'])} | {_x(n['as_is_s'] / n['predicted_s'])} | "
                    f"{n['measured']:.2f}× [{n['low']:.2f}–{n['high']:.2f}] | {gap_text} |")
    return "\n".join(rows)


def resnet_table() -> str:
    """ResNet-18 site by site: its depthwise-separable candidate's theory × and realized × with interval,
    the best candidate, and whether it is a swap; layers of one shape share a row."""
    (path,) = committed(RESNET)
    header, sites, n = model_file(path)
    assert n is not None
    order = [e["name"] for e in header["census"]]
    rows = ["| layers | input → output | share of the network's time, each | depthwise-separable: theory × → "
            "realized × [95 %] | best candidate: realized × | slower than the layer | verdict |",
            "|---|---|---|---|---|---|---|"]
    for r in sorted(sites, key=lambda r: order.index(r["layers"][0])):
        dw = next((c for c in r["candidates"] if c["name"] == "depthwise_separable"), None)
        best = max(r["candidates"], key=lambda c: c["realized"])
        names = ", ".join(f"`{x}`" for x in r["layers"])
        shape = (f"{'×'.join(map(str, r['in_shape'][1:]))} → {'×'.join(map(str, r['out_shape'][1:]))}")
        dw_text = (f"{_x(dw['theory'])} → {_x(dw['realized'])} [{dw['low']:.2f}–{dw['high']:.2f}]" if dw else
                   "– (a 1×1 conv)")
        verdict = "swap" if best["low"] > 1 else ("slower" if all(c["high"] < 1 for c in r["candidates"]) else "keep")
        slower = ", ".join(f"{c['name']} {_x(c['realized'])}" for c in r["candidates"] if c["high"] < 1) or "none"
        rows.append(f"| {names} | {shape} | {100 * r['median_s'] / n['as_is_s']:.1f} % | {dw_text} | "
                    f"{best['name']} {_x(best['realized'])} | {slower} | {verdict} |")
    return "\n".join(rows)


def resnet_findings() -> str:
    (path,) = committed(RESNET)
    _, sites, n = model_file(path)
    assert n is not None
    dw = [next(c for c in r["candidates"] if c["name"] == "depthwise_separable") for r in sites
          if any(c["name"] == "depthwise_separable" for c in r["candidates"])]
    share = [c["realized"] / c["theory"] for c in dw]
    lose = [c for c in dw if c["high"] < 1]
    gap = n["as_is_s"] / n["measured"] / n["predicted_s"]
    return (f"depthwise-separable is faster in {len(dw) - len(lose)} of its {len(dw)} dense k×k site shapes, realizing "
            f"{min(share):.0%}–{max(share):.0%} of its theoretical ×; with every surely faster candidate swapped in "
            f"({len(n['swaps'])} convs), theory promises {_x(n['macs'] / n['swapped_macs'])}, the layers predict "
            f"{_x(n['as_is_s'] / n['predicted_s'])} and the network measures {n['measured']:.2f}× "
            f"[{n['low']:.2f}–{n['high']:.2f}]: measured / predicted time {gap:.3f}")


WRITTEN_OUT = "models/written-out/model-*.jsonl"  # benchmarks/networks.py's copies, measured under the CPU wheel


def model_tables() -> Iterator[str]:
    yield model_networks_table()
    yield model_networks_table(WRITTEN_OUT)
    yield resnet_table()
    yield resnet_table()
    yield resnet_findings()




def separable_savings_and_the_written_out_networks() -> Iterator[str]:
    """MobileNetV2's pairs against their full convs, and the written-out networks' parameter counts, as
    docs/models.md gives them."""
    (path,) = committed("models/model-sepbench-mobilenet_v2-*.jsonl")
    _, sites, _ = model_file(path)
    saved = [1 / c["realized"] for r in sites if r["site_kind"] == "depthwise + pointwise" for c in r["candidates"]]
    re.sub(r"\s+", " ", README)
    yield f"every depthwise + pointwise pair against its full conv reads {min(saved):.1f}–{max(saved):.1f}× saved"
    import sys

    sys.path.insert(0, str(ROOT))
    from benchmarks import networks

    counts = [sum(p.numel() for p in f().parameters()) for f in (networks.resnet18, networks.mobilenet_v3_large,
                                                                 networks.efficientnet_b0)]
    yield f"({counts[0]:,}, {counts[1]:,} and {counts[2]:,})"


def real_networks_figures() -> Iterator[str]:
    """docs/models.md on the five real networks: what they gained against what their swaps promised, the
    add-up range over every committed network, how long each took, and the share of blocks re-taken."""
    real = [model_file(p) for p in committed("models/model-torchvision-*.jsonl", "models/model-timm-*.jsonl")]
    separable = [(h, n) for h, _, n in real if n is not None and h["spec"] != "torchvision:resnet18"]
    gained = [n["measured"] for _, n in separable]
    promised = [n["macs"] / n["swapped_macs"] for _, n in separable]
    gaps = [n["as_is_s"] / n["measured"] / n["predicted_s"] for _, _, n in map(model_file, committed(MODELS))
            if n is not None and n["swaps"]]
    walls = [(datetime.fromisoformat(n["finished"]) - datetime.fromisoformat(h["started"])).total_seconds()
             for h, _, n in real if n is not None]
    retaken = [n["retaken_share"] for _, _, n in real if n is not None]
    re.sub(r"\s+", " ", README)
    assert len(real) == 5 and all(h["environment"]["torch"] == "2.13.0+cu130" for h, _, _ in real)
    yield f"gain {min(gained):.2f}–{max(gained):.2f}× with every surely faster swap"
    yield f"where the swapped MACs promise {min(promised):.2f}–{max(promised):.2f}×"
    yield f"(measured / predicted time {min(gaps):.2f}–{max(gaps):.2f})"
    yield f"Each took {min(walls):.0f}–{max(walls):.0f} s of its 3-minute budget"
    yield f"{100 * min(retaken):.1f}–{100 * max(retaken):.1f} % of blocks were timed again"


# `sepbench ab --model`: the networks across two registry builds, recomputed from the JSON lines.
NETWORK_AB = {"torchvision:resnet18": "ab/ab-torchvision-resnet18-1x3x224x224-cpu-vm-torch2.13.0+cu130-vs-"
                                      "torch2.14.1+cu130-*.jsonl",
              "timm:efficientnet_b0": "ab/ab-timm-efficientnet_b0-1x3x224x224-cpu-vm-torch2.13.0+cu130-vs-"
                                      "torch2.14.1+cu130-*.jsonl"}
NETWORK_AA = "ab/aa-torchvision-resnet18-1x3x224x224-cpu-vm-torch2.13.0+cu130-vs-torch2.13.0+cu130-*.jsonl"


def network_comparison(pattern: str) -> dict:
    """One network comparison by hand: per site shape and for the whole network, the mean over worker pairs
    of each pair's median log ratio with its t interval, q-values over all, each site's share of A's
    network time, what it carries, the control's flags, and the gate's line."""
    from scipy import stats

    (path,) = committed(pattern)
    lines = json_lines(path)
    header, cases = lines[0], [r for r in lines[1:] if r["kind"] == "ab_case" and r["status"] == "ok"]
    gate = next(r for r in lines[1:] if r["kind"] == "ab_gate")

    def estimate(a_s: list[float], b_s: list[float], instance: list[int]) -> tuple[float, float, float, float]:
        d = pd.Series(np.log(np.array(b_s) / np.array(a_s))).groupby(instance).median()
        test = stats.ttest_1samp(d, 0.0)
        ci = test.confidence_interval(0.95)
        return float(np.exp(d.mean())), float(np.exp(ci.low)), float(np.exp(ci.high)), float(test.pvalue)

    rows = []
    for r in cases:
        ratio, low, high, p = estimate(r["a_s"], r["b_s"], r["instance"])
        rows.append({"name": r["site"]["name"], "label": (r["site"]["layers"] or ["network"])[0],
                     "calls": r["site"]["calls"], "a_s": float(np.median(r["a_s"])), "ratio": ratio, "low": low,
                     "high": high, "p": p})
    table = pd.DataFrame(rows)
    table["q"] = _benjamini_hochberg(table["p"].to_numpy())
    whole = table[table["name"] == "network"].iloc[0]
    sites = table[table["name"] != "network"].copy()
    sites["carries"] = sites["a_s"] * sites["calls"] / whole["a_s"] * (sites["ratio"] - 1)
    controls = [estimate(r["control"]["a_s"], r["control"]["b_s"], r["control"]["instance"])[3] for r in cases
                if r.get("control") and r["control"]["a_s"]]
    control_flags = int((_benjamini_hochberg(np.array(controls)) < FDR).sum()) if controls else 0
    return {"header": header, "whole": whole, "sites": sites, "gate": gate, "controls": len(controls),
            "control_flags": control_flags, "path": path}


def _pct(ratio: float) -> str:
    return f"{100 * (ratio - 1):+.1f} %"


def network_upgrade_line(spec: str) -> str:
    """The README's sentence on one network across the upgrade."""
    c = network_comparison(NETWORK_AB[spec])
    w, sites, h = c["whole"], c["sites"], c["header"]
    flagged = sites[sites["q"] < FDR]
    libs = h["network"]["libraries"]
    library = next(iter(libs["B"]), None)
    built = f", {library} {libs['A'][library]} → {libs['B'][library]}" if library else ""
    top = sites.reindex(sites["carries"].abs().sort_values(ascending=False).index).iloc[0]
    return (f"`{spec}` (both registry builds{built}): the whole network {_pct(w['ratio'])} "
            f"[{_pct(w['low'])} … {_pct(w['high'])}] under 2.14.1, {len(flagged)} of its {len(sites)} conv site "
            f"shapes flagged; the site carrying most, `{top['label']}`, moves the network by "
            f"{100 * top['carries']:+.2f} %; the gate at 3 % {'passed' if not c['gate']['failed'] else 'failed'} "
            f"(`results/ab/{c['path'].name}`)")


def network_front_line() -> str:
    """The README's front door on the two networks across the upgrade."""
    figures = {}
    for spec in NETWORK_AB:
        c = network_comparison(NETWORK_AB[spec])
        w = c["whole"]
        figures[spec] = (f"{_pct(w['ratio'])} [{_pct(w['low'])} … {_pct(w['high'])}]",
                         int((c["sites"]["q"] < FDR).sum()), bool(c["gate"]["failed"]))
    (r_words, r_flags, r_fail), (e_words, e_flags, e_fail) = figures.values()
    flags = ("no conv site of either flagged" if r_flags + e_flags == 0 else
             f"{r_flags} and {e_flags} conv sites flagged")
    gate = "passes both" if not (r_fail or e_fail) else "fails"
    return (f"torchvision's ResNet-18 reads {r_words} under 2.14.1 and timm's EfficientNet-B0 {e_words}, {flags}, "
            f"and `--fail-above 3` {gate}")


def network_aa_line() -> str:
    c = network_comparison(NETWORK_AA)
    w, sites = c["whole"], c["sites"]
    return (f"the same network against itself (A/A, `results/ab/{c['path'].name}`): the whole network "
            f"{_pct(w['ratio'])} [{_pct(w['low'])} … {_pct(w['high'])}], {int((sites['q'] < FDR).sum())} of "
            f"{len(sites)} site shapes flagged, the in-run control {c['control_flags']} false flags in "
            f"{c['controls']}, and the gate at 3 % {'passed' if not c['gate']['failed'] else 'failed'}")


def networks_across_the_upgrade() -> Iterator[str]:
    re.sub(r"\s+", " ", README)
    for spec in NETWORK_AB:
        yield network_upgrade_line(spec)
    yield network_aa_line()
    yield network_front_line()
    effnet = network_comparison(NETWORK_AB["timm:efficientnet_b0"])
    share = (effnet["sites"]["a_s"] * effnet["sites"]["calls"]).sum() / effnet["whole"]["a_s"]
    yield f"the sites' shares add up to {100 * share:.0f} %"


def busy_model_line() -> str:
    """docs/models.md on ResNet-18 measured beside two busy processes."""
    (path,) = committed("models/busy/model-torchvision-resnet18-*.jsonl")
    header, sites, n = model_file(path)
    assert n is not None
    contended = sum(1 for r in sites if r.get("unstable") == "contended")
    gap = n["as_is_s"] / n["measured"] / n["predicted_s"]
    return (f"other work kept {header['machine_start']['other_cores']:.1f} cores busy at the start and "
            f"{n['machine_end']['other_cores']:.1f} at the end; {100 * n['retaken_share']:.0f} % of blocks were timed "
            f"again and {n['kept_contended']} contended blocks kept; {contended} of the {len(sites)} site shapes say "
            f"`unstable: contended`; measured / predicted time {gap:.3f}")


def busy_model_run() -> Iterator[str]:
    yield busy_model_line()


# The compile preset (eager against torch.compile), read with json alone: the first run with an empty compile
# cache, the second with the cache the first left.
COMPILED = "compiled/compile-cpu-vm-*.jsonl"


def compiled_runs() -> tuple[list[dict], list[dict]]:
    """The cold run's and the cached run's case lines (the two newest committed runs of the preset)."""
    paths = committed(COMPILED)[-2:]
    runs = [json_lines(p) for p in paths]
    assert [r[0]["compile_cache"]["state"] for r in runs] == ["empty", "warm"]
    return [x for x in runs[0] if x["kind"] == "case"], [x for x in runs[1] if x["kind"] == "case"]


def _geo(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(values))))


def compiled_table() -> str:
    """Per variant and mode over the preset's four geometries: realized × eager and compiled (geometric means),
    eager ÷ compiled (geometric mean), the geometries where compiling is surely faster / slower, and the median
    first compilation in the cold run, in the second run, and from the cache within a run."""
    cold, warm = compiled_runs()
    by_id = {r["case_id"]: r for r in cold}
    second = {r["case_id"]: r for r in warm}
    rows: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in cold:
        if r["case"].get("compile", "eager") == "eager" or r["status"] != "ok":
            continue
        rows[(r["case"]["variant"], r["case"]["mode"])].append(r)
    order = ["standard", "grouped", "depthwise", "pointwise", "depthwise_separable", "spatially_separable",
             "inverted_residual"]
    lines = ["| variant | mode | realized × eager | realized × compiled | eager ÷ compiled | surely faster / slower "
             "compiled | first compilation: cold run | second run | from the cache |",
             "|---|---|---|---|---|---|---|---|---|"]
    for variant, mode in sorted(rows, key=lambda k: (order.index(k[0]), k[1])):
        part = rows[(variant, mode)]
        twins = [by_id[r["case_id"].rsplit("|compile=", 1)[0]] for r in part]
        base = variant == "standard"
        eager = "ref" if base else f"{_geo([t['realized']['speedup'] for t in twins]):.2f}×"
        made = "ref" if base else f"{_geo([r['realized']['speedup'] for r in part]):.2f}×"
        vs = _geo([r["vs_eager"]["ratio"] for r in part])
        faster = sum(r["vs_eager"]["low"] > 1 for r in part)
        slower = sum(r["vs_eager"]["high"] < 1 for r in part)
        first = np.median([r["compilation"]["first_s"] for r in part])
        again = np.median([second[r["case_id"]]["compilation"]["first_s"] for r in part])
        cached = np.median([r["compilation"]["cached_s"] for r in part])
        lines.append(f"| {variant} | {mode} | {eager} | {made} | {vs:.2f}× | {faster} / {slower} of {len(part)} | "
                     f"{first:.2f} s | {again:.2f} s | {cached:.2f} s |")
    return "\n".join(lines)


def compiled_totals() -> str:
    """The sentence under the table: steps surely faster and slower over the whole preset, and the runs' times."""
    cold, warm = compiled_runs()
    made = [r for r in cold if r["case"].get("compile", "eager") != "eager" and r["status"] == "ok"]
    faster = sum(r["vs_eager"]["low"] > 1 for r in made)
    slower = sum(r["vs_eager"]["high"] < 1 for r in made)
    first = sum(r["compilation"]["first_s"] for r in made)
    again = sum(r["compilation"]["first_s"] for r in warm if r["case"].get("compile", "eager") != "eager"
                and r["status"] == "ok")
    recompiled = sum((r["timing"] or {}).get("recompiled") or 0 for r in cold + warm if r["status"] == "ok")
    return (f"compiling made {faster} of the {len(made)} compiled steps surely faster than eager and {slower} surely "
            f"slower; their first compilations took {first:.0f} s in all with the cache empty and {again:.0f} s in the "
            f"second run; {recompiled} graphs were compiled while blocks were timed")


def compiled_figures() -> Iterator[str]:
    yield compiled_table()
    yield compiled_totals()
    yield compiled_totals().split(";")[0]
    re.sub(r"\s+", " ", README)
    yield compiled_by_size()
    yield compiled_notes()
    yield compiled_conditions()


def compiled_by_size() -> str:
    """How compiling's cost per call shrinks as the layer grows: eager ÷ compiled, geometric mean over the
    variants, at the smallest and the largest geometry, and the smallest layer's two times."""
    cold, _ = compiled_runs()
    by_id = {r["case_id"]: r for r in cold}

    def geo(c_in: int, size: int, mode: str) -> float:
        return _geo([r["vs_eager"]["ratio"] for r in cold if r["case"].get("compile", "eager") != "eager"
                     and (r["case"]["c_in"], r["case"]["size"], r["case"]["mode"]) == (c_in, size, mode)])

    (small,) = [r for r in cold if r["case"].get("compile", "eager") != "eager" and r["case"]["variant"] == "pointwise"
                and (r["case"]["c_in"], r["case"]["size"], r["case"]["mode"]) == (32, 14, "inference")]
    eager = by_id[small["case_id"].rsplit("|compile=", 1)[0]]["timing"]["median_s"]
    return (f"eager ÷ compiled, geometric mean over the variants, is {geo(32, 14, 'inference'):.2f}× (inference) and "
            f"{geo(32, 14, 'train'):.2f}× (training) at 32 channels and 14², {geo(128, 56, 'inference'):.2f}× and "
            f"{geo(128, 56, 'train'):.2f}× at 128 channels and 56²; the smallest layer, a 32→32 1×1 conv at 14², "
            f"takes {eager * 1e6:.0f} µs eager and {small['timing']['median_s'] * 1e6:.0f} µs compiled")


def compiled_notes() -> str:
    """Where compiling made steps faster, the spread of the table's compile-time medians, and the runs' lengths."""
    cold, warm = compiled_runs()
    made = [r for r in cold if r["case"].get("compile", "eager") != "eager" and r["status"] == "ok"]
    large = [r for r in made if r["case"]["size"] == 56]
    faster = sum(r["vs_eager"]["low"] > 1 for r in large)

    def medians(rows: list[dict]) -> list[float]:
        groups: dict[tuple, list[float]] = defaultdict(list)
        for r in rows:
            if r["case"].get("compile", "eager") != "eager" and r["status"] == "ok":
                groups[(r["case"]["variant"], r["case"]["mode"])].append(r["compilation"]["first_s"])
        return [float(np.median(v)) for v in groups.values()]

    first, again = medians(cold), medians(warm)
    ends = [line for p in committed(COMPILED)[-2:] for line in json_lines(p) if line["kind"] == "end"]
    walls = "–".join(sorted({f"{e['seconds']:.0f}" for e in ends}))
    elsewhere = sum(r["vs_eager"]["low"] > 1 for r in made) - faster
    where = "every step compiling made surely faster is" if not elsewhere else \
        f"all but {elsewhere} of the steps compiling made surely faster are"
    return (f"{where} at 56² ({faster} of the {len(large)} compiled steps there); a first compilation took "
            f"{min(first):.2f}–{max(first):.2f} s with the cache empty (medians per variant and mode) and "
            f"{min(again):.2f}–{max(again):.2f} s in the second run; each run took "
            f"{walls} s, compiling included")


# Compiled layers paired across installs (`nox -s "ab_compiled(torch='2.14.1')"`): both sides the registry's builds.
COMPILED_AA = "aa-compile-cpu-vm-torch2.13.0+cu130-vs-torch2.13.0+cu130-*.jsonl"
COMPILED_AB = "ab-compile-cpu-vm-torch2.13.0+cu130-vs-torch2.14.1+cu130-*.jsonl"


def compiled_ab_line(pattern: str) -> str:
    """One compiled comparison in a line: flags (B slower / faster) of the cases, median B / A, the control's
    false flags, and each side's compile times (median per case: the first worker, cold in every case, and the
    later ones, from the side's cache)."""
    c = p2_comparison(pattern)
    ok, kept, records = c["table"], c["kept"], [r for r in c["records"] if r["status"] == "ok"]
    assert all(r["compile_cache"][side][0] == "cold" for r in records for side in "AB")
    a_first = np.median([r["compile_a_s"][0] for r in records])
    b_first = np.median([r["compile_b_s"][0] for r in records])
    a_rest = np.median([x for r in records for x in r["compile_a_s"][1:]])
    b_rest = np.median([x for r in records for x in r["compile_b_s"][1:]])
    ratio = np.median([r["compile_b_s"][0] / r["compile_a_s"][0] for r in records])
    return (f"{len(kept)} of {len(ok)} cases flagged ({int((kept['ratio'] > 1).sum())} B slower, "
            f"{int((kept['ratio'] < 1).sum())} B faster), median B / A {np.exp(np.median(np.log(ok['ratio']))):.4f}, "
            f"median half-width {100 * np.median(ok['mdc']):.2f} %, the in-run control {c['control_flags']} false "
            f"flags in {len(c['control'])}; compilation, median per case: A {a_first:.2f} s cold, {a_rest:.2f} s "
            f"from its cache, B {b_first:.2f} s cold, {b_rest:.2f} s from its cache (B / A cold ×{ratio:.2f})")


def compiled_comparisons() -> Iterator[str]:
    re.sub(r"\s+", " ", README)
    for pattern in (COMPILED_AA, COMPILED_AB):
        yield compiled_ab_line(pattern)


COMPILED_MODEL = "models/compiled/model-torchvision-mobilenet_v2-inductor-*.jsonl"
EAGER_MODEL = "models/model-torchvision-mobilenet_v2-cpu-*.jsonl"


def compiled_model_line() -> str:
    """MobileNetV2 measured layer by layer compiled, beside the same network measured eagerly (another run of
    the same day): the network's time, what its conv sites add up to, the swaps' check, the compile times."""
    (path,) = committed(COMPILED_MODEL)
    header, sites, n = model_file(path)
    (eager_path,) = committed(EAGER_MODEL)
    _, eager_sites, eager = model_file(eager_path)
    assert n is not None and eager is not None and header["compile"] == "inductor"
    share = sum((s.get("median_s") or 0) * s["calls"] for s in sites) / n["as_is_s"]
    eager_share = sum((s.get("median_s") or 0) * s["calls"] for s in eager_sites) / eager["as_is_s"]
    assert abs(share - n["sites_s"] / n["as_is_s"]) < 1e-9
    gap = n["as_is_s"] / n["measured"] / n["predicted_s"]
    return (f"compiled, the network takes {n['as_is_s'] * 1e3:.1f} ms a call against {eager['as_is_s'] * 1e3:.1f} ms "
            f"eager; its conv sites, compiled one by one, add up to {100 * share:.0f} % of the compiled network's "
            f"time (eager: {100 * eager_share:.0f} %); with {len(n['swaps'])} swaps the network measures "
            f"{n['measured']:.2f}× [{n['low']:.2f}–{n['high']:.2f}] against a predicted "
            f"{n['as_is_s'] / n['predicted_s']:.2f}× (measured / predicted time {gap:.3f}); compiling it took "
            f"{n['compile_s']['as is']:.1f} s as it is and {n['compile_s']['swapped']:.1f} s swapped, with "
            f"{n['graph_breaks']} graph breaks")


def compiled_network() -> Iterator[str]:
    yield compiled_model_line()


def compiled_conditions() -> str:
    """How the VM behaved over the two compile runs: the reference probe's drift and the intervals left wider than
    the target, with their reasons."""
    parts = []
    for path in committed(COMPILED)[-2:]:
        lines = json_lines(path)
        (end,) = [x for x in lines if x["kind"] == "end"]
        realized = [x["realized"] for x in lines if x["kind"] == "case" and x.get("realized")]
        reasons = defaultdict(int)
        for r in realized:
            if r["unstable"]:
                reasons[r["reason"]] += 1
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
        parts.append(f"{sum(reasons.values())} of {len(realized)} ({why}) with the probe drifting "
                     f"{end['probe_drift']:.2f}×")
    return f"the variants whose interval stayed wider than ±3 %: {parts[0]} in the first run, {parts[1]} in the second"


def gpu_tf32() -> Iterator[str]:
    yield gpu_tf32_table()


FIGURES = [
    cpu_headline_table, two_thread_figures_and_unstable_counts, one_thread_efficiency_and_extremes,
    cudnn_benchmark_figures, two_consecutive_crosschecks_pass_as_the_readme_says,
    gpu_batch_one_and_network_figures, cpu_timer_agreement, cross_version_paragraph, ab_tables,
    stability_shares, shard_cost_table, heaviest_cpu_geometry, upgrade_answer_on_the_front_door,
    upgrade_across_builds, upgrade_like_for_like, upgrade_ahead, power_check,
    upgrade_behind_again, isa_comparison_and_its_two_runs, ab_rerun_agreement, protocol_findings, protocol_2_table,
    slow_spell_figure, estimator_choice_figures, attribution_findings,
    asv_versions_run_lasted_what_the_readme_says, front_door_rerun, main_command_resolution, busy_and_quiet_runs,
    rerun_agreement, stopping_coverage, contention_thresholds, main_command_time, test_suite_time, model_tables,
    separable_savings_and_the_written_out_networks, real_networks_figures, networks_across_the_upgrade,
    busy_model_run, compiled_figures, compiled_comparisons, compiled_network, gpu_tf32,
]
MARK = re.compile(r"<!-- fig:(?P<name>[\w.]+) -->(?P<body>.*?)<!-- /fig:(?P=name) -->", re.S)


def figures() -> dict[str, str]:
    """Every figure by name: a generator's one text under its own name, several as NAME.1, NAME.2, …"""
    found: dict[str, str] = {}
    for make in FIGURES:
        texts = list(dict.fromkeys(make()))
        for i, text in enumerate(texts, start=1):
            found[make.__name__ if len(texts) == 1 else f"{make.__name__}.{i}"] = text
    return found


def _placed(text: str, indent: str) -> str:
    """A figure as it sits between its markers: inline as it is, a block (a table) apart, blank lines
    around it and every line at the indent of its marker (a table inside a list item)."""
    if "\n" not in text:
        return text
    return "\n\n" + indent + text.replace("\n", "\n" + indent) + "\n\n" + indent


def render(page: str, found: dict[str, str]) -> tuple[str, set[str], list[str]]:
    """A page with every marked figure rewritten; the names it holds; the problems (a marker naming no
    figure, a figure that is stale)."""
    used: set[str] = set()
    problems: list[str] = []

    def put(m: re.Match[str]) -> str:
        name = m["name"]
        if name not in found:
            problems.append(f"marker fig:{name} names no figure")
            return m.group(0)
        used.add(name)
        start = page.rfind("\n", 0, m.start()) + 1
        indent = page[start:len(page) - len(page[start:].lstrip(" \t"))]
        placed = _placed(found[name], indent)
        if placed != m["body"]:
            problems.append(f"figure {name} is stale")
        return f"<!-- fig:{name} -->{placed}<!-- /fig:{name} -->"

    return MARK.sub(put, page), used, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The README's and docs' figures from the committed files.")
    parser.add_argument("--check", action="store_true", help="exit 1, naming them, when figures are stale")
    args = parser.parse_args(argv)
    found = figures()
    used: set[str] = set()
    problems = []
    for path in PAGES:
        page = path.read_text()
        new, names, found_problems = render(page, found)
        used |= names
        problems += [f"{path.relative_to(ROOT)}: {p}" for p in found_problems if args.check or "stale" not in p]
        if new != page and not args.check:
            path.write_text(new)
    problems += [f"figure {name} is on no page" for name in sorted(set(found) - used)]
    for line in problems:
        print(line, file=sys.stderr)
    if problems and args.check:
        print("run `python docs/figures.py` to write the figures from the committed files", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
