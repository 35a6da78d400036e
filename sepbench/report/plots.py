"""The report's figures, drawn with seaborn and saved as lossless WebP files beside the page (no scripts, no
CDN: a page that opens offline). Each function takes frames from `analysis` / `versions` and a path,
and draws what it is given: no figure computes a number of its own.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only: no display on CI or a server

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import TwoSlopeNorm
from matplotlib.ticker import EngFormatter, FuncFormatter, LogLocator
from PIL import Image

if TYPE_CHECKING:
    import torch  # for annotations only: the drawing processes fork before torch is imported

DPI = 90  # a figure's natural size is what the page shows at 1400 px: 8 pt text is 10 CSS px
SPEEDUP_CMAP = "RdBu"  # diverging and colour-blind safe: red below 1× (slower than the baseline), blue above
EFFICIENCY_CMAP = "viridis"  # sequential, 0 (nothing of the FLOP saving realized) to 1 (all of it)
TEXT = 8  # the smallest font on any figure, in points
sns.set_theme(style="whitegrid", context="notebook", font_scale=0.85, rc={"font.size": TEXT + 1})

# One colour per variant, fixed by its name, so a variant has the same colour in every figure and every
# report: the Okabe–Ito colour-blind-safe set for the layer variants (the standard conv black), darker
# hues for the networks; a full-conv twin is drawn as the baseline it is.
VARIANT_COLOURS = {
    "standard": "#000000", "grouped": "#E69F00", "depthwise": "#56B4E9", "pointwise": "#009E73",
    "depthwise_separable": "#0072B2", "spatially_separable": "#D55E00", "spatial_depthwise_separable": "#CC79A7",
    "se_depthwise_separable": "#F0E442", "inverted_residual": "#999999",
    "mobilenet_v1": "#332288", "mobilenet_v2": "#882255", "xception_block": "#117733",
}


def variant_colour(label: str) -> str:
    """The colour of a variant label ('grouped(g=4)' is the grouped variant's)."""
    name = label.split("(")[0]
    if name.endswith("_fullconv"):
        name = "standard"
    return VARIANT_COLOURS.get(name, "#5f6368")


def _palette(labels: pd.Series) -> dict[str, str]:
    """The fixed variant colours of the labels drawn."""
    return {label: variant_colour(label) for label in sorted(labels.unique())}


def wrap_label(label: str, width: int = 14) -> str:
    """A long variant name broken at its underscores, so heatmap headings never run into each other."""
    lines: list[str] = []
    for word in label.split("_"):
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += "_" + word
        else:
            lines.append(word if not lines else "_" + word)
    return "\n".join(lines)


@contextmanager
def _fixed_jitter() -> Iterator[None]:
    """seaborn jitters strip plots with numpy's global generator: seed it for the figure, so the
    same results draw the same file, and give the caller's state back."""
    state = np.random.get_state()
    np.random.seed(0)
    try:
        yield
    finally:
        np.random.set_state(state)


def _save(fig: plt.Figure, path: Path, colours: int = 96) -> Path:
    """A lossless image with a palette of `colours`: a figure has few colours, and a palette image takes a
    third of the RGBA file's bytes or less; WebP (lossless) takes a fifth less again than PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    image = Image.open(buffer).convert("RGB")
    palette = image.quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    if path.suffix == ".webp":
        palette.save(path, "WEBP", lossless=True, method=2)
    else:
        palette.save(path, optimize=True)
    return path


SPEEDUP_SPAN_MAX = 4  # log2: the scale ends at 1/16× and 16×; beyond, the end colours (the cells print the value)


def speedup_span(values: np.ndarray) -> float:
    """The page's one speedup scale: the largest |log2 ×| among the values, rounded up to a whole power of
    2 and at most 16×, so every speedup heatmap colours one value alike and 0.5–2× stays visible (a 256×
    theoretical depthwise saving would otherwise wash every realized × out)."""
    values = np.asarray(values, dtype=float)
    logs = np.log2(values[np.isfinite(values) & (values > 0)])
    return float(min(max(np.ceil(np.abs(logs).max()) if logs.size else 1.0, 1.0), SPEEDUP_SPAN_MAX))


def _speedup_norm(span: float) -> TwoSlopeNorm:
    """Diverging at 1× on a log scale: a 2× slowdown is as red as a 2× speedup is blue."""
    return TwoSlopeNorm(vcenter=0.0, vmin=-span, vmax=span)


def times_label(t: int) -> str:
    """2**t as a speedup: '4×', '1×', '1/64×' (never '0.015625×')."""
    return f"{2 ** t:g}×" if t >= 0 else f"1/{2 ** -t:g}×"


def _colorbar(ax: plt.Axes) -> matplotlib.colorbar.Colorbar:
    """The colour bar seaborn drew beside a heatmap (asked for with cbar=True)."""
    cbar = ax.collections[0].colorbar
    if cbar is None:
        raise ValueError("the heatmap has no colour bar")
    return cbar


def _times_ticks(cbar: matplotlib.colorbar.Colorbar, norm: TwoSlopeNorm) -> None:
    """Label a log2 speedup colour bar in ×."""
    vmin, vmax = float(norm.vmin or 0.0), float(norm.vmax or 0.0)  # both set by `_speedup_norm`
    step = max(1, int(np.ceil((vmax - vmin) / 6)))
    ticks = [t for t in range(-step * int(np.ceil(-vmin / step)), int(vmax) + 1, step) if vmin <= t <= vmax]
    cbar.set_ticks(ticks, labels=[times_label(t) for t in ticks])
    cbar.ax.tick_params(labelsize=TEXT)


def _speedup_heatmap(ax: plt.Axes, values: pd.DataFrame, norm: TwoSlopeNorm, fmt: str, label: str,
                     **kwargs: object) -> None:
    """A speedup heatmap on the diverging scale, with its colour bar and cell values."""
    sns.heatmap(np.log2(values.where(values > 0)), ax=ax, cmap=SPEEDUP_CMAP, norm=norm, cbar=True,
                cbar_kws={"label": label, "shrink": 0.9, "pad": 0.01, "extend": "both"}, **kwargs)
    _times_ticks(_colorbar(ax), norm)
    _colorbar(ax).set_label(label, fontsize=TEXT)
    _annotate(ax, values, fmt, lambda v: plt.get_cmap(SPEEDUP_CMAP)(norm(np.log2(v))) if v > 0 else (1, 1, 1, 1))


def _efficiency_heatmap(ax: plt.Axes, values: pd.DataFrame, **kwargs: object) -> None:
    """Efficiency (realized / theoretical) on its own sequential scale from 0 to 1."""
    sns.heatmap(values.clip(upper=1), ax=ax, cmap=EFFICIENCY_CMAP, vmin=0, vmax=1, cbar=True,
                cbar_kws={"label": "efficiency", "shrink": 0.9, "pad": 0.01}, **kwargs)
    cbar = _colorbar(ax)
    cbar.set_ticks([0, 0.25, 0.5, 0.75, 1], labels=["0", "25 %", "50 %", "75 %", "100 %"])
    cbar.ax.tick_params(labelsize=TEXT)
    cbar.set_label("efficiency", fontsize=TEXT)
    _annotate(ax, values, ".2f", lambda v: plt.get_cmap(EFFICIENCY_CMAP)(min(max(v, 0), 1)))


def grid_heatmaps(part: pd.DataFrame, title: str, theory: bool, span: float, path: Path) -> Path:
    """Channels × spatial size per variant: theoretical speedup (when `theory`; it depends on the
    geometry alone, so the page draws it once per set of geometries), realized speedup and efficiency.
    One heatmap per measure with the variants side by side (seaborn redraws the whole figure once per
    heatmap, so one heatmap per variant would cost quadratic time)."""
    rows = [("theory_speedup", "theoretical × (FLOP ratio, 2mac)", ".1f")] if theory else []
    rows += [("realized_speedup", "realized × (median times)", ".2f"),
             ("realized_efficiency", "efficiency = realized / theoretical", ".2f")]
    labels = sorted(part["label"].unique())
    sizes = sorted(part["size"].unique())
    columns = pd.MultiIndex.from_product([labels, sizes], names=["label", "size"])
    norm = _speedup_norm(span)
    height = 1.4 + 0.45 * part["c_in"].nunique() * len(rows) + 1.0 * len(rows)
    fig, axes = plt.subplots(len(rows), 1, figsize=(0.62 * len(columns) + 3, height), squeeze=False)
    for ax, (column, name, fmt) in zip(axes[:, 0], rows, strict=True):
        pivot = part.pivot_table(index="c_in", columns=["label", "size"], values=column, aggfunc="median")
        pivot = pivot.reindex(columns=columns)
        ticks = {"xticklabels": [str(s) for _, s in columns], "yticklabels": list(pivot.index)}
        if column == "realized_efficiency":
            _efficiency_heatmap(ax, pivot, **ticks)
        else:
            _speedup_heatmap(ax, pivot, norm, fmt, "speedup (×)", **ticks)
        ax.grid(False)
        for i in range(1, len(labels)):
            ax.axvline(i * len(sizes), color="white", lw=3)
        for i, lab in enumerate(labels):
            ax.text((i + 0.5) * len(sizes), -0.15, wrap_label(lab, 2 * len(sizes) + 6), ha="center", va="bottom",
                    fontsize=TEXT)
        ax.set_xlabel("spatial size (per variant)", fontsize=TEXT + 1)
        ax.set_ylabel("C_in", fontsize=TEXT + 1)
        ax.set_title(name, fontsize=TEXT + 2, loc="left", pad=34)
        ax.tick_params(axis="both", labelsize=TEXT, rotation=0)
    fig.subplots_adjust(hspace=0.75, top=1 - 1.2 / height)  # room above the first panel for its headings
    fig.suptitle(title, fontsize=TEXT + 3, x=0.01, y=1 - 0.1 / height, ha="left", va="top")
    return _save(fig, path)


def _annotate(ax: plt.Axes, values: pd.DataFrame, fmt: str, colour_of: Callable[[float], tuple]) -> None:
    """Cell values, added after seaborn's heatmap has drawn (its own `annot` text is re-laid-out on every
    later heatmap's full-figure draw), white on dark cells and black on light ones."""
    for (r, c), v in np.ndenumerate(values.to_numpy()):
        if np.isfinite(v):
            red, green, blue, _ = colour_of(v)
            light = 0.2126 * red + 0.7152 * green + 0.0722 * blue > 0.45
            ax.text(c + 0.5, r + 0.5, format(v, fmt), ha="center", va="center", fontsize=TEXT,
                    color="black" if light else "white")


def _times_axis(axis: matplotlib.axis.Axis) -> None:
    """A log axis of speedups labelled in ×: at 1, 2 and 5 per decade over up to two decades, at the
    decades alone beyond (so the labels never run together)."""
    low, high = axis.get_view_interval()
    decades = np.log10(max(high, 1e-12) / max(low, 1e-12))
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 2.2 else (1.0,)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _name_variants(legend: matplotlib.legend.Legend) -> None:
    """seaborn heads the hue entries with the column's name, 'label': call them what they are."""
    for text in legend.texts:
        if text.get_text() == "label":
            text.set_text("variant")


def _variant_legend(g: sns.FacetGrid) -> None:
    if g.legend is not None:
        g.legend.set_title("")
        _name_variants(g.legend)
        for text in g.legend.texts:
            text.set_fontsize(TEXT + 1)


def speedup_scatter(v: pd.DataFrame, path: Path) -> Path:
    """Theoretical against realized speedup, one panel per environment, with y = x and y = 1."""
    g = sns.relplot(data=v, x="theory_speedup", y="realized_speedup", hue="label", style="mode", col="env",
                    palette=_palette(v["label"]), hue_order=sorted(v["label"].unique()),
                    col_order=sorted(v["env"].unique()), col_wrap=min(2, v["env"].nunique()), height=4.2,
                    aspect=1.15, s=22, alpha=0.8,
                    facet_kws={"sharex": True, "sharey": True})
    lo = float(min(v["theory_speedup"].min(), v["realized_speedup"].min())) * 0.8
    hi = float(max(v["theory_speedup"].max(), v["realized_speedup"].max())) * 1.25
    for ax in g.axes.flat:
        ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi))
        ax.plot([lo, hi], [lo, hi], color="0.3", lw=1, ls="--", label="y = x (theory realized)")
        ax.axhline(1, color="#b3261e", lw=0.8, ls=":")
        ax.set_title(ax.get_title().replace("env = ", ""), fontsize=TEXT + 1)
        _times_axis(ax.xaxis)
        _times_axis(ax.yaxis)
    _variant_legend(g)
    g.set_axis_labels("theoretical speedup (FLOP ratio, 2mac)", "realized speedup (median times)")
    return _save(g.figure, path)


