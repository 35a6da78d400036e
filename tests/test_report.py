"""The report: its derived numbers, the cross-version noise model, the feature-map view, and a build
from committed results."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import RESULTS, committed, sepbench
from sepbench.report import analysis, featuremaps, versions
from sepbench.report.page import SECTIONS
from sepbench.store import load

# One run each of the default preset under two PyTorch versions, 1 thread, back to back.
CPU_PAIR = committed("default-cpu-vm-torch2.12.0+cu130-20261123T045948Z.jsonl",
                     "default-cpu-vm-torch2.13.0+cpu-20261123T050308Z.jsonl")
GPU = committed("gpu-cuda-h100-*.jsonl")
NETWORKS = committed("networks-cpu-*.jsonl")


def _runs(medians: dict[tuple[str, int], list[float]]) -> pd.DataFrame:
    """Run-median rows: {(torch version, run number): [median of case 0, case 1, …]}."""
    rows = []
    for (torch_version, run), values in medians.items():
        for case, t in enumerate(values):
            rows.append({"env_machine": "m", "device": "cpu", "threads": 1, "env_torch": torch_version,
                         "env_sepbench_commit": "c", "env_heap": "h", "run_id": f"{torch_version}-{run}",
                         "run_started": f"{run}",
                         "case_id": f"case{case}", "label": "depthwise", "geometry": f"g{case}", "variant": "depthwise",
                         "status": "ok", "timing_median_s": t, "timing_q1_s": t * 0.99, "timing_q3_s": t * 1.01})
    return pd.DataFrame(rows)


def test_versions_flag_a_real_change_and_not_run_to_run_noise() -> None:
    rng = np.random.default_rng(1)
    cases = 60
    base = rng.uniform(1e-4, 1e-3, cases)
    truth = np.ones(cases)
    truth[:3] = [2.0, 0.5, 1.6]  # three real changes; the rest are unchanged
    medians = {}
    for run in range(3):
        # Whole-run swings of ±30 % (every case at once) plus 5 % per case: the VM's real pattern.
        medians[("2.12.0", run)] = list(base * rng.uniform(0.7, 1.3) * rng.lognormal(0, 0.05, cases))
        medians[("2.13.0", run)] = list(base * truth * rng.uniform(0.7, 1.3) * rng.lognormal(0, 0.05, cases))
    cmp = versions.compare_versions(_runs(medians))
    summary = versions.summarize(cmp).iloc[0]
    assert (summary["cases"], summary["regressions"], summary["improvements"]) == (60, 2, 1)
    # The bar for a lone change: the 2× case clears it on its own; the 1.6× one is flagged only because
    # Benjamini–Hochberg relaxes the bar when several cases change.
    assert 1.6 < summary["resolvable"] < 2.0
    cmp = cmp.set_index("case_id")
    assert list(cmp.loc[["case0", "case1", "case2"], "verdict"]) == ["regression", "improvement", "regression"]
    assert (cmp.drop(["case0", "case1", "case2"])["verdict"] == "within noise").all()
    assert cmp.loc["case0", "low"] < 2.0 < cmp.loc["case0", "high"]
    # Ratio of geometric means of the run medians, newer / older.
    old = np.exp(np.mean(np.log([medians[("2.12.0", r)][0] for r in range(3)])))
    new = np.exp(np.mean(np.log([medians[("2.13.0", r)][0] for r in range(3)])))
    assert cmp.loc["case0", "ratio"] == pytest.approx(new / old)


def test_versions_flag_nothing_without_repeat_runs() -> None:
    """One run per version cannot tell a change from a slow run: no interval, no flag."""
    medians = {("2.12.0", 0): [1e-4, 2e-4], ("2.13.0", 0): [3e-4, 2e-4]}
    cmp = versions.compare_versions(_runs(medians))
    assert set(cmp["verdict"]) == {"no repeat runs"}
    assert cmp["low"].isna().all()
    assert cmp.set_index("case_id").loc["case0", "ratio"] == pytest.approx(3.0)


def test_versions_order_releases_numerically() -> None:
    medians = {(v, r): [1e-4] for v in ("2.9.0", "2.10.0") for r in range(2)}
    cmp = versions.compare_versions(_runs(medians))
    assert list(cmp[["older", "newer"]].iloc[0]) == ["2.9.0", "2.10.0"]


def test_store_gives_each_case_the_ceiling_its_roofline_used() -> None:
    df, problems = load(GPU)
    assert not problems
    ok = df[df["status"] == "ok"]
    tf32 = ok[(ok["dtype"] == "float32") & (ok["tf32"] == True)]  # noqa: E712
    assert set(tf32["ceiling"]) == {"tf32"} and set(ok[ok["dtype"] == "float16"]["ceiling"]) == {"float16"}
    # The recorded roofline bound is max(FLOPs / ceiling, bytes / bandwidth) with exactly these ceilings.
    bound = np.maximum(ok["theory_flops_step"] / ok["peak_flops"], ok["theory_bytes_step"] / ok["peak_bandwidth"])
    assert np.allclose(bound, ok["theory_roofline_s"], rtol=1e-9)


def test_summary_is_the_geometric_mean_of_the_cases() -> None:
    df = analysis.prepare(load(CPU_PAIR[:1])[0])
    table = analysis.summary(df, ["env", "mode", "label"]).set_index(["mode", "label"])
    part = analysis.variants(df)
    part = part[(part["mode"] == "train") & (part["label"] == "depthwise_separable")]
    row = table.loc[("train", "depthwise_separable")]
    assert row["cases"] == len(part) == 12
    assert row["realized"] == pytest.approx(np.exp(np.log(part["realized_speedup"]).mean()))
    assert row["theory"] == pytest.approx(np.exp(np.log(part["theory_speedup"]).mean()))
    assert row["realized_low"] <= row["realized"] <= row["realized_high"]
    assert row["efficiency"] == pytest.approx(row["realized"] / row["theory"])
    # Measured memory saving pairs each case with its own baseline in the same run.
    case = part.iloc[0]
    base = df[(df["run_id"] == case["run_id"]) & (df["case_id"] == case["group_id"])].iloc[0]
    saving = base["measured_memory_bytes"] / case["measured_memory_bytes"]
    assert case["measured_memory_saving"] == pytest.approx(saving)


def test_depthwise_keeps_channels_apart_and_the_others_mix_them() -> None:
    x = featuremaps.sample_input(32)
    bumped = x.clone()
    bumped[0, 1] += 1.0  # change channel 1 only
    before, after = featuremaps.stage_outputs(x), featuremaps.stage_outputs(bumped)
    names = list(before)
    dw = names[2]
    assert names[2].startswith("depthwise")
    changed = [(before[dw][c] - after[dw][c]).abs().max().item() > 0 for c in range(3)]
    assert changed == [False, True, False]
    for name in (names[1], names[3]):  # standard and pointwise: every output channel sees channel 1
        assert all((before[name][c] - after[name][c]).abs().max() > 0 for c in range(before[name].shape[0]))
    assert before[names[1]].shape == before[names[3]].shape == torch.Size([featuremaps.C_OUT, 32, 32])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report as a user builds it: the CLI, in its own process. Returns index.html."""
    out = tmp_path_factory.mktemp("report")
    done = sepbench("report", *CPU_PAIR, *GPU, *NETWORKS, "--out", out, "--pytest-benchmark",
                    RESULTS / "pytest-benchmark", "--asv-url", "asv/")
    assert done.returncode == 0, done.stderr
    records = sum(1 for p in (*CPU_PAIR, *GPU, *NETWORKS) for line in p.read_text().splitlines()[1:] if line)
    assert re.fullmatch(rf"report: {re.escape(str(out))}/index.html \({records} records from 4 files, 4 environments, "
                        r"\d+ figures; page [\d.]+ MB, data [\d.]+ MB\) in [\d.]+ s\n", done.stdout)
    return out / "index.html"


