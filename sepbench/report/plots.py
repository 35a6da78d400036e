"""The report's figures, drawn with seaborn and saved as PNG files beside the page (no scripts, no
CDN: a page that opens offline). Each function takes frames from `analysis` / `versions` and a path,
and draws what it is given: no figure computes a number of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on CI or a server

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import TwoSlopeNorm
from matplotlib.ticker import FormatStrFormatter

DPI = 90
SPEEDUP_CMAP = "RdYlGn"  # red below 1 (slower than the baseline), green above
sns.set_theme(style="whitegrid", context="notebook", font_scale=0.85)


def _palette(labels: pd.Series) -> dict[str, tuple]:
    """One colour per variant label, the same in every figure of a report."""
    names = sorted(labels.unique())
    return dict(zip(names, sns.color_palette("tab20" if len(names) > 10 else "tab10", len(names)), strict=True))


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


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _speedup_norm(values: np.ndarray) -> TwoSlopeNorm:
    """Diverging at 1× on a log scale: a 2× slowdown is as red as a 2× speedup is green."""
    logs = np.log2(values[np.isfinite(values) & (values > 0)])
    span = max(float(np.abs(logs).max()) if logs.size else 1.0, 0.1)
    return TwoSlopeNorm(vcenter=0.0, vmin=-span, vmax=span)


def grid_heatmaps(part: pd.DataFrame, title: str, path: Path) -> Path:
    """Channels × spatial size per variant: theoretical speedup, realized speedup, efficiency. One
    heatmap per measure with the variants side by side (seaborn redraws the whole figure once per
    heatmap, so one heatmap per variant would cost quadratic time)."""
    rows = [("theory_speedup", "theoretical × (FLOP ratio, 2mac)", ".1f"),
            ("realized_speedup", "realized × (median times)", ".2f"),
            ("realized_efficiency", "efficiency = realized / theoretical", ".2f")]
    labels = sorted(part["label"].unique())
    sizes = sorted(part["size"].unique())
    columns = pd.MultiIndex.from_product([labels, sizes], names=["label", "size"])
    fig, axes = plt.subplots(len(rows), 1, figsize=(0.5 * len(columns) + 2, 1.0 + 0.42 * part["c_in"].nunique() * 3
                                                                                   + 0.9 * len(rows)), squeeze=False)
    for ax, (column, name, fmt) in zip(axes[:, 0], rows, strict=True):
        pivot = part.pivot_table(index="c_in", columns=["label", "size"], values=column, aggfunc="median")
        pivot = pivot.reindex(columns=columns)
        sns.heatmap(np.log2(pivot.where(pivot > 0)), ax=ax, cmap=SPEEDUP_CMAP, norm=_speedup_norm(pivot.to_numpy()),
                    cbar=False, xticklabels=[str(s) for _, s in columns], yticklabels=list(pivot.index))
        _annotate(ax, pivot, fmt)
        ax.grid(False)
        for i in range(1, len(labels)):
            ax.axvline(i * len(sizes), color="white", lw=3)
        for i, lab in enumerate(labels):
            ax.text((i + 0.5) * len(sizes), -0.15, lab, ha="center", va="bottom", fontsize=7.5)
        ax.set_xlabel("spatial size (per variant)", fontsize=8)
        ax.set_ylabel("C_in", fontsize=8)
        ax.set_title(name, fontsize=9, loc="left", pad=16)
        ax.tick_params(axis="x", labelsize=7, rotation=0)
    fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    fig.subplots_adjust(hspace=0.45)
    return _save(fig, path)


def _annotate(ax: plt.Axes, values: pd.DataFrame, fmt: str) -> None:
    """Cell values, added after seaborn's heatmap has drawn: its own `annot` text is re-laid-out on
    every later heatmap's full-figure draw."""
    for (r, c), v in np.ndenumerate(values.to_numpy()):
        if np.isfinite(v):
            ax.text(c + 0.5, r + 0.5, format(v, fmt), ha="center", va="center", fontsize=7)


