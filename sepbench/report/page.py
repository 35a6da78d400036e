"""The HTML report: a static page with its figures beside it, built from any number of results files
(machines, devices and PyTorch versions at once). It presents; every number on it comes from the
store through `analysis` and `versions`, and every figure is a PNG drawn by `plots`.
"""

from __future__ import annotations

import ctypes
import math
import multiprocessing as mp
import os
import shutil
import signal
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import jinja2
import pandas as pd

from sepbench import __version__
from sepbench.ab import stats as ab_stats
from sepbench.crosscheck import latest_pytest_benchmark_save
from sepbench.errors import SepbenchError
from sepbench.report import analysis, download, plots, summary, versions
from sepbench.report.tables import UNSTABLE_MARK, fmt_bytes, fmt_count, fmt_time, missing
from sepbench.store import Problem, ensure_writable, load, read_ab, results_files

# Section ids, in page order: the browser test checks each is there.
SECTIONS = ["summary", "overview", "grids", "theory-vs-realized", "roofline", "where-time-goes", "memory", "versions",
            "networks", "feature-maps", "harnesses", "method"]
PR_SET_PDEATHSIG = 1  # prctl(2)
TOP = 15  # rows in the largest-regressions table and panels in the trend plot


@dataclass
class Figure:
    """A figure on the page: its anchor, heading, image (relative to the page) and alt text."""

    id: str
    title: str
    src: str
    alt: str


@dataclass
class Built:
    index: Path
    records: int
    files: int
    environments: list[str]
    figures: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    damaged: list[str] = field(default_factory=list)  # problems that are not a torn last line
    page_bytes: int = 0  # what a reader's browser loads: the page and its figures
    data_bytes: int = 0  # the CSV downloads, fetched only on a click


def _ratio(x: float | None, digits: int = 2) -> str:
    return "–" if missing(x) else f"{x:.{digits}f}×"


def _interval(low: float | None, high: float | None) -> str:
    return "" if missing(low) else f"[{low:.2f}–{high:.2f}]"


def _percent(x: float | None) -> str:
    return "–" if missing(x) else f"{x:.0%}"


def _percent2(x: float | None) -> str:
    return "–" if missing(x) else f"{100 * x:.2f} %"


def _text(value: object) -> str:
    return "–" if missing(value) or value == "" else str(value)


