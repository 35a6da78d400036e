"""What the report's figures and first screen claim, checked against the committed records: the stage
figure and the bottleneck table give one aggregate, recomputed here from the JSON lines; no two stages
share a colour in a figure; one speedup colour scale; round binary byte ticks; rows of different PyTorch
versions compared on the same cases; the upgrade's verdict and the 80 %-power wording against the
injected comparisons."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from conftest import RESULTS, committed
from sepbench import zoo
from sepbench.ab import stats as ab_stats
from sepbench.case import VARIANTS, Case
from sepbench.report import analysis, comparisons, plots  # plots chooses the Agg backend
from sepbench.store import load

ATTRIBUTED = [*committed("isa/default-cpu-vm-torch2.13.0+cpu-20261130T160758Z.jsonl"),
              *committed("trust/back-to-back/default-cpu-vm-torch2.13.0+cpu-2026113*Z.jsonl")[:2]]


@pytest.fixture(scope="module")
def attributed() -> pd.DataFrame:
    return analysis.prepare(load(ATTRIBUTED)[0])


def _by_hand(paths: list[Path], variant: str, stage: str) -> dict[tuple[int, str, str], tuple[float, float, int]]:
    """Per setting (batch, dtype, mode): the stage's median share of time and of FLOPs over the cases, each
    case first at its median over runs: straight from the JSON lines."""
    per_case: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for path in paths:
        for line in path.read_text().splitlines()[1:]:
            r = json.loads(line)
            a = r.get("attribution")
            if r.get("kind") != "case" or r["status"] != "ok" or not a or r["case"]["variant"] != variant:
                continue
            mine = [s for s in a["stages"] if s["name"] == stage]
            seconds, flops = sum(s["seconds"] for s in mine), sum(s["flops"] for s in mine)
            c = r["case"]
            per_case[(c["batch"], c["dtype"], c["mode"], r["case_id"])].append(
                (seconds / a["total_s"], flops / r["theory"]["flops_step"]))
    settings: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for (*setting, _), runs in per_case.items():
        settings[tuple(setting)].append(tuple(np.median(np.array(runs), axis=0)))
    return {k: (float(np.median([t for t, _ in v])), float(np.median([f for _, f in v])), len(v))
            for k, v in settings.items()}


def test_the_stage_figure_and_the_bottleneck_table_are_one_aggregate(attributed: pd.DataFrame,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    """The bars the stage figure draws for a variant's bottleneck stage are the table's median shares, and
    both are the medians recomputed here over the named cases (each case once, at its median over runs)."""
    shares = analysis.stage_shares(analysis.stages(attributed))
    table = analysis.bottlenecks(attributed)
    assert len(table) and (table["cases"] < table["cases"].max() * 10).all()
    calls: list[tuple[bool, np.ndarray, str]] = []  # (the time bar?, widths per variant, colour)
    original = plt.Axes.barh

    def spy(self: plt.Axes, y: np.ndarray, width: np.ndarray, *args: object, **kwargs: object) -> object:
        calls.append((float(np.asarray(y)[0]) % 1 > 0.5, np.asarray(width, dtype=float), str(kwargs["color"])))
        return original(self, y, width, *args, **kwargs)

    monkeypatch.setattr(plt.Axes, "barh", spy)
    checked = 0
    for (env, setting), rows in table.groupby(["env", "setting"]):
        calls.clear()
        plots.stage_shares(shares, env, setting, tmp_path / "stages.png")
        part = shares[(shares["env"] == env) & (shares["setting"] == setting)]
        labels = sorted(part["label"].unique())
        colours = plots.stage_colours([*sorted(part.loc[~part["overhead"], "part"].unique()),
                                       *plots.OVERHEAD_COLOURS])
        for r in rows.itertuples():
            i = labels.index(r.label)
            colour = colours[r.stage]
            time_bar = next(w[i] for upper, w, c in calls if upper and c == colour)
            flop_bar = next(w[i] for upper, w, c in calls if not upper and c == colour)
            assert time_bar == pytest.approx(r.time_share) and flop_bar == pytest.approx(r.flop_share)
            checked += 1
    assert checked >= 18
    by_hand = _by_hand(ATTRIBUTED, "depthwise_separable", "dw")
    for (batch, dtype, mode), (time_share, flop_share, cases) in by_hand.items():
        row = table[(table["label"] == "depthwise_separable") & (table["setting"] == f"n{batch} {dtype} {mode}")]
        assert len(row) == 1 and row["stage"].iloc[0] == "dw"
        assert row["cases"].iloc[0] == cases
        assert row["time_share"].iloc[0] == pytest.approx(time_share)
        assert row["flop_share"].iloc[0] == pytest.approx(flop_share)


def _zoo_stage_names() -> set[str]:
    """Every module name of every zoo variant, by role: a superset of the stages attribution names."""
    names = set()
    for variant in VARIANTS:
        try:
            module = zoo.build(Case(variant=variant, c_in=16, c_out=16, size=32), device="meta")
        except ValueError:  # a variant this geometry does not admit
            continue
        names |= {analysis.stage_role(n) for n, _ in module.named_modules() if n}
    return names


def test_no_two_stages_share_a_colour_within_a_figure() -> None:
    """Every figure's parts (the stages of the committed records, the zoo's, a user's unknown ones, and the
    named overheads) get distinct colours; a known stage keeps its colour from figure to figure."""
    raw, _ = load([RESULTS])
    st = analysis.stages(analysis.prepare(raw))
    figures = [sorted(g.loc[~g["overhead"], "part"].unique()) for _, g in st.groupby(["env", "setting"])]
    everything = sorted(set(st["part"]) - set(plots.OVERHEAD_COLOURS) | _zoo_stage_names())
    strangers = [f"block{i}.conv" for i in range(24)]
    for names in [*figures, everything, everything + strangers]:
        colours = plots.stage_colours([*names, *plots.OVERHEAD_COLOURS])
        assert len(set(colours.values())) == len(colours), names
    assert plots.stage_colours(["dw", "pw"])["dw"] == plots.stage_colours(["conv", "dw"])["dw"]
    assert {"dw", "pw", "se.fc1", "dw_kx1", "(module)"} <= set(everything)


def test_one_speedup_scale_for_the_page_and_its_labels() -> None:
    assert plots.speedup_span(np.array([0.3, 1.3, 5.0])) == 3  # 1/8× to 8×: the largest |log2| rounded up
    span = plots.speedup_span(np.array([0.02, 1.3, 40.0]))
    assert span == plots.SPEEDUP_SPAN_MAX == 4  # never wider than 1/16× to 16×
    assert [plots.times_label(t) for t in (-4, -1, 0, 3)] == ["1/16×", "1/2×", "1×", "8×"]
    norm = plots._speedup_norm(span)
    assert norm(np.log2(1 / 8)) == pytest.approx(1 - norm(np.log2(8)))


@pytest.mark.parametrize("limits", [(3e3, 2e6), (500.0, 3e9), (2e4, 9e4)])
def test_byte_axes_tick_at_round_binary_values(limits: tuple[float, float]) -> None:
    fig, ax = plt.subplots()
    ax.set_xscale("log")
    ax.set_xlim(*limits)
    plots._bytes_axis(ax.xaxis)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()
              and limits[0] <= t.get_position()[0] <= limits[1]]
    plt.close(fig)
    assert len(labels) >= 2
    assert all(re.fullmatch(r"(1|2|4|8|16|32|64|128|256|512) (B|KiB|MiB|GiB)", t) for t in labels), labels


def test_overview_rows_of_two_versions_are_compared_on_their_shared_cases() -> None:
    """2.12 and 2.13 on the VM measured different case sets; the last column compares them on the cases
    both measured, recomputed here, as docs/report.md quotes it."""
    df = analysis.prepare(load(committed("default-cpu-vm-torch2.12.0+cu130-20261123T045948Z.jsonl",
                                         "default-cpu-vm-torch2.13.0+cpu-20261123T050308Z.jsonl",
                                         "full-shard1of200-cpu-vm-torch2.13.0+cpu-20261123T232118Z.jsonl"))[0])
    overview = analysis.like_with_like(df, analysis.summary(df, ["env", "setting", "label"]))
    rows = overview[(overview["label"] == "depthwise_separable") & (overview["setting"] == "n1 float32 inference")]
    assert set(rows["versions"]) == {2} and rows["shared_cases"].nunique() == 1
    v = analysis.variants(df)
    v = v[(v["label"] == "depthwise_separable") & (v["setting"] == "n1 float32 inference")]
    sets = [set(g["geometry"]) for _, g in v.groupby("env_torch")]
    shared = set.intersection(*sets)
    assert rows["shared_cases"].iloc[0] == len(shared) < max(len(s) for s in sets)
    for r in rows.itertuples():
        mine = v[(v["env"] == r.env) & v["geometry"].isin(shared)].groupby("geometry")["realized_speedup"].median()
        assert r.shared_realized == pytest.approx(float(np.exp(np.log(mine).mean())))
    old, new = (rows[rows["env"].str.contains(f"torch {t}")].iloc[0] for t in ("2.12", "2.13"))
    docs = " ".join((Path(__file__).resolve().parent.parent / "docs" / "report.md").read_text().split())
    assert (f"{old.realized:.2f}× over {old.cases} cases under 2.12 and {new.realized:.2f}× over {new.cases} under "
            f"2.13 in their own rows, an apparent loss; {old.shared_realized:.2f}× and {new.shared_realized:.2f}× on "
            f"the {new.shared_cases} cases both measured") in docs


def test_the_newest_upgrade_and_its_calibration() -> None:
    """The first screen's comparison is the current protocol's newest release pair of eager layers (a compiled
    grid's is on its card); its calibration counts the A/A and injected files of its protocol, machine and kind
    (eager or compiled), and names the builds."""
    found, _ = comparisons.load([RESULTS / "ab"])
    newest = comparisons.newest_upgrade(found)
    assert newest is not None and newest.group == comparisons.CURRENT and newest.upgrade
    torch_b = newest.header.b.environment["torch"]
    assert not newest.compiled and any(c.compiled and c.upgrade for c in found)
    assert all(comparisons._newest(c) <= comparisons._newest(newest) for c in found
               if c.upgrade and c.group == comparisons.CURRENT and c.spec is None and not c.compiled)
    aa = [k for k in found if k.calibration and not k.header.inject and k.header.protocol == newest.header.protocol
          and k.spec == newest.spec and not k.compiled  # a network's A/A calibrates its own
          and k.machine == newest.machine]  # and one host's A/A its own host's comparisons
    assert newest.spec is None  # the grid's comparison answers first; the networks are named beside it
    assert {k.path for k in newest.calibrations if not k.header.inject} == {k.path for k in aa}
    lead, detail = comparisons.verdict(newest)
    flags = sum(k.summary.flagged for k in aa)
    cases = sum(k.summary.compared for k in aa)
    assert f"A/A {flags} false flag" in detail and f"in {cases} cases" in detail
    assert comparisons.build_kind(torch_b) in lead and f"{newest.summary.flagged}" in lead
    assert comparisons.build_kind("2.13.0+cpu") == "CPU build"
    assert comparisons.build_kind("2.12.0+cu130") == "CUDA 13.0 build"
    assert all(c.group == comparisons.EARLIER for c in found if "design" in c.path.parts)
    assert len({c.anchor for c in found}) == len(found)


@pytest.mark.parametrize("path", sorted(RESULTS.glob("ab/**/*inject*.jsonl")), ids=lambda p: p.name[-24:])
def test_the_80_percent_power_change_holds_on_the_injected_files(path: Path) -> None:
    """A case whose '80 %-power change' is at or below the injected size is found at least 80 % of the
    time (the half-width, always smaller, promises only about half)."""
    c, _ = comparisons._read(path)
    assert c is not None
    t = c.table[c.table["p"].notna()]
    found = t["verdict"].isin(ab_stats.FLAGS)
    covered = t["d80"] <= c.header.inject
    assert covered.sum() >= 30 and found[covered].mean() >= 0.8
    assert (t["d80"] > t["mdc"]).all()