def summary_dots(table: pd.DataFrame, columns: list[str], path: Path) -> Path:
    """The answer in one figure: per variant (rows) and mode (panels), the theoretical × (hollow
    diamond, the same cases in every column) against the realized × of each device class (dots with
    their 95 % intervals), on one log axis with 1× marked."""
    modes = sorted(table["mode"].unique())
    labels = sorted(table["label"].unique(), key=lambda lab: -table.loc[table["label"] == lab, "theory"].max())
    colours = dict(zip(columns, sns.color_palette("colorblind", len(columns) + 2)[2:], strict=True)) \
        if len(columns) > 1 else {columns[0]: sns.color_palette("colorblind")[2]}
    fig, axes = plt.subplots(1, len(modes), figsize=(6.2 * len(modes), 0.55 * len(labels) + 1.8), squeeze=False,
                             sharey=True)
    y = {lab: i for i, lab in enumerate(labels)}
    offsets = np.linspace(-0.22, 0.22, len(columns) + 1)
    for ax, mode in zip(axes[0], modes, strict=True):
        part = table[table["mode"] == mode]
        theory = part.groupby("label")["theory"].first()
        ax.scatter(theory.to_numpy(), [y[lab] + offsets[0] for lab in theory.index], marker="D", s=36,
                   facecolors="white", edgecolors="#1f5f99", linewidths=1.4, label="theoretical ×", zorder=3)
        for k, column in enumerate(columns, start=1):
            rows = part[part["column"] == column]
            ys = np.array([y[lab] + offsets[k] for lab in rows["label"]])
            err = np.vstack([rows["realized"] - rows["realized_low"].fillna(rows["realized"]),
                             rows["realized_high"].fillna(rows["realized"]) - rows["realized"]])
            ax.errorbar(rows["realized"], ys, xerr=err, fmt="o", ms=5, lw=1.2, color=colours[column],
                        label=f"realized ×, {column}", zorder=4)
        ax.axvline(1, color="#b3261e", lw=1, ls=":")
        ax.set_xscale("log")
        _times_axis(ax.xaxis)
        ax.set_yticks(range(len(labels)), labels, fontsize=TEXT + 1)
        ax.invert_yaxis()
        ax.set_title(mode, fontsize=TEXT + 2)
        ax.set_xlabel("speedup over the standard conv (×, log scale; left of 1× is slower)", fontsize=TEXT + 1)
        ax.tick_params(axis="x", labelsize=TEXT)
    axes[0, 0].legend(loc="upper center", bbox_to_anchor=(0.5 * len(modes) + 0.05 * (len(modes) - 1), -0.16),
                      ncol=min(3, len(columns) + 1), fontsize=TEXT + 1, frameon=False)
    return _save(fig, path)