def speedup_scatter(v: pd.DataFrame, path: Path) -> Path:
    """Theoretical against realized speedup, one panel per environment, with y = x and y = 1."""
    g = sns.relplot(data=v, x="theory_speedup", y="realized_speedup", hue="label", style="mode", col="env",
                    palette=_palette(v["label"]), hue_order=sorted(v["label"].unique()),
                    col_order=sorted(v["env"].unique()), col_wrap=min(2, v["env"].nunique()), height=3.6,
                    aspect=1.15, s=22, alpha=0.8,
                    facet_kws={"sharex": True, "sharey": True})
    lo = float(min(v["theory_speedup"].min(), v["realized_speedup"].min())) * 0.8
    hi = float(max(v["theory_speedup"].max(), v["realized_speedup"].max())) * 1.25
    for ax in g.axes.flat:
        ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi))
        ax.plot([lo, hi], [lo, hi], color="0.3", lw=1, ls="--", label="y = x (theory realized)")
        ax.axhline(1, color="tab:red", lw=0.8, ls=":")
        ax.set_title(ax.get_title().replace("env = ", ""), fontsize=8)
    g.set_axis_labels("theoretical speedup (FLOP ratio, 2mac)", "realized speedup (median times)")
    return _save(g.figure, path)


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
        lines = []
        for _, c in ceilings[ceilings["env"] == env].sort_values("peak_flops", ascending=False).iterrows():
            ax.plot(x, np.minimum(c["peak_flops"], c["peak_bandwidth"] * x), lw=1.2, color="0.25",
                    ls="-" if c["ceiling"] in ("float32", "tf32") else "--")
            lines.append(f"{c['ceiling']}: {c['peak_flops'] / 1e12:.3g} TFLOP/s")
        bw = ceilings[ceilings["env"] == env]["peak_bandwidth"].max()
        lines.append(f"copy bandwidth: {bw / 1e9:.0f} GB/s")
        ax.text(0.98, 0.03, "measured ceilings\n" + "\n".join(lines), transform=ax.transAxes, ha="right", va="bottom",
                fontsize=7, bbox={"boxstyle": "round", "fc": "white", "ec": "0.7"})
        sns.scatterplot(data=pts, x="theory_intensity", y="achieved_flops", hue="label", palette=palette,
                        hue_order=labels, style="mode", s=18, alpha=0.75, ax=ax, legend=ax is axes.flat[0])
        ax.set(xscale="log", yscale="log", title=env,
               xlabel="arithmetic intensity (FLOP/byte, 2mac, minimum traffic)", ylabel="achieved FLOP/s (2mac)")
        ax.title.set_fontsize(9)
    for ax in list(axes.flat)[len(envs):]:
        ax.remove()
    if axes.flat[0].get_legend():
        sns.move_legend(axes.flat[0], "upper left", bbox_to_anchor=(1.0 if cols == 1 else 2.25, 1), fontsize=7)
    fig.subplots_adjust(hspace=0.35)
    return _save(fig, path)


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
        ax.set_title(ax.get_title().replace("env = ", ""), fontsize=8)
    g.set_axis_labels("share of the roofline bound reached", "")
    return _save(g.figure, path)


def memory(rows: pd.DataFrame, path: Path) -> Path:
    """Theoretical activation bytes (+ weight gradients in training) against the measured peak rise,
    one panel per measuring method."""
    g = sns.relplot(data=rows, x="theory_rise_bytes", y="measured_memory_bytes", hue="label", style="mode",
                    palette=_palette(rows["label"]), hue_order=sorted(rows["label"].unique()),
                    col="memory_method", col_order=sorted(rows["memory_method"].unique()),
                    col_wrap=min(2, rows["memory_method"].nunique()), height=3.6, aspect=1.3, s=20, alpha=0.8,
                    facet_kws={"sharex": False, "sharey": False})
    for ax in g.axes.flat:
        ax.set(xscale="log", yscale="log")
        lo, hi = min(ax.get_xlim()[0], ax.get_ylim()[0]), max(ax.get_xlim()[1], ax.get_ylim()[1])
        ax.plot([lo, hi], [lo, hi], color="0.3", lw=1, ls="--")
        ax.set_title(ax.get_title().replace("memory_method = ", ""), fontsize=8)
    g.set_axis_labels("theory: activations (+ weight grads in training), bytes", "measured peak rise, bytes")
    return _save(g.figure, path)