def test_report_has_every_section_and_every_figure_on_disk(built: Path) -> None:
    html = built.read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in html
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert len(sources) >= 8
    for src in sources:
        data = (built.parent / src).read_bytes()
        assert data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) > 3000  # lossless WebP
    assert "http://" not in html and "https://" not in html  # nothing fetched from elsewhere
    assert 'href="asv/"' in html
    for env in ("vm · cpu · torch 2.12.0+cu130 · 1 thr", "vm · cpu · torch 2.13.0+cpu · 1 thr",
                "vm · cpu · torch 2.13.0+cpu · 2 thr", "h100 · cuda · torch 2.11.0+cu130 · 16 thr"):
        assert f"<summary>{env}: " in html


def test_report_tells_theory_and_measurement_apart_with_their_numbers(built: Path) -> None:
    html = built.read_text()
    df = analysis.prepare(load([*CPU_PAIR, *GPU, *NETWORKS])[0])
    row = analysis.summary(df, ["env", "setting", "label"]).query(
        "env == 'h100 · cuda · torch 2.11.0+cu130 · 16 thr'"
        " and setting == 'n32 float32 no-TF32 inference cudnn.benchmark' and label == 'depthwise_separable'")
    assert len(row) == 1
    assert f'<td class="theory">{row["theory"].iloc[0]:.2f}×</td>' in html
    assert f"{row['realized'].iloc[0]:.2f}×</td>" in html
    assert "2mac" in html and "NVML" in html and "context" in html