def time_vs_channels(rows: pd.DataFrame, envs: list[str], path: Path) -> Path:
    """Absolute median time per step against C_in, log-log, per device class (rows) and mode (columns),
    every variant and its baseline, at the spatial size measured most: a line that stays flat as the
    channels grow is bound by launches and framework overhead, not by FLOPs."""
    size = int(rows["size"].value_counts().index[0])
    rows = rows[rows["size"] == size].groupby(["column", "mode", "label", "c_in"], as_index=False)["timing_median_s"] \
        .median()
    g = sns.relplot(data=rows, x="c_in", y="timing_median_s", hue="label", row="column", col="mode", kind="line",
                    marker="o", palette=_palette(rows["label"]), hue_order=sorted(rows["label"].unique()),
                    row_order=envs, col_order=sorted(rows["mode"].unique()), height=3.4, aspect=1.35,
                    facet_kws={"sharey": False})
    for ax in g.axes.flat:
        ax.set(xscale="log", yscale="log")
        ax.set_xticks(sorted(rows["c_in"].unique()))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _short_time(v)))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.tick_params(labelsize=TEXT)
    g.set_titles(template=f"{{row_name}} · {{col_name}} · {size}² input", size=TEXT + 1)
    g.set_axis_labels("C_in (= C_out)", "median time per step")
    _variant_legend(g)
    return _save(g.figure, path)