def settings_heatmap(pivot: pd.DataFrame, title: str, path: Path) -> Path:
    """Realized speedup per setting (rows) and variant (columns)."""
    fig, ax = plt.subplots(figsize=(0.95 * pivot.shape[1] + 4.5, 0.28 * pivot.shape[0] + 1.8))
    sns.heatmap(np.log2(pivot.where(pivot > 0)), ax=ax, cmap=SPEEDUP_CMAP, norm=_speedup_norm(pivot.to_numpy()),
                cbar=False, xticklabels=True, yticklabels=True)
    _annotate(ax, pivot, ".2f")
    ax.grid(False)
    ax.set(xlabel="", ylabel="", title=title)
    ax.title.set_fontsize(9)
    ax.xaxis.tick_top()
    ax.tick_params(axis="x", labelsize=7.5, rotation=30)
    ax.tick_params(axis="y", labelsize=7.5)
    for label in ax.get_xticklabels():
        label.set_ha("left")
    return _save(fig, path)


def networks(net: pd.DataFrame, path: Path) -> Path:
    """Each network against its full-conv twin over α × ρ: theoretical and realized, per environment."""
    panels = sorted(net.groupby(["env", "variant"]).groups)
    fig, axes = plt.subplots(len(panels), 2, figsize=(8.5, 2.9 * len(panels)), squeeze=False)
    for r, (env, variant) in enumerate(panels):
        part = net[(net["env"] == env) & (net["variant"] == variant)]
        for c, (column, name) in enumerate((("theory_speedup", "theoretical ×"), ("realized_speedup", "realized ×"))):
            pivot = part.pivot_table(index="alpha", columns="size", values=column, aggfunc="median")
            pivot = pivot.sort_index(ascending=False)
            sns.heatmap(np.log2(pivot), ax=axes[r, c], cmap=SPEEDUP_CMAP, annot=pivot, fmt=".2f", cbar=False,
                        norm=_speedup_norm(np.concatenate([part["theory_speedup"], part["realized_speedup"]])))
            axes[r, c].set(title=f"{variant} · {env}\n{name}", xlabel="resolution ρ", ylabel="width α")
            axes[r, c].title.set_fontsize(8)
    return _save(fig, path)


def version_ratios(cmp: pd.DataFrame, path: Path) -> Path:
    """Every case's time ratio newer / older, per variant, coloured by verdict."""
    cmp = cmp.assign(pair=cmp["machine"] + " · " + cmp["device"] + " · " + cmp["threads"].astype(str) + " thr: "
                     + cmp["older"] + " → " + cmp["newer"])
    with _fixed_jitter():
        g = sns.catplot(data=cmp, x="ratio", y="label", hue="verdict", col="pair", kind="strip", height=3.8, aspect=1.4,
                        hue_order=["regression", "improvement", "within noise", "no repeat runs"],
                        palette={"regression": "tab:red", "improvement": "tab:green", "within noise": "0.6",
                                 "no repeat runs": "0.8"}, jitter=0.25, s=16, col_wrap=1)
    low, high = cmp["ratio"].min() / 1.2, cmp["ratio"].max() * 1.2
    ticks = [t for t in (0.25, 0.35, 0.5, 0.7, 1, 1.4, 2, 2.8, 4) if low <= t <= high]
    for ax in g.axes.flat:
        ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{t:g}×" for t in ticks])
        ax.xaxis.set_minor_locator(plt.NullLocator())
        ax.axvline(1, color="0.2", lw=1)
        ax.set_title(ax.get_title().replace("pair = ", ""), fontsize=8)
    g.set_axis_labels("time ratio newer / older (> 1: slower)", "")
    return _save(g.figure, path)


def trends(tr: pd.DataFrame, path: Path) -> Path:
    """Run-by-run median time (IQR bars) of a few cases, runs numbered in start order, coloured by
    PyTorch version."""
    tr = tr.assign(case=tr["label"] + " · " + tr["threads"].astype(str) + " thr\n"
                   + tr["geometry"].str.replace(" | ", "\n", regex=False), median_us=tr["timing_median_s"] * 1e6)
    g = sns.FacetGrid(tr, col="case", col_wrap=4, height=2.5, aspect=1.2, sharey=False, hue="env_torch")
    g.map_dataframe(_trend_panel)
    g.add_legend(title="torch")
    for ax in g.axes.flat:
        ax.set_ylim(0, ax.get_ylim()[1])  # after every version's points are in
    g.set_titles("{col_name}", size=7)
    g.set_axis_labels("run (numbered as in the table of runs)", "median µs")
    return _save(g.figure, path)


