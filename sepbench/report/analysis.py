"""Derived views of a results table for the report: environments, variants against their baseline,
per-variant summaries, grids and the roofline. Pure pandas on what `store.load` returns; theory and
measurement stay in separately named columns all the way to the page.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from sepbench.upgrade import HEAP_DEFAULTS

# The measured peak rise per device, and the record field that names how it was measured.
MEASURED_MEMORY = {"cpu": ("memory_cpu_rss_rise_bytes", "memory_cpu_method"),
                   "cuda": ("memory_cuda_alloc_peak_bytes", "memory_cuda_alloc_method")}


def prepare(df: pd.DataFrame) -> pd.DataFrame:
    """Add the environment, memory and baseline-relative columns every view reads.

    An environment is machine × device × PyTorch × intra-op threads × settings (`DNNL_MAX_CPU_ISA` and
    the like, when any was set): the unit a number belongs to.
    """
    df = df.copy()
    threads = df["timing_threads"] if "timing_threads" in df else pd.Series(np.nan, index=df.index)
    df["threads"] = threads.fillna(df["env_threads"]).astype("Int64")
    df["env"] = (df["env_machine"] + " · " + df["device"] + " · torch " + df["env_torch"] + " · "
                 + df["threads"].astype(str) + " thr")
    df["env_settings"] = df["env_settings"].fillna("") if "env_settings" in df else ""
    df["env"] = df["env"].where(df["env_settings"] == "", df["env"] + " · " + df["env_settings"])
    df["is_baseline"] = df["case_id"] == df["group_id"]
    # The allocator's defaults, however a run named them (unrecorded, or asked for with SEPBENCH_HEAP), as one.
    heap = df["env_heap"].fillna(HEAP_DEFAULTS) if "env_heap" in df else pd.Series(HEAP_DEFAULTS, index=df.index)
    df["env_heap"] = heap.where(~heap.str.startswith(HEAP_DEFAULTS), HEAP_DEFAULTS)
    df["measured_memory_bytes"] = np.nan
    df["measured_memory_method"] = None
    for device, (column, method) in MEASURED_MEMORY.items():
        if column in df:
            mask = df["device"] == device
            df.loc[mask, "measured_memory_bytes"] = pd.to_numeric(df.loc[mask, column], errors="coerce")
            df.loc[mask, "measured_memory_method"] = df.loc[mask, method]
    # What the measured rise can hold: activations (training: + the input's and weights' gradients);
    # the weights and input already exist when the baseline is taken.
    df["theory_rise_bytes"] = df["theory_activation_bytes"] + np.where(
        df["mode"] == "train", df["theory_weight_bytes"], 0)
    df["realized_unstable"] = df["realized_unstable"].fillna(False).astype(bool)
    if "timing_median_s" in df:
        df["achieved_flops"] = df["theory_flops_step"] / df["timing_median_s"]
        df["roofline_share"] = df["theory_roofline_s"] / df["timing_median_s"]
    base = df[df["is_baseline"]].set_index(["run_id", "case_id"])
    key = pd.MultiIndex.from_arrays([df["run_id"], df["group_id"]])
    base_mem = base["measured_memory_bytes"].reindex(key).to_numpy()
    df["theory_memory_saving"] = 1 / df["theory_memory_ratio"]
    df["measured_memory_saving"] = base_mem / df["measured_memory_bytes"].to_numpy()
    return df


def ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"]


def variants(df: pd.DataFrame) -> pd.DataFrame:
    """Measured rows of the variants (their baseline rows dropped: those are the 1.0 they are
    divided by)."""
    rows = ok(df)
    return rows[~rows["is_baseline"] & rows["realized_speedup"].notna()]


def geomean(x: pd.Series) -> float:
    x = pd.to_numeric(x, errors="coerce").dropna()
    x = x[x > 0]
    return float(np.exp(np.log(x).mean())) if len(x) else np.nan


def _geomean_interval(x: pd.Series, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap interval of the geometric mean over cases: how much the summary depends on
    which geometries the grid holds."""
    logs = np.log(pd.to_numeric(x, errors="coerce").dropna().to_numpy())
    if len(logs) < 3 or np.ptp(logs) == 0:
        return np.nan, np.nan
    rng = np.random.default_rng(seed)
    means = rng.choice(logs, size=(2000, len(logs)), replace=True).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(np.exp(low)), float(np.exp(high))