def _short_time(s: float) -> str:
    """1e-05 → '10 µs', 0.002 → '2 ms'."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


def roofline(points: pd.DataFrame, ceilings: pd.DataFrame, path: Path) -> Path:
    """Achieved FLOP/s against arithmetic intensity under each environment's measured ceilings."""
    envs = sorted(points["env"].unique())
    cols = min(2, len(envs))
    rows = -(-len(envs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 4.4 * rows), squeeze=False)
    labels = sorted(points["label"].unique())
    palette = _palette(points["label"])
    for ax, env in zip(axes.flat, envs, strict=False):
        pts = points[points["env"] == env]
        x = np.logspace(np.log10(pts["theory_intensity"].min() / 2), np.log10(pts["theory_intensity"].max() * 2), 200)
        mine = ceilings[ceilings["env"] == env].sort_values("peak_flops", ascending=False)
        for _, c in mine.iterrows():
            ax.plot(x, np.minimum(c["peak_flops"], c["peak_bandwidth"] * x), lw=1.2, color="0.25",
                    ls="-" if c["ceiling"] in ("float32", "tf32") else "--")
        bw = ceilings[ceilings["env"] == env]["peak_bandwidth"].max()
        ax.annotate(f"copy bandwidth {bw / 1e9:.0f} GB/s", (x[0], bw * x[0]), xytext=(2, 4), textcoords="offset points",
                    rotation=0, ha="left", va="bottom", fontsize=TEXT, color="0.2",
                    bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
        sns.scatterplot(data=pts, x="theory_intensity", y="achieved_flops", hue="label", palette=palette,
                        hue_order=labels, style="mode", s=18, alpha=0.75, ax=ax, legend=ax is axes.flat[0])
        ax.set(xscale="log", yscale="log", title=env,
               xlabel="arithmetic intensity (FLOP/byte, 2mac, minimum traffic)", ylabel="achieved (2mac)")
        _ceiling_labels(ax, mine, x[-1])
        ax.yaxis.set_major_formatter(EngFormatter(unit="FLOP/s"))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.tick_params(labelsize=TEXT)
        ax.title.set_fontsize(TEXT + 2)
    for ax in list(axes.flat)[len(envs):]:
        ax.remove()
    if axes.flat[0].get_legend():
        sns.move_legend(axes.flat[0], "upper left", bbox_to_anchor=(1.0 if cols == 1 else 2.25, 1), fontsize=TEXT,
                        title="")
        _name_variants(axes.flat[0].get_legend())
    fig.subplots_adjust(hspace=0.35)
    return _save(fig, path)


def _ceiling_labels(ax: plt.Axes, ceilings: pd.DataFrame, right: float) -> None:
    """Each compute ceiling named at the right end of its line; labels closer than a line of text are
    pushed down one below the other (with a leader to their line), so none is printed over another."""
    low, high = (np.log10(v) for v in ax.get_ylim())
    gap = (high - low) * 0.045  # a line of 8 pt text on a panel about 400 px high
    previous = np.inf
    for _, c in ceilings.iterrows():  # highest first
        at = np.log10(c["peak_flops"])
        y = min(at + gap * 0.6, previous - gap)
        previous = y
        ax.annotate(f"{c['ceiling']} {c['peak_flops'] / 1e12:.3g} TFLOP/s", (right, c["peak_flops"]),
                    xytext=(right, 10 ** y), textcoords="data", ha="right", va="center", fontsize=TEXT, color="0.2",
                    arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6} if y < at else None,
                    bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85})