def _environment(df: pd.DataFrame, ceilings: pd.DataFrame) -> pd.DataFrame:
    """One row per environment: its fingerprint, runs and ceilings (`analysis.ceilings`)."""
    rows = []
    for env, part in df.groupby("env", sort=True):
        first = part.iloc[0]
        peaks = ceilings[ceilings["env"] == env].set_index("ceiling")["peak_flops"]
        rows.append({
            "env": env, "cpu": _text(first["env_cpu"]), "gpu": _text(first["env_gpu"]),
            "onednn": _text(first["env_onednn"]),
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
            "policy": _text(first["run_thread_policy"]),
            "load": f"{_text(first['run_other_cores_start'])} → {_text(first['run_other_cores_end'])}",
            "retaken": _percent(first["run_retaken_share"]), "drift": _ratio(first["run_probe_drift"]),
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


def _pytest_benchmark(storage: Path | None) -> dict | None:
    """The latest pytest-benchmark save: machine, commit and one row per benchmark."""
    if storage is None:
        return None
    data, saves = latest_pytest_benchmark_save(storage)
    try:
        rows = [{"name": b["name"], "median": b["stats"]["median"], "iqr": b["stats"]["iqr"],
                 "rounds": b["stats"]["rounds"], **b.get("extra_info", {})} for b in data["benchmarks"]]
        info = data.get("machine_info", {})
        return {"saves": saves, "datetime": data.get("datetime", ""),
                "commit": (data.get("commit_info") or {}).get("id", "")[:12],
                "machine": f"{info.get('node', '?')} · {info.get('cpu', {}).get('brand_raw', '?')} · "
                           f"Python {info.get('python_version', '?')}",
                "rows": rows}
    except (KeyError, TypeError, AttributeError) as exc:
        raise SepbenchError(f"the latest pytest-benchmark save under {storage} is not one this sepbench reads "
                            f"({type(exc).__name__}: {exc})") from None


def _ab_comparisons(paths: list[Path]) -> tuple[list[dict], list[Problem]]:
    """Every `sepbench ab` comparison file under the paths: its sides, settings, per-case table and
    summary; real comparisons first, then the A/A and injected calibrations. And what was left out of
    them, by path and line, so that a damaged line is named and never silently drops a case."""
    files, _ = results_files(paths, kind="ab")  # unreadable folders: already named by `load`
    found, problems = [], []
    for path in files:
        try:
            ab = read_ab(path)
        except SepbenchError as exc:
            problems.append(Problem(path, 1, str(exc)))
            continue
        problems += ab.problems
        if ab.header is None or not ab.records:
            continue
        h = ab.header
        table = ab_stats.case_table(ab.records)
        kind = ("A/A + injected " + f"{100 * h.inject:g} %") if h.inject else ("A/A" if h.aa else "A/B")
        a, b = h.a.environment, h.b.environment
        title = f"{kind}: torch {b['torch']} (B) / {a['torch']} (A), {a['machine']} · {a['device']} · {h.threads} thr"
        found.append({"kind": kind, "title": title, "header": h, "file": path.name, "table": table,
                      "summary": ab_stats.summarize(table), "flagged": table[table["verdict"].isin(
                          ["B slower", "B faster"])].sort_values("q").head(TOP),
                      "lacking": table[table["status"] != "ok"], "calibration": h.aa})
    return sorted(found, key=lambda c: (c["calibration"], c["header"].started)), problems


def _die_with_parent() -> None:
    """A drawing worker ends when the build that forked it ends, however it ends (kill -9 included):
    Linux delivers SIGKILL to the worker when its parent dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the pool's own shutdown is what remains
        return
    if os.getppid() == 1:  # the parent died before the line above took effect
        os._exit(1)


def _draw(jobs: list[partial[Path]]) -> list[Path]:
    """Run the drawing jobs (each `draw(*data, path)`), in forked processes where the platform can
    fork: matplotlib draws on one core, and a report has a dozen or more figures."""
    workers = min(len(jobs), os.cpu_count() or 1)
    if workers < 2 or "fork" not in mp.get_all_start_methods():
        return [job() for job in jobs]
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"), initializer=_die_with_parent) as pool:
        return list(pool.map(_run, jobs))


def _run(job: partial[Path]) -> Path:
    return job()


def _remove_unnamed_folders(out: Path, current: str) -> None:
    """Figure folders of earlier builds (and of interrupted ones), and the old single `img/`."""
    for stale in [*out.glob("img-*"), *out.glob(".img-*"), out / "img", *out.glob(".index-*.html")]:
        if stale.name == current:
            continue
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


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


def incomplete_shards(paths: list[Path]) -> list[str]:
    """What the sharded runs among `paths` lack or hold twice (`sepbench merge`'s check), one line each:
    a page built from shards names a failed or missing shard rather than showing fewer cases."""
    from sepbench.merge import check

    coverage, _ = check(paths, sharded_only=True)
    return [line for c in coverage for line in c.problems()]


def build(paths: list[Path], out: Path, *, pytest_benchmark: Path | None = None, asv_url: str | None = None,
          step: Callable[[str], None] = lambda _: None) -> Built:
    """Load, derive, draw and render. Returns where the page is and what went into it. A build that
    cannot write (a full disk, a folder gone) leaves the page as it was and nothing of its own."""
    # This build's own figure folder: a name no other build, earlier or concurrent, can have.
    folder = f"img-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        return _build(paths, out, folder, pytest_benchmark=pytest_benchmark, asv_url=asv_url, step=step)
    except BaseException as exc:
        # What this build drew or staged; the page in place names none of it.
        for part in [Path(out) / folder, Path(out) / f".index-{os.getpid()}.html"]:
            if part.is_dir():
                shutil.rmtree(part, ignore_errors=True)
            else:
                part.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            why = exc.strerror or str(exc)
            raise SepbenchError(f"cannot write the report in {out}: {why}; the page there is unchanged") from None
        raise


def _build(paths: list[Path], out: Path, folder: str, *, pytest_benchmark: Path | None, asv_url: str | None,
           step: Callable[[str], None]) -> Built:
    started = time.perf_counter()
    step("loading results")
    raw, problems = load(paths)
    if raw.empty:
        raise SepbenchError(f"no result records in {', '.join(map(str, paths))}")
    df = analysis.prepare(raw)
    if analysis.variants(df).empty:
        raise SepbenchError(f"no variant measured beside its baseline in {len(df)} records: a report compares "
                            "variants with their baselines, so it needs at least one such pair")
    out = ensure_writable(Path(out))
    # Each build draws into a folder of its own that the new page names. Swapping the page in is one
    # rename, so at every moment index.html points at a whole set of figures: the old page at the
    # old folder, or the new page at the new one. Folders no page names are removed afterwards.
    img = ensure_writable(out / folder)
    jobs: list[partial[Path]] = []

    def figure(name: str, draw: Callable[..., Path], *args: object, title: str = "", alt: str = "") -> Figure:
        """Plan a figure: `draw(*args, path)` runs later, with the others, in parallel."""
        jobs.append(partial(draw, *args, img / f"{name}.png"))
        return Figure(f"fig-{name}", title or name.replace("-", " "), f"{folder}/{name}.png", alt or title or name)

    step("deriving")
    envs = sorted(df["env"].unique())
    comparisons, ab_problems = _ab_comparisons(paths)
    problems = [*problems, *ab_problems]
    columns, common = summary.common_cases(df)
    answer = summary.summary_table(common)
    findings = summary.findings(df, columns, common, comparisons)
    summary_plot = figure("summary", plots.summary_dots, answer, [c.env for c in columns],
                          title="Theoretical against realized speedup, same cases on every device",
                          alt="theoretical and realized speedup per variant, per device class") if len(answer) else None
    channel_rows = _with_baselines(df, common)
    channels_plot = figure("time-vs-channels", plots.time_vs_channels, channel_rows, [c.env for c in columns],
                           title="Time per step against channels, per device",
                           alt="median time per step against input channels, log-log, per device and input size") \
        if len(channel_rows) else None
    overview = analysis.summary(df, ["env", "setting", "label"])
    settings = {}
    for env in envs:
        pivot = analysis.settings_pivot(df, env)
        if pivot.shape[0] > 2:  # several settings measured here (a GPU run over its axes)
            title = f"{env}: realized × per setting (geometric mean over geometries)"
            settings[env] = figure(f"settings-{len(settings)}", plots.settings_heatmap, pivot, title, title=title)
    grids, theory_drawn = [], {}
    for i, (env, setting, part) in enumerate(analysis.grids(df)):
        # Theory depends on the geometry alone: drawn in the first figure of each set of geometries.
        shape = (setting.split(" · ", 1)[-1], frozenset(zip(part["label"], part["c_in"], part["size"], strict=True)))
        first = theory_drawn.setdefault(shape, f"fig-grid-{i}")
        own = first == f"fig-grid-{i}"
        title = f"{env} · {setting}"
        grids.append((figure(f"grid-{i}", plots.grid_heatmaps, part, title, own, title=title), None if own else first))

    layer_variants = analysis.variants(df)
    layer_variants = layer_variants[layer_variants["family"] != "network"]
    scatter = figure("theory-vs-realized", plots.speedup_scatter, layer_variants,
                     title="Every layer case: theoretical against realized") if len(layer_variants) else None
    slower = analysis.slower_than_baseline(df)

    points, ceilings = analysis.roofline_points(df), analysis.ceilings(df)
    roofline = figure("roofline", plots.roofline, points, ceilings, title="Roofline per environment") \
        if len(points) else None
    roofline_share = figure("roofline-share", plots.roofline_share, points,
                            title="Share of the roofline bound reached") if len(points) else None
    share = points.groupby(["env", "label"], as_index=False)["roofline_share"].median() \
        .pivot(index="label", columns="env", values="roofline_share") if len(points) else pd.DataFrame()

    shares = analysis.stage_shares(analysis.stages(df))
    stage_plots = [(env, mode, figure(f"stages-{i}", plots.stage_shares, shares, env, mode,
                                      title=f"Time and FLOP share per stage: {env} · {mode}"))
                   for i, (env, mode) in enumerate(shares[["env", "mode"]].drop_duplicates().itertuples(index=False))] \
        if len(shares) else []
    comp = analysis.composition(df)

    mem_rows = analysis.ok(df)
    mem_rows = mem_rows[mem_rows["measured_memory_bytes"].notna()]
    mem_rows = mem_rows.assign(memory_method=mem_rows["measured_memory_method"] + "\n" + mem_rows["env"])
    memory_methods = sorted(set(zip(mem_rows["device"], mem_rows["measured_memory_method"], strict=True)))
    memory = figure("memory", plots.memory, mem_rows, title="Theoretical against measured memory") \
        if len(mem_rows) else None

    cmp = versions.compare_versions(df)
    if not cmp.empty:
        cmp = cmp.assign(abs_log=cmp["ratio"].map(lambda r: abs(math.log(r)))).sort_values("abs_log", ascending=False)
    flagged = cmp[cmp["verdict"].isin(["regression", "improvement"])] if not cmp.empty else cmp
    version_plot = figure("versions", plots.version_ratios, cmp, title="Time ratio per case between versions") \
        if not cmp.empty else None
    # The trend of the largest flagged changes, or of the largest ratios when none is flagged.
    trend_plot = figure("trends", plots.trends, versions.trend(df, (flagged if len(flagged) else cmp).head(12)),
                        title="Trend per case") if not cmp.empty else None

    for i, c in enumerate(comparisons):
        c["plot"] = figure(f"ab-{i}", plots.ab_ratios, c["table"], c["title"], title=c["title"])

    net = analysis.networks(df)
    networks = figure("networks", plots.networks, net, title="Networks against their full-conv twins") \
        if len(net) else None

    step("writing the data files")
    records_csv, columns_csv = download.write(df, img / "data")

    step(f"drawing {len(jobs)} figures")
    figures = _draw(jobs)
    step("computing feature maps")
    from sepbench.report import featuremaps  # torch, imported only after the drawing processes have forked

    maps = featuremaps.stage_outputs()
    feature_plot = Figure("fig-feature-maps", "Feature maps per stage", f"{folder}/feature-maps.png",
                          f"channel-mean and per-channel feature maps of {', '.join(maps)}")
    figures.append(plots.feature_maps(maps, img / "feature-maps.png"))

    step("rendering")
    env = jinja2.Environment(loader=jinja2.PackageLoader("sepbench.report", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(ratio=_ratio, interval=_interval, percent=_percent, percent2=_percent2, time=fmt_time,
                       bytes=fmt_bytes, count=fmt_count)
    html = env.get_template("report.html.j2").render(
        answer=answer, columns=columns, findings=findings, summary_plot=summary_plot, channels_plot=channels_plot,
        shared=bool(len(common)) and bool(common["shared"].iloc[0]),
        data={"records": f"{folder}/data/{records_csv.name}", "columns": f"{folder}/data/{columns_csv.name}"},
        dictionary=[(c, *download.COLUMNS[c]) for c in download.COLUMNS if c in df],
        version=__version__, generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        unstable_mark=UNSTABLE_MARK, sections=SECTIONS, envs=envs, environment=_environment(df, ceilings),
        conditions=_conditions(df),
        overview=overview, settings=settings, grids=grids, scatter=scatter, slower=slower,
        roofline=roofline, roofline_share=roofline_share, share=share, memory=memory,
        stage_plots=stage_plots, bottlenecks=analysis.bottlenecks(df), sums=analysis.attribution_sums(df),
        composition=analysis.composition_summary(comp), busy=analysis.device_busy(df),
        sum_tolerance=analysis.SUM_TOLERANCE, composition_tolerance=analysis.COMPOSITION_TOLERANCE,
        memory_methods=memory_methods, nvml=_nvml(df),
        comparisons=comparisons, ab_fdr=ab_stats.FDR,
        cmp=cmp, version_summary=versions.summarize(cmp) if len(cmp) else cmp, version_runs=versions.runs(
            df[df.set_index(versions.GROUP).index.isin(cmp.set_index(versions.KEYS).index)])
        if len(cmp) else cmp,
        top=flagged.head(TOP), flagged=flagged, version_plot=version_plot, trend_plot=trend_plot,
        fdr=versions.FDR, prior_df=versions.PRIOR_DF, confidence=versions.CONFIDENCE, net=net, networks=networks,
        feature_plot=feature_plot,
        maps=list(maps), pb=_pytest_benchmark(pytest_benchmark), asv_url=asv_url,
        problems=[str(p) for p in problems], records=len(df), files=df["file"].nunique(),
        incomplete=incomplete_shards(paths),
    )
    index = out / "index.html"
    tmp = out / f".index-{os.getpid()}.html"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(html)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, index)  # the swap: a reader, or a kill, never sees half a page or missing figures
    _remove_unnamed_folders(out, folder)
    figures = [img / f.name for f in figures]
    return Built(index, len(df), df["file"].nunique(), envs, figures, [str(p) for p in problems],
                 time.perf_counter() - started, [str(p) for p in problems if not p.torn_tail],
                 page_bytes=index.stat().st_size + sum(f.stat().st_size for f in figures),
                 data_bytes=records_csv.stat().st_size + columns_csv.stat().st_size)