def _trend_panel(data: pd.DataFrame, color: tuple, label: str, **_: object) -> None:
    ax = plt.gca()
    err = np.vstack([data["median_us"] - data["timing_q1_s"] * 1e6, data["timing_q3_s"] * 1e6 - data["median_us"]])
    ax.errorbar(data["run"], data["median_us"], yerr=err, fmt="o", color=color, label=label, ms=4, capsize=2)


def feature_maps(maps: dict[str, object], path: Path) -> Path:
    """Channel mean of the input and of every stage's output, then the first three channels of each."""
    names = list(maps)
    fig, axes = plt.subplots(4, len(names), figsize=(2.3 * len(names), 9.4), squeeze=False)
    for c, name in enumerate(names):
        t = maps[name]
        axes[0, c].imshow(t.mean(0).numpy(), cmap="viridis")
        axes[0, c].set_title(f"{name}\nchannel mean", fontsize=8)
        for r in (1, 2, 3):
            if r - 1 < t.shape[0]:
                axes[r, c].imshow(t[r - 1].numpy(), cmap="viridis")
                axes[r, c].set_title(f"channel {r - 1}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    return _save(fig, path)


def ab_ratios(table: pd.DataFrame, title: str, path: Path) -> Path:
    """Each compared case's ratio B / A with its 95 % interval, sorted: flagged cases in colour."""
    data = table[table["p"].notna()].sort_values("ratio").reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(9, 3.6))
    colours = {"B slower": "#b3261e", "B faster": "#1b7a3a", "within noise": "#9aa0a6"}
    for verdict, part in data.groupby("verdict"):
        ax.errorbar(part.index, part["ratio"], yerr=[part["ratio"] - part["low"], part["high"] - part["ratio"]],
                    fmt="o", ms=2.5, lw=0.8, color=colours.get(verdict, "#5f6368"), label=f"{verdict} ({len(part)})")
    ax.axhline(1, color="#202124", lw=0.8)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.2f"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%.2f"))
    ax.set_xlabel("case, sorted by ratio")
    ax.set_ylabel("time ratio B / A")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


OVERHEAD_COLOURS = {"framework": "#9e9e9e", "layout": "#bdbdbd", "grad accumulation": "#757575",
                    "unstaged": "#e0e0e0", "device idle": "#616161"}


def stage_shares(shares: pd.DataFrame, env: str, mode: str, path: Path) -> Path:
    """Per variant, two stacked bars: where the step's time went (stages, then the named overheads in
    greys) and where its FLOPs are. A stage far longer in the first bar than in the second is where
    theory and practice part."""
    part = shares[(shares["env"] == env) & (shares["mode"] == mode)]
    labels = sorted(part["label"].unique())
    stage_names = sorted(part.loc[~part["overhead"], "part"].unique())
    # tab20 without its two greys, which are the overheads' here.
    hues = [c for i, c in enumerate(sns.color_palette("tab20", 20)) if i not in (14, 15)]
    colours = {name: hues[i % len(hues)] for i, name in enumerate(stage_names)} | OVERHEAD_COLOURS
    fig, ax = plt.subplots(figsize=(10, 0.75 * len(labels) + 1.6))
    y = np.arange(len(labels))
    for row, (column, offset, name) in enumerate((("time_share", -0.2, "time"), ("flop_share", 0.2, "FLOPs"))):
        left = np.zeros(len(labels))
        for p in [*stage_names, *OVERHEAD_COLOURS]:
            values = part[part["part"] == p].set_index("label")[column].reindex(labels).fillna(0).to_numpy()
            if not values.any():
                continue
            ax.barh(y + offset, values, left=left, height=0.38, color=colours[p],
                    label=p if row == 0 or p not in OVERHEAD_COLOURS else None, edgecolor="white", linewidth=0.5)
            left += values
        for yi in y:
            ax.text(-0.01, yi + offset, name, ha="right", va="center", fontsize=7, color="#555")
    ax.set_yticks(y, labels)
    ax.tick_params(axis="y", pad=38)
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.invert_yaxis()
    ax.set_title(f"{env} · {mode}: share of the step's time (upper bar) and of its FLOPs (lower bar)", fontsize=9)
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7, frameon=False,
              title="stage / overhead", title_fontsize=7)
    return _save(fig, path)