def roofline_share(points: pd.DataFrame, path: Path) -> Path:
    """Per case, the share of its roofline bound reached (bound time / measured time), by variant."""
    with _fixed_jitter():
        g = sns.catplot(data=points, x="roofline_share", y="label", hue="mode", col="env", kind="strip",
                        col_wrap=min(2, points["env"].nunique()), col_order=sorted(points["env"].unique()),
                        order=sorted(points["label"].unique()), height=3.4, aspect=1.5, s=10, alpha=0.6,
                        jitter=0.25, dodge=True)
    ticks = [t for t in (1e-4, 1e-3, 1e-2, 0.1, 1) if t >= points["roofline_share"].min() / 3]
    for ax in g.axes.flat:
        ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{t * 100:g} %" for t in ticks])
        ax.axvline(1, color="0.3", lw=1, ls="--")
        ax.set_title(ax.get_title().replace("env = ", ""), fontsize=TEXT + 1)
        ax.tick_params(labelsize=TEXT)
    g.set_axis_labels("share of the roofline bound reached", "")
    return _save(g.figure, path)


def memory(rows: pd.DataFrame, path: Path) -> Path:
    """Theoretical activation bytes (+ weight gradients in training) against the measured peak rise,
    one panel per measuring method."""
    g = sns.relplot(data=rows, x="theory_rise_bytes", y="measured_memory_bytes", hue="label", style="mode",
                    palette=_palette(rows["label"]), hue_order=sorted(rows["label"].unique()),
                    col="memory_method", col_order=sorted(rows["memory_method"].unique()),
                    col_wrap=min(2, rows["memory_method"].nunique()), height=4.2, aspect=1.3, s=20, alpha=0.8,
                    facet_kws={"sharex": False, "sharey": False})
    for ax in g.axes.flat:
        ax.set(xscale="log", yscale="log")
        lo, hi = min(ax.get_xlim()[0], ax.get_ylim()[0]), max(ax.get_xlim()[1], ax.get_ylim()[1])
        ax.plot([lo, hi], [lo, hi], color="0.3", lw=1, ls="--")
        ax.set_title(ax.get_title().replace("memory_method = ", ""), fontsize=TEXT + 1)
        for axis in (ax.xaxis, ax.yaxis):
            _bytes_axis(axis)
        ax.tick_params(labelsize=TEXT)
    _variant_legend(g)
    g.set_axis_labels("theory: activations (+ weight grads in training)", "measured peak rise")
    return _save(g.figure, path)


def binary_bytes(v: float) -> str:
    """A power of 2 in bytes as its round binary unit: 4096 → '4 KiB', 2**20 → '1 MiB'."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if v >= scale:
            return f"{v / scale:g} {unit}"
    return f"{v:g} B"


def _bytes_axis(axis: matplotlib.axis.Axis) -> None:
    """A log axis of bytes ticked at powers of 2 (every 2× or 4× or, over a wide range, every 16× or 1024×),
    labelled in KiB, MiB, GiB."""
    low, high = axis.get_view_interval()
    octaves = np.log2(max(high, 2.0) / max(low, 1.0))
    step = 1 if octaves <= 5 else (2 if octaves <= 12 else (4 if octaves <= 24 else 10))
    axis.set_major_locator(LogLocator(base=2 ** step))
    axis.set_major_formatter(FuncFormatter(lambda v, _: binary_bytes(v)))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def settings_heatmap(pivot: pd.DataFrame, title: str, span: float, path: Path) -> Path:
    """Realized speedup per setting (rows) and variant (columns)."""
    fig, ax = plt.subplots(figsize=(1.1 * pivot.shape[1] + 6, 0.32 * pivot.shape[0] + 2.4))
    _speedup_heatmap(ax, pivot, _speedup_norm(span), ".2f", "realized speedup (×)",
                     xticklabels=[wrap_label(c) for c in pivot.columns], yticklabels=True)
    ax.grid(False)
    ax.set(xlabel="", ylabel="", title=title)
    ax.title.set_fontsize(TEXT + 2)
    ax.xaxis.tick_top()
    ax.tick_params(axis="x", labelsize=TEXT, rotation=0)
    ax.tick_params(axis="y", labelsize=TEXT)
    return _save(fig, path)


def networks(net: pd.DataFrame, span: float, path: Path) -> Path:
    """Each network against its full-conv twin over α × ρ: theoretical and realized, per environment."""
    panels = sorted(net.groupby(["env", "variant"]).groups)
    fig, axes = plt.subplots(len(panels), 2, figsize=(12, 3.4 * len(panels)), squeeze=False)
    for r, (env, variant) in enumerate(panels):
        part = net[(net["env"] == env) & (net["variant"] == variant)]
        norm = _speedup_norm(span)
        for c, (column, name) in enumerate((("theory_speedup", "theoretical ×"), ("realized_speedup", "realized ×"))):
            pivot = part.pivot_table(index="alpha", columns="size", values=column, aggfunc="median")
            pivot = pivot.sort_index(ascending=False)
            _speedup_heatmap(axes[r, c], pivot, norm, ".2f", "speedup (×)")
            axes[r, c].set(title=f"{variant} · {name}\n{env}", xlabel="resolution ρ", ylabel="width α")
            axes[r, c].title.set_fontsize(TEXT + 1)
            axes[r, c].tick_params(labelsize=TEXT)
    fig.subplots_adjust(hspace=0.7, wspace=0.3)
    return _save(fig, path)


def version_ratios(cmp: pd.DataFrame, path: Path) -> Path:
    """Every case's time ratio newer / older, per variant, coloured by verdict."""
    cmp = cmp.assign(pair=cmp["machine"] + " · " + cmp["device"] + " · " + cmp["threads"].astype(str) + " thr: "
                     + cmp["older"] + " → " + cmp["newer"])
    with _fixed_jitter():
        g = sns.catplot(data=cmp, x="ratio", y="label", hue="verdict", col="pair", kind="strip", height=3.8, aspect=1.4,
                        hue_order=["regression", "improvement", "within noise", "no repeat runs"],
                        palette={"regression": "#D55E00", "improvement": "#0072B2", "within noise": "0.6",
                                 "no repeat runs": "0.8"}, jitter=0.25, s=16, col_wrap=1)
    low, high = cmp["ratio"].min() / 1.2, cmp["ratio"].max() * 1.2
    ticks = [t for t in (0.25, 0.35, 0.5, 0.7, 1, 1.4, 2, 2.8, 4) if low <= t <= high]
    for ax in g.axes.flat:
        ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{t:g}×" for t in ticks])
        ax.xaxis.set_minor_locator(plt.NullLocator())
        ax.axvline(1, color="0.2", lw=1)
        ax.set_title(ax.get_title().replace("pair = ", ""), fontsize=TEXT + 1)
    g.set_axis_labels("time ratio newer / older (> 1: slower)", "")
    return _save(g.figure, path)