def summary(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group of variant rows: geometric means of the three speedups, efficiency and memory
    savings, and how many cases ran slower than their baseline."""
    rows = []
    for key, part in variants(df).groupby(by, sort=True, dropna=False):
        low, high = _geomean_interval(part["realized_speedup"])
        theory, realized = geomean(part["theory_speedup"]), geomean(part["realized_speedup"])
        rows.append({
            **dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)),
            "cases": len(part),
            "theory": theory,
            "roofline": geomean(part["theory_roofline_speedup"]),
            "realized": realized, "realized_low": low, "realized_high": high,
            "efficiency": realized / theory,
            "slower": int((part["realized_speedup"] < 1).sum()),
            "unstable": int(part["realized_unstable"].sum()),
            "memory_theory": geomean(part["theory_memory_saving"]),
            "memory_measured": geomean(part["measured_memory_saving"]),
        })
    return pd.DataFrame(rows)


def like_with_like(df: pd.DataFrame, overview: pd.DataFrame) -> pd.DataFrame:
    """The overview's rows with, where one machine, device, thread count and settings ran several PyTorch
    versions, the realized × over the cases every one of them measured (`shared_cases`, `shared_realized`;
    a case measured in several runs counts once, at its median): rows of different versions compare like
    with like only there, since each version's own row covers whatever cases its runs measured."""
    v = variants(df)
    out = overview.assign(shared_cases=0, shared_realized=np.nan, versions=1)
    if v.empty:
        return out
    v = v.assign(place=[e.replace(f" · torch {t}", "") for e, t in zip(v["env"], v["env_torch"], strict=True)])
    per_case = v.groupby(["place", "env", "env_torch", "setting", "label", "geometry"], as_index=False)[
        "realized_speedup"].median()
    for (_, setting, label), part in per_case.groupby(["place", "setting", "label"]):
        if part["env_torch"].nunique() < 2:
            continue
        shared = set.intersection(*(set(g["geometry"]) for _, g in part.groupby("env_torch")))
        for env, g in part[part["geometry"].isin(shared)].groupby("env"):
            row = (out["env"] == env) & (out["setting"] == setting) & (out["label"] == label)
            out.loc[row, ["shared_cases", "shared_realized", "versions"]] = (
                len(g), geomean(g["realized_speedup"]), part["env_torch"].nunique())
    return out


def slower_than_baseline(df: pd.DataFrame) -> pd.DataFrame:
    """Variant cases that are cheaper in theory but measured slower than their baseline; `sure`
    when the whole 95 % interval lies below 1."""
    v = variants(df)
    slow = v[(v["theory_speedup"] > 1) & (v["realized_speedup"] < 1)].copy()
    slow["sure"] = slow["realized_high"] < 1
    return slow.sort_values(["env", "realized_speedup"])


SHAPE_AXES = ["kernel", "stride", "dilation", "padding", "bias", "act"]  # geometry besides channels and size


def grids(df: pd.DataFrame, min_axis: int = 2, min_cells: int = 4) -> list[tuple[str, str, pd.DataFrame]]:
    """(env, title, rows) for every environment, setting and layer shape (kernel, stride, …) measured
    over a channel × size grid (at least `min_axis` values on each axis and `min_cells` geometries);
    layer variants only, c_out = c_in."""
    layer = variants(df)
    layer = layer[(layer["family"] != "network") & (layer["c_out"] == layer["c_in"])]
    out = []
    for (env, setting, *shape), part in layer.groupby(["env", "setting", *SHAPE_AXES], sort=True):
        cells = part.groupby(["c_in", "size"]).ngroups
        if part["c_in"].nunique() >= min_axis and part["size"].nunique() >= min_axis and cells >= min_cells:
            k, stride, dilation, padding, bias, act = shape
            extra = "".join([f" s{stride}" if stride != 1 else "", f" d{dilation}" if dilation != 1 else "",
                             " valid" if padding == "valid" else "", " +bias" if bias else "",
                             f" {act}" if act != "none" else ""])
            out.append((env, f"{setting} · k{k}{extra}", part))
    return out


def settings_pivot(df: pd.DataFrame, env: str) -> pd.DataFrame:
    """Realized speedup per setting (rows, with how many geometries each holds) × layer variant,
    geometric mean over the geometries measured in that setting, for one environment."""
    part = variants(df)
    part = part[(part["env"] == env) & (part["family"] != "network")]
    geometries = part.groupby("setting")["group_id"].nunique()
    pivot = part.pivot_table(index="setting", columns="label", values="realized_speedup", aggfunc=geomean)
    pivot.index = [f"{s} ({geometries[s]} geometr{'y' if geometries[s] == 1 else 'ies'})" for s in pivot.index]
    return pivot


def networks(df: pd.DataFrame) -> pd.DataFrame:
    """Each network (α, ρ) against its full-convolution twin."""
    v = variants(df)
    return v[v["family"] == "network"].sort_values(["env", "variant", "mode", "alpha", "size"],
                                                   ascending=[True, True, True, False, False])


def roofline_points(df: pd.DataFrame) -> pd.DataFrame:
    """Every measured case (baselines included) with its achieved FLOP/s, intensity and the share
    of its roofline bound reached."""
    rows = ok(df)
    return rows[rows["achieved_flops"].notna() & rows["peak_bandwidth"].notna()]


def ceilings(df: pd.DataFrame) -> pd.DataFrame:
    """The measured ceilings per environment and compute-ceiling key, as recorded by the runs (the
    best run's figure where several ran)."""
    return ok(df).groupby(["env", "ceiling"], as_index=False).agg(
        peak_flops=("peak_flops", "max"), peak_bandwidth=("peak_bandwidth", "max"))


# ----------------------------------------------------------------------------------------------
# Where the time goes: the records' stage attribution, and the composition check.

COMPOSITION_TOLERANCE = 0.15  # a composite within ±15 % of the sum of its stage variants "composes"
SUM_TOLERANCE = 0.10  # the parts of a profiled step within ±10 % of the timer's median


def stage_role(name: str) -> str:
    """A stage's name without its block prefix, so a network's stages pool by role: 'b3_dw' → 'dw',
    'b5.body.project' → 'project', 'b2.se.fc1' → 'se.fc1'."""
    parts = [p for p in name.split(".") if not re.fullmatch(r"b\d+|body", p)]
    return re.sub(r"^b\d+_", "", ".".join(parts)) or name


def stages(df: pd.DataFrame) -> pd.DataFrame:
    """One row per stage or named overhead of every attributed case: its time share of the step and
    (stages) its FLOP share."""
    if "attribution_json" not in df:
        return pd.DataFrame(columns=["env", "setting", "label", "mode", "case_id", "part", "overhead", "time_share",
                                     "flop_share", "seconds"])
    rows = []
    for _, r in ok(df)[df["attribution_json"].notna()].iterrows():
        a = json.loads(r["attribution_json"])
        total = a["total_s"] or 1.0
        flops = r["theory_flops_step"] or 0
        base = {"env": r["env"], "label": r["label"], "mode": r["mode"], "case_id": r["case_id"],
                "family": r["family"], "setting": r["setting"], "batch": r["batch"]}
        pooled: dict[str, list[float]] = {}
        for s in a["stages"]:
            part = pooled.setdefault(stage_role(s["name"]), [0.0, 0.0])
            part[0] += s["seconds"]
            part[1] += s["flops"]
        for role, (seconds, stage_flops) in pooled.items():
            rows.append({**base, "part": role, "overhead": False, "seconds": seconds, "time_share": seconds / total,
                         "flop_share": stage_flops / flops if flops else np.nan})
        for part, seconds in a["overheads"].items():
            rows.append({**base, "part": part, "overhead": True, "seconds": seconds, "time_share": seconds / total,
                         "flop_share": 0.0})
    return pd.DataFrame(rows)


STAGE_KEY = ["env", "setting", "mode", "label"]  # what one stage figure's bar, and one bottleneck row, stands for


def stage_shares(st: pd.DataFrame) -> pd.DataFrame:
    """Per environment, setting and variant: each part's median share of the step's time and of its FLOPs
    over the attributed cases, a case measured in several runs counted once at its own median (a part a
    case lacks counts 0 there). The bottleneck table reads its shares from here: one aggregate, two views."""
    if st.empty:
        return pd.DataFrame(columns=[*STAGE_KEY, "part", "overhead", "time_share", "flop_share", "cases"])
    per_case = st.groupby([*STAGE_KEY, "case_id", "part", "overhead"], as_index=False)[
        ["time_share", "flop_share"]].median()
    out = []
    for key, part in per_case.groupby(STAGE_KEY, sort=True):
        wide = part.pivot_table(index="case_id", columns=["part", "overhead"], values=["time_share", "flop_share"],
                                aggfunc="first").fillna(0.0)
        medians = wide.median()
        for name, overhead in wide["time_share"].columns:
            out.append({**dict(zip(STAGE_KEY, key, strict=True)), "part": name, "overhead": overhead,
                        "time_share": float(medians[("time_share", name, overhead)]),
                        "flop_share": float(medians[("flop_share", name, overhead)]), "cases": len(wide)})
    return pd.DataFrame(out)


def bottlenecks(df: pd.DataFrame) -> pd.DataFrame:
    """Per environment, setting and variant: the stage that is most often the bottleneck (each case's own,
    the most frequent over its runs), in how many cases, and its median shares of time and FLOPs from
    `stage_shares`: the same numbers the stage figure draws."""
    if "attribution_bottleneck" not in df:
        return pd.DataFrame()
    rows = ok(df)[df["attribution_bottleneck"].notna()].assign(
        stage=lambda d: d["attribution_bottleneck"].map(stage_role))
    if rows.empty:
        return pd.DataFrame()
    shares = stage_shares(stages(rows)).set_index([*STAGE_KEY, "part"])
    out = []
    for key, part in rows.groupby(STAGE_KEY):
        per_case = part.groupby("case_id")["stage"].agg(lambda s: s.value_counts().index[0])
        top = per_case.value_counts()
        share = shares.loc[tuple([*key, top.index[0]])]
        out.append({**dict(zip(STAGE_KEY, key, strict=True)), "stage": top.index[0], "cases": len(per_case),
                    "times": int(top.iloc[0]), "time_share": float(share["time_share"]),
                    "flop_share": float(share["flop_share"])})
    return pd.DataFrame(out)


def attribution_sums(df: pd.DataFrame) -> pd.DataFrame:
    """Per environment: how close the profiled parts come to the timer's median, case by case."""
    if "attribution_total_s" not in df:
        return pd.DataFrame()
    rows = ok(df)[df["attribution_total_s"].notna()]
    rel = rows["attribution_total_s"] / rows["timing_median_s"] - 1
    rows = rows.assign(rel=rel)
    return rows.groupby("env", as_index=False).agg(
        cases=("rel", "size"), within=("rel", lambda r: float((r.abs() <= SUM_TOLERANCE).mean())),
        median=("rel", "median"), q1=("rel", lambda r: r.quantile(0.25)), q3=("rel", lambda r: r.quantile(0.75)))


# A composite variant and the variants of its group that are its stages, one after the other.
COMPOSITES = {"depthwise_separable": ("depthwise", "pointwise")}


def composition(df: pd.DataFrame) -> pd.DataFrame:
    """Each composite case's measured median against the sum of its stage variants' medians from the
    same run and group: measured / predicted, 1 when the stages compose with nothing lost or gained."""
    rows = ok(df)
    rows = rows[rows["timing_median_s"].notna()]
    median = rows.set_index(["run_id", "group_id", "variant"])["timing_median_s"]
    median = median[~median.index.duplicated()]
    out = []
    for composite, parts in COMPOSITES.items():
        for _, r in rows[rows["variant"] == composite].iterrows():
            keys = [(r["run_id"], r["group_id"], p) for p in parts]
            if all(k in median.index for k in keys):
                predicted = float(sum(median[k] for k in keys))
                out.append({"env": r["env"], "file": r["file"], "label": r["label"], "mode": r["mode"],
                            "geometry": r["geometry"], "setting": r["setting"], "measured_s": r["timing_median_s"],
                            "predicted_s": predicted, "ratio": r["timing_median_s"] / predicted})
    return pd.DataFrame(out)


def composition_summary(comp: pd.DataFrame) -> pd.DataFrame:
    if comp.empty:
        return comp
    return comp.groupby(["env", "mode"], as_index=False).agg(
        cases=("ratio", "size"),
        within=("ratio", lambda r: float(((r - 1).abs() <= COMPOSITION_TOLERANCE).mean())),
        median=("ratio", "median"), low=("ratio", "min"), high=("ratio", "max"))


def device_busy(df: pd.DataFrame) -> pd.DataFrame:
    """CUDA: the share of each profiled step during which a kernel ran, per environment and batch."""
    if "attribution_busy_s" not in df:
        return pd.DataFrame()
    rows = ok(df)[df["attribution_busy_s"].notna()]
    rows = rows.assign(busy=rows["attribution_busy_s"] / rows["attribution_wall_s"])
    return rows.groupby(["env", "batch"], as_index=False).agg(cases=("busy", "size"), busy=("busy", "median"),
                                                              low=("busy", "min"), high=("busy", "max"))


def eager_twin(case_id: pd.Series) -> pd.Series:
    """The id of each case run eagerly: a compiled case's id ends in its `compile` field, an eager one's has none."""
    return case_id.str.replace(r"\|compile=[^|]+$", "", regex=True)


def compiled(df: pd.DataFrame) -> pd.DataFrame:
    """Per environment, setting (the compile mode aside), compile mode and variant, over the geometries
    measured both ways in one run: realized × eager and compiled (geometric means; each against its own
    baseline: the fused step against the fused baseline), eager ÷ compiled time of the variant itself
    (timed in the same rounds), and what compiling took (median first compilation, its cache, median
    compilation from the cache)."""
    rows = ok(df)
    if "compile" not in rows or not (rows["compile"].fillna("eager") != "eager").any():
        return pd.DataFrame()
    rows = rows.assign(compile=rows["compile"].fillna("eager"), twin=eager_twin(rows["case_id"]))
    made = rows[rows["compile"] != "eager"]
    eager = rows[rows["compile"] == "eager"].set_index(["run_id", "case_id"])
    made = made.assign(base_setting=[st.removesuffix(f" {how}") for st, how in zip(made["setting"], made["compile"],
                                                                                     strict=True)])
    out = []
    for (env, how, setting, mode, label), sub in made.groupby(["env", "compile", "base_setting", "mode", "label"],
                                                              sort=True):
        twins = eager.reindex(pd.MultiIndex.from_arrays([sub["run_id"], sub["twin"]]))
        out.append({
            "env": env, "compile": how, "setting": setting, "mode": mode, "label": label, "cases": len(sub),
            "baseline": bool(sub["is_baseline"].all()),
            "eager": geomean(twins["realized_speedup"]), "compiled": geomean(sub["realized_speedup"]),
            "vs_eager": geomean(sub["vs_eager_ratio"]),
            "vs_eager_low": geomean(sub["vs_eager_low"]), "vs_eager_high": geomean(sub["vs_eager_high"]),
            "faster": int((sub["vs_eager_low"] > 1).sum()), "slower": int((sub["vs_eager_high"] < 1).sum()),
            "first_s": float(sub["compilation_first_s"].median()),
            "cached_s": float(sub["compilation_cached_s"].median()),
            "cold": bool((sub["compilation_cache"] == "cold").all()),
            "file": ", ".join(sorted({Path(f).name for f in sub["file"]})),
        })
    return pd.DataFrame(out)


def compile_finding(table: pd.DataFrame) -> list[str]:
    """Per environment and compile mode, one sentence: does compiling change the answer here? It does when a
    variant's realized × crosses 1× or moves by more than a tenth, or the fastest variant changes."""
    found = []
    for (env, how), part in table.groupby(["env", "compile"], sort=True):
        layers = part[~part["baseline"]]
        if layers.empty:
            continue
        moved = layers[((layers["eager"] > 1) != (layers["compiled"] > 1))
                       | ((layers["compiled"] / layers["eager"] - 1).abs() > 0.10)]
        best_e = layers.loc[layers.groupby("mode")["eager"].idxmax()].set_index("mode")["label"]
        best_c = layers.loc[layers.groupby("mode")["compiled"].idxmax()].set_index("mode")["label"]
        changed_best = [m for m in best_e.index if best_c.get(m) != best_e[m]]
        faster, slower, cases = int(part["faster"].sum()), int(part["slower"].sum()), int(part["cases"].sum())
        steps = (f"compiling made {faster} of {cases} steps surely faster than eager and {slower} surely slower "
                 f"(median eager ÷ compiled ×{part['vs_eager'].median():.2f}; first compilation "
                 f"{part['first_s'].median():.1f} s a case, {part['cached_s'].median():.2f} s from the cache)")
        if moved.empty and not changed_best:
            found.append(f"{env}, {how}: compiling leaves the answer as it is: every variant's realized × stays "
                         f"within a tenth of eager's, on the same side of 1×; {steps}.")
            continue
        worst = moved.assign(shift=(moved["compiled"] / moved["eager"]).map(lambda r: abs(np.log(r)))) \
            .sort_values("shift", ascending=False).head(3)
        examples = ", ".join(f"{r.label} ({r.mode}) {r.eager:.2f}× eager → {r.compiled:.2f}× compiled"
                             for r in worst.itertuples())
        best = "; the fastest variant changes in " + ", ".join(
            f"{m} ({best_e[m]} → {best_c[m]})" for m in changed_best) if changed_best else ""
        found.append(f"{env}, {how}: compiling changes the answer: {examples}{best}; {steps}.")
    return found
