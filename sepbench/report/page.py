"""The HTML report: a static page with its figures beside it, built from any number of results files
(machines, devices and PyTorch versions at once). It presents; every number on it comes from the
store through `analysis` and `versions`, and every figure is an image drawn by `plots`.

`build` only orchestrates: it loads, lets each section plan its data and figures (`sections`), draws
them all at once (`drawing`), renders the template, and swaps the page in.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import jinja2

from sepbench import __version__
from sepbench.crosscheck import latest_pytest_benchmark_save
from sepbench.errors import SepbenchError
from sepbench.report import analysis, download, drawing, modelruns, plots, sections
from sepbench.report import comparisons as ab_files
from sepbench.report.tables import UNSTABLE_MARK, fmt_bytes, fmt_count, fmt_time
from sepbench.store import Problem, ensure_writable, load

# Section ids, in page order: the browser test checks each is there.
SECTIONS = ["summary", "overview", "grids", "theory-vs-realized", "roofline", "where-time-goes", "memory", "compiled",
            "versions",
            "networks", "models", "feature-maps", "harnesses", "method"]


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


def _remove_unnamed_folders(out: Path, current: str) -> None:
    """Figure folders of earlier builds (and of interrupted ones), and the old single `img/`."""
    for stale in [*out.glob("img-*"), *out.glob(".img-*"), out / "img", *out.glob(".index-*.html")]:
        if stale.name == current:
            continue
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def incomplete_shards(paths: list[Path]) -> list[str]:
    """What the sharded runs among `paths` lack or hold twice (`sepbench merge`'s check), one line each:
    a page built from shards names a failed or missing shard rather than showing fewer cases."""
    from sepbench.merge import coverage as grid_coverage

    coverage, _ = grid_coverage(paths, sharded_only=True)
    return [line for c in coverage for line in c.problems()]


def _data_notes(incomplete: list[str], problems: list[Problem]) -> str:
    """What the first screen says of the data in one line; the details sit at the end of the page."""
    runs = len({line.split(":", 1)[0] for line in incomplete})
    parts = [f"{runs} sharded run{'s' if runs != 1 else ''} incomplete"] if runs else []
    if problems:
        parts.append(f"{len(problems)} results line{'s' if len(problems) != 1 else ''} or file"
                     f"{'s' if len(problems) != 1 else ''} left out")
    return "; ".join(parts)


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
    """Load, plan every section (`sections`), write the data files, draw, render, swap the page in."""
    started = time.perf_counter()
    step("loading results")
    raw, problems = load(paths)
    if raw.empty:
        raise SepbenchError(f"no result records in {', '.join(map(str, paths))}")
    df = analysis.prepare(raw)
    if analysis.variants(df).empty:
        raise SepbenchError(f"no variant measured beside its baseline in {len(df)} records: a report compares "
                            "variants with their baselines, so it needs at least one such pair")
    comparisons, ab_problems = ab_files.load(paths)
    model_runs, model_problems = modelruns.load(paths)
    problems = [*problems, *ab_problems, *model_problems]
    out = ensure_writable(Path(out))
    # Each build draws into a folder of its own that the new page names. Swapping the page in is one
    # rename, so at every moment index.html points at a whole set of figures: the old page at the
    # old folder, or the new page at the new one. Folders no page names are removed afterwards.
    img = ensure_writable(out / folder)
    plan = drawing.Plan(img, folder)
    step("deriving")
    context = {**sections.plan_all(df, comparisons, plan), **sections.models(model_runs, plan)}
    step("writing the data files")
    records_csv, columns_csv = download.write(df, img / "data")
    step(f"drawing {len(plan.jobs)} figures")
    figures = drawing.draw(plan.jobs)
    step("computing feature maps")
    from sepbench.report import featuremaps  # torch, imported only after the drawing processes have forked

    maps = featuremaps.stage_outputs()
    figures.append(plots.feature_maps(maps, img / f"feature-maps.{drawing.FORMAT}"))
    step("rendering")
    incomplete = incomplete_shards(paths)
    html = _render(
        **context,
        data={"records": f"{folder}/data/{records_csv.name}", "columns": f"{folder}/data/{columns_csv.name}"},
        dictionary=[(c, *download.COLUMNS[c]) for c in download.COLUMNS if c in df],
        version=__version__, generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        unstable_mark=UNSTABLE_MARK, sections=SECTIONS,
        feature_plot=drawing.Figure("fig-feature-maps", "Feature maps per stage",
                                    f"{folder}/feature-maps.{drawing.FORMAT}",
                                    f"channel-mean and per-channel feature maps of {', '.join(maps)}"),
        maps=list(maps), pb=_pytest_benchmark(pytest_benchmark), asv_url=asv_url,
        problems=[str(p) for p in problems], records=len(df), files=df["file"].nunique(),
        incomplete=incomplete, data_notes=_data_notes(incomplete, problems))
    index = _swap_in(out, html)
    _remove_unnamed_folders(out, folder)
    figures = [img / f.name for f in figures]
    return Built(index, len(df), df["file"].nunique(), context["envs"], figures, [str(p) for p in problems],
                 time.perf_counter() - started, [str(p) for p in problems if not p.torn_tail],
                 page_bytes=index.stat().st_size + sum(f.stat().st_size for f in figures),
                 data_bytes=records_csv.stat().st_size + columns_csv.stat().st_size)


def _render(**context: object) -> str:
    env = jinja2.Environment(loader=jinja2.PackageLoader("sepbench.report", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(ratio=sections.ratio, interval=sections.interval, percent=sections.percent,
                       percent2=sections.percent2, time=fmt_time, bytes=fmt_bytes, count=fmt_count)
    return env.get_template("report.html.j2").render(**context)


def _swap_in(out: Path, html: str) -> Path:
    """Write the page beside the old one, then rename it over: a reader, or a kill, never sees half a
    page or missing figures."""
    index = out / "index.html"
    tmp = out / f".index-{os.getpid()}.html"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(html)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, index)
    return index