def trends(tr: pd.DataFrame, path: Path) -> Path:
    """Run-by-run median time (IQR bars) of a few cases, runs numbered in start order, coloured by
    PyTorch version."""
    tr = tr.assign(case=tr["label"] + " · " + tr["threads"].astype(str) + " thr\n"
                   + tr["geometry"].str.replace(" | ", "\n", regex=False), median_us=tr["timing_median_s"] * 1e6)
    g = sns.FacetGrid(tr, col="case", col_wrap=4, height=2.9, aspect=1.2, sharey=False, hue="env_torch")
    g.map_dataframe(_trend_panel)
    g.add_legend(title="torch")
    for ax in g.axes.flat:
        ax.set_ylim(0, ax.get_ylim()[1])  # after every version's points are in
    g.set_titles("{col_name}", size=TEXT)
    g.set_axis_labels("run (numbered as in the table of runs)", "median time (µs)")
    return _save(g.figure, path)


def _trend_panel(data: pd.DataFrame, color: tuple, label: str, **_: object) -> None:
    ax = plt.gca()
    err = np.vstack([data["median_us"] - data["timing_q1_s"] * 1e6, data["timing_q3_s"] * 1e6 - data["median_us"]])
    ax.errorbar(data["run"], data["median_us"], yerr=err, fmt="o", color=color, label=label, ms=4, capsize=2)


def feature_maps(maps: Mapping[str, torch.Tensor], path: Path) -> Path:
    """Channel mean of the input and of every stage's output, then the first three channels of each."""
    names = list(maps)
    fig, axes = plt.subplots(4, len(names), figsize=(1.9 * len(names), 7.8), squeeze=False)
    for c, name in enumerate(names):
        t = maps[name]
        axes[0, c].imshow(t.mean(0).numpy(), cmap="viridis")
        axes[0, c].set_title(f"{name}\nchannel mean", fontsize=TEXT + 1)
        for r in (1, 2, 3):
            if r - 1 < t.shape[0]:
                axes[r, c].imshow(t[r - 1].numpy(), cmap="viridis")
                axes[r, c].set_title(f"channel {r - 1}", fontsize=TEXT)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    return _save(fig, path)


def ab_ratios(table: pd.DataFrame, title: str, path: Path) -> Path:
    """Each compared case's ratio B / A with its 95 % interval, sorted: flagged cases in colour."""
    data = table[table["p"].notna()].sort_values("ratio").reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(9, 3.6))
    colours = {"B slower": "#D55E00", "B faster": "#0072B2", "within noise": "#9aa0a6"}  # Okabe–Ito: colour-blind safe
    for verdict, part in data.groupby("verdict"):
        ax.errorbar(part.index, part["ratio"], yerr=[part["ratio"] - part["low"], part["high"] - part["ratio"]],
                    fmt="o", ms=2.5, lw=0.8, color=colours.get(verdict, "#5f6368"), label=f"{verdict} ({len(part)})")
    ax.axhline(1, color="#202124", lw=0.8)
    ax.set_yscale("log")
    # Every interval in view, and ticks spread over that range (a log axis would label only 0.8, 0.9, 1).
    low, high = float(data["low"].min()), float(data["high"].max())
    pad = (high / low) ** 0.04
    ax.set_ylim(min(low, 1.0) / pad, max(high, 1.0) * pad)
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=8, steps=[1, 2, 2.5, 5, 10]))
    ax.yaxis.set_minor_locator(plt.NullLocator())
    digits = 3 if high / low < 1.1 else 2
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.{digits}f}"))
    ax.set_xlabel("case, sorted by ratio")
    ax.set_ylabel("time ratio B / A")
    ax.set_title(title, fontsize=TEXT + 2)
    ax.legend(fontsize=TEXT, loc="upper left")
    return _save(fig, path)


OVERHEAD_COLOURS = {"framework": "#9e9e9e", "layout": "#bdbdbd", "grad accumulation": "#757575",
                    "unstaged": "#e0e0e0", "device idle": "#616161"}