def _page_images(out: Path) -> dict[str, bytes]:
    """Every image the page in `out` names, read through the page (missing ones raise)."""
    names = re.findall(r'src="([^"]+\.webp)"', (out / "index.html").read_text())
    assert names
    return {Path(n).name: (out / n).read_bytes() for n in names}


def test_interrupted_build_keeps_the_previous_report_and_rebuilds_identically(tmp_path: Path, monkeypatch) -> None:
    from sepbench.report import page as report

    first = report.build(NETWORKS, tmp_path)
    page = first.index.read_text()
    images = _page_images(tmp_path)

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(featuremaps, "stage_outputs", interrupt)  # the last step before the page is swapped in
    with pytest.raises(KeyboardInterrupt):
        report.build(NETWORKS, tmp_path)
    assert first.index.read_text() == page
    assert _page_images(tmp_path) == images
    monkeypatch.undo()
    again = report.build(NETWORKS, tmp_path)
    # Only the new page's figure folder is left: the interrupted build's is gone, and the first one's.
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [again.figures[0].parent.name]
    # The same results draw the same files (strip-plot jitter included).
    assert _page_images(tmp_path) == images


def test_report_cli_fails_in_one_line_on_bad_input(tmp_path: Path) -> None:
    missing = sepbench("report", tmp_path / "nope.jsonl", "--out", tmp_path / "r")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [f"sepbench: error: no such results file or directory: "
                                                   f"{tmp_path / 'nope.jsonl'}"]
    (tmp_path / "empty").mkdir()
    empty = sepbench("report", tmp_path / "empty", "--out", tmp_path / "r")
    assert empty.returncode == 2 and "no result records" in empty.stderr and "Traceback" not in empty.stderr