# One colour per stage, fixed by its name so a stage looks the same in every figure: the Okabe–Ito set
# and Paul Tol's muted set (both colour-blind safe), the stages that meet in one variant kept apart in hue.
STAGE_COLOURS = {
    "dw": "#0072B2", "pw": "#E69F00", "conv": "#009E73", "kx1": "#D55E00", "1xk": "#CC79A7",
    "dw_kx1": "#56B4E9", "dw_1xk": "#F0E442", "expand": "#332288", "project": "#DDCC77", "se": "#882255",
    "se.pool": "#88CCEE", "se.fc1": "#44AA99", "se.act": "#999933", "se.fc2": "#CC6677", "se.gate": "#AA4499",
    "(module)": "#117733", "stem": "#4477AA", "last": "#EE6677",
}
# For stages without a colour of their own (a user's model): Tol's light and bright sets, never one
# already used in the same figure.
SPARE_COLOURS = ["#77AADD", "#EE8866", "#EEDD88", "#FFAABB", "#99DDFF", "#BBCC33", "#AAAA00", "#228833",
                 "#CCBB44", "#66CCEE", "#AA3377", "#BBBBBB", "#000000", "#8c564b", "#e377c2", "#17becf"]


def stage_colours(names: list[str]) -> dict[str, str]:
    """The colour of every stage and overhead drawn in one figure: its own where it has one, else the
    first spare that no other part of the figure uses; distinct within the figure."""
    colours = {n: STAGE_COLOURS.get(n) or OVERHEAD_COLOURS.get(n) for n in names}
    used = set(colours.values())
    lacking = [n for n, c in colours.items() if c is None]
    spares = [c for c in SPARE_COLOURS if c not in used]
    if len(lacking) > len(spares):  # more strangers than spares: evenly spread hues, still all distinct
        spares += [matplotlib.colors.to_hex(c) for c in sns.color_palette("husl", len(lacking) - len(spares))]
    given = dict(zip(lacking, spares, strict=False))
    return {n: c or given[n] for n, c in colours.items()}


def stage_shares(shares: pd.DataFrame, env: str, setting: str, path: Path) -> Path:
    """Per variant, two stacked bars: the median share of the step's time per stage (then the named
    overheads, in greys) and the median share of its FLOPs, over the cases named beside the variant:
    `analysis.stage_shares`, the aggregate the bottleneck table reads. A stage far longer in the first
    bar than in the second is where theory and practice part."""
    part = shares[(shares["env"] == env) & (shares["setting"] == setting)]
    labels = sorted(part["label"].unique())
    cases = part.groupby("label")["cases"].max()
    stage_names = sorted(part.loc[~part["overhead"], "part"].unique())
    colours = stage_colours([*stage_names, *OVERHEAD_COLOURS])
    fig, ax = plt.subplots(figsize=(10, 0.75 * len(labels) + 1.6))
    y = np.arange(len(labels))
    right = 1.0
    for row, (column, offset, name) in enumerate((("time_share", -0.2, "time"), ("flop_share", 0.2, "FLOPs"))):
        left = np.zeros(len(labels))
        for p in [*stage_names, *OVERHEAD_COLOURS]:
            values = part[part["part"] == p].set_index("label")[column].reindex(labels).fillna(0).to_numpy()
            if not values.any():
                continue
            ax.barh(y + offset, values, left=left, height=0.38, color=colours[p],
                    label=p if row == 0 or p not in OVERHEAD_COLOURS else None, edgecolor="white", linewidth=0.5)
            left += values
        right = max(right, float(left.max()))
        for yi in y:
            ax.text(-0.01, yi + offset, name, ha="right", va="center", fontsize=TEXT, color="#555")
    ax.set_yticks(y, [f"{lab}\n({cases[lab]} cases)" for lab in labels])
    ax.tick_params(axis="y", pad=38)
    ax.set_xlim(0, right)
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.invert_yaxis()
    ax.set_title(f"{env} · {setting}: median share of the step's time (upper bar) and of its FLOPs (lower bar)",
                 fontsize=TEXT + 1)
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=TEXT, frameon=False,
              title="stage / overhead", title_fontsize=TEXT)
    return _save(fig, path)


# Okabe–Ito: swap (a candidate is surely faster), slower (every candidate is), keep (no sure answer), and
# for a depthwise site, whose candidate is its full conv, the separable design winning.
VERDICT_COLOURS = {"swap": "#0072B2", "slower": "#D55E00", "keep": "#9aa0a6", "separable saves": "#009E73"}


def _verdict_colour(verdict: str) -> str:
    return next((c for v, c in VERDICT_COLOURS.items() if verdict.startswith(v)), VERDICT_COLOURS["keep"])