def test_a_kill_at_any_moment_of_a_build_leaves_the_previous_report_whole(tmp_path: Path) -> None:
    """SIGKILL the report command at many moments of a rebuild (loading, drawing in worker processes,
    feature maps, the swap): after each, the page there is whole and every figure it names exists,
    and no drawing worker outlives the build."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    out = tmp_path / "r"
    done = sepbench("report", *NETWORKS, "--out", out)
    assert done.returncode == 0, done.stderr
    started = time.perf_counter()
    sepbench("report", *NETWORKS, "--out", out)
    full = time.perf_counter() - started
    for fraction in (0.05, 0.15, 0.3, 0.45, 0.6, 0.7, 0.8, 0.88, 0.95, 1.0):
        proc = subprocess.Popen([sys.executable, "-m", "sepbench", "report", *map(str, NETWORKS), "--out", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(full * fraction)
        try:
            workers = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:  # the build had already ended
            workers = []
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert _page_images(out), f"killed at {fraction:.0%} of a build"
        deadline = time.monotonic() + 10
        while any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        alive = [w.pid for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
        assert not alive, f"drawing workers outlived a build killed at {fraction:.0%}: {alive}"


def test_the_overview_agrees_with_an_independent_computation_on_synthetic_results(tmp_path: Path) -> None:
    """The committed smoke run with every measured figure replaced by seeded random values; the page's
    overview rows are then recomputed here from the JSON lines with numpy alone."""
    import json

    (smoke,) = committed("smoke-cpu-vm-torch2.13.0+cpu-20261123T120618Z.jsonl")
    rng = np.random.default_rng(7)
    lines = [json.loads(line) for line in smoke.read_text().splitlines()]
    for r in lines[1:]:
        if r.get("timing"):
            t = float(rng.uniform(1e-4, 1e-2))
            r["timing"].update(median_s=t, q1_s=t * 0.98, q3_s=t * 1.02, times_s=[t], unstable=bool(rng.random() < 0.3))
        if r.get("realized"):
            s = float(rng.lognormal(0, 0.6))
            r["realized"].update(speedup=s, low=s * 0.9, high=s * 1.1, efficiency=s / r["theory"]["speedup"],
                                 spread=0.2, unstable=bool(rng.random() < 0.3))
        if r.get("memory"):
            r["memory"]["cpu_rss_rise_bytes"] = int(rng.integers(1, 50) * 2**20)
    data = tmp_path / "synthetic"
    data.mkdir()
    (data / "synthetic.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    built = sepbench("report", data, "--out", tmp_path / "out")
    assert built.returncode == 0, built.stderr
    html = (tmp_path / "out" / "index.html").read_text()

    cases = [r for r in lines[1:] if r["status"] == "ok"]
    memory = {(r["case"]["mode"], r["group_id"]): r["memory"]["cpu_rss_rise_bytes"] for r in cases
              if r["case_id"] == r["group_id"]}
    expected = {}
    for mode in ("inference", "train"):
        for label in sorted({r["case"]["variant"] for r in cases if r.get("realized")}):
            part = [r for r in cases
                    if r.get("realized") and r["case"]["mode"] == mode and r["case"]["variant"] == label]
            if not part:
                continue
            gm = lambda xs: float(np.exp(np.mean(np.log(xs))))  # noqa: E731
            theory, realized = gm([r["theory"]["speedup"] for r in part]), gm([r["realized"]["speedup"] for r in part])
            saving = gm([memory[(mode, r["group_id"])] / r["memory"]["cpu_rss_rise_bytes"] for r in part])
            expected[(mode, label)] = [str(len(part)), f"{theory:.2f}×", f"{realized:.2f}×", f"{realized / theory:.0%}",
                                       str(sum(r["realized"]["speedup"] < 1 for r in part)),
                                       str(sum(r["realized"]["unstable"] for r in part) or ""), f"{saving:.2f}×"]
    assert len(expected) >= 4
    overview = html.split('<section id="overview">', 1)[1].split("</section>", 1)[0]
    cell = r"<td[^>]*>([^<]*)</td>"
    found = {}
    for row in re.findall(r"<tr>(<td class=\"l\">.*?)</tr>", overview, flags=re.S):
        cells = re.findall(cell, row)
        # setting, variant, cases, theory, roofline, realized, interval, efficiency, slower, unstable, memory ×2
        mode = next(word for word in cells[0].split() if word in ("inference", "train"))
        found[(mode, cells[1].split("(")[0])] = [cells[i] for i in (2, 3, 5, 7, 8, 9, 11)]
    assert found == expected


def test_the_report_marks_a_run_taken_on_a_contended_machine(tmp_path: Path) -> None:
    """Each run that recorded its machine gets a row: threads, load at both ends, blocks re-taken, probe
    drift; a run taken beside other work is marked contended, a quiet one quiet."""
    busy, quiet = committed("trust/rounds/default-cpu-vm-torch2.13.0+cpu-20261130T050510Z.jsonl",
                            "trust/rounds/default-cpu-vm-torch2.13.0+cpu-20261130T054737Z.jsonl")
    for path in (busy, quiet):
        shutil.copy(path, tmp_path)
    built = sepbench("report", tmp_path, "--out", tmp_path / "report")
    assert built.returncode == 0, built.stderr
    html = (tmp_path / "report" / "index.html").read_text()
    section = html.split('id="conditions"', 1)[1].split("</table>", 1)[0]
    rows = section.split("<tr>")[2:]
    assert len(rows) == 2
    (busy_row,) = [r for r in rows if busy.name in r]
    (quiet_row,) = [r for r in rows if quiet.name in r]
    assert "<b>contended</b>" in busy_row and "1.0 → 1.0" in busy_row and "15%" in busy_row
    assert "quiet" in quiet_row and "contended" not in quiet_row and "0.0 → 0.0" in quiet_row
    assert "1 pinned thread" in busy_row