def model_layers(rows: pd.DataFrame, title: str, path: Path) -> Path:
    """A network site by site, in its order: each site's share of the network's time, coloured by verdict
    and labelled with the best candidate's realized ×; beside it every candidate's theoretical against
    realized × (y = x: all of the saving realized; below 1×: slower than the layer as it is)."""
    sites = rows.drop_duplicates("order").sort_values("order")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, max(3.0, 0.15 * len(sites) + 1.2)),
                                      gridspec_kw={"width_ratios": [1.3, 1]})
    y = np.arange(len(sites))
    colours = [_verdict_colour(v) for v in sites["verdict"]]
    left.barh(y, sites["share"], color=colours, height=0.7)
    best = rows[rows["best"]].set_index("order")
    for yi, (order, share) in zip(y, zip(sites["order"], sites["share"], strict=True), strict=True):
        if order in best.index:
            b = best.loc[order]
            left.text(share, yi, f" {b['candidate']} {b['realized']:.2g}×", va="center", fontsize=TEXT - 1)
    left.set_yticks(y, [s if len(s) <= 34 else s[:33] + "…" for s in sites["site"]], fontsize=TEXT - 1)
    left.invert_yaxis()
    left.set_xlim(0, max(float(sites["share"].max()) * 2.2, 0.05))  # room for the labels
    left.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    left.set_xlabel("share of the network's time (as it is)", fontsize=TEXT + 1)
    handles = [matplotlib.patches.Patch(color=c, label=v) for v, c in VERDICT_COLOURS.items()]
    left.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=4, fontsize=TEXT, frameon=False,
                title="verdict", title_fontsize=TEXT, alignment="left")
    measured = rows.dropna(subset=["theory", "realized"])
    if len(measured):
        families = sorted(measured["candidate"].str.split("(").str[0].unique())
        palette = dict(zip(families, sns.color_palette("colorblind", len(families)), strict=True))
        for family in families:
            part = measured[measured["candidate"].str.split("(").str[0] == family]
            right.scatter(part["theory"], part["realized"], s=14, color=palette[family], label=family)
        lo = float(min(measured["theory"].min(), measured["realized"].min())) * 0.8
        hi = float(max(measured["theory"].max(), measured["realized"].max())) * 1.25
        right.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi))
        right.plot([lo, hi], [lo, hi], color="0.3", lw=1, ls="--")
        right.axhline(1, color="#b3261e", lw=0.8, ls=":")
        _times_axis(right.xaxis)
        _times_axis(right.yaxis)
        right.legend(fontsize=TEXT, loc="upper left")
    right.set_xlabel("theoretical × (MACs as it is / candidate's)", fontsize=TEXT + 1)
    right.set_ylabel("realized × (median times)", fontsize=TEXT + 1)
    fig.suptitle(title, fontsize=TEXT + 2, x=0.01, ha="left")
    fig.tight_layout()
    return _save(fig, path)


def compiled(table: pd.DataFrame, path: Path) -> Path:
    """Eager against compiled for one environment and compile mode: per mode (columns), the top row sets
    each variant's realized × eager (hollow) beside its realized × compiled (filled), the bottom row each
    step's eager ÷ compiled time (right of 1×: compiling made it faster), with its 95 % interval."""
    modes = sorted(table["mode"].unique())
    labels = sorted(table["label"].unique())
    y = {lab: i for i, lab in enumerate(labels)}
    colours = sns.color_palette("colorblind", 4)
    fig, axes = plt.subplots(2, len(modes), figsize=(6.2 * len(modes), 1.1 * len(labels) + 3.2), squeeze=False,
                             sharey=True)
    for col, mode in enumerate(modes):
        part = table[table["mode"] == mode]
        top, bottom = axes[0, col], axes[1, col]
        layers = part[~part["baseline"]]
        ys = np.array([y[lab] for lab in layers["label"]])
        top.scatter(layers["eager"], ys - 0.12, marker="o", s=40, facecolors="white", edgecolors=colours[0],
                    linewidths=1.4, label="realized ×, eager", zorder=3)
        top.scatter(layers["compiled"], ys + 0.12, marker="o", s=40, color=colours[1], label="realized ×, compiled",
                    zorder=4)
        top.set_title(f"{mode}: speedup over the standard conv", fontsize=TEXT + 2)
        ys = np.array([y[lab] for lab in part["label"]])
        err = np.vstack([part["vs_eager"] - part["vs_eager_low"].fillna(part["vs_eager"]),
                         part["vs_eager_high"].fillna(part["vs_eager"]) - part["vs_eager"]])
        bottom.errorbar(part["vs_eager"], ys, xerr=err, fmt="s", ms=5, lw=1.2, color=colours[2],
                        label="eager ÷ compiled time", zorder=4)
        bottom.set_title(f"{mode}: what compiling did to each step", fontsize=TEXT + 2)
        for ax, values in ((top, [*layers["eager"], *layers["compiled"]]),
                           (bottom, [*part["vs_eager_low"], *part["vs_eager_high"], *part["vs_eager"]])):
            ax.axvline(1, color="#b3261e", lw=1, ls=":")
            ax.set_xscale("log")
            shown = [v for v in (*values, 1.0) if v == v and v > 0]  # NaN-free, 1× always in view
            ax.set_xlim(min(shown) / 1.2, max(shown) * 1.2)
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
            ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
            ax.set_yticks(range(len(labels)), labels, fontsize=TEXT + 1)
            ax.tick_params(axis="x", labelsize=TEXT)
        top.set_xlabel("× (log scale; left of 1× is slower than the standard conv)", fontsize=TEXT + 1)
        bottom.set_xlabel("× (log scale; left of 1× compiled is slower than eager)", fontsize=TEXT + 1)
    axes[0, 0].invert_yaxis()
    axes[0, 0].legend(loc="lower right", fontsize=TEXT, frameon=False)
    fig.tight_layout()
    return _save(fig, path)
