"""The report's first screen: device classes compared on the same cases, never across settings, and
findings sentences whose numbers are recomputed here from the records."""

from __future__ import annotations

import json
import re

import numpy as np

from conftest import committed
from sepbench.report import analysis, summary
from sepbench.store import load

CPU = committed("default-cpu-vm-torch2.12.0+cu130-20261123T045948Z.jsonl",
                "default-cpu-vm-torch2.13.0+cpu-20261123T050308Z.jsonl")
H100_DEFAULT = committed("default-cuda-h100-torch2.11.0+cu130-20261123T025103Z.jsonl")
H100_BATCH32 = committed("gpu-cuda-h100-*.jsonl")


def _df(paths: list) -> object:
    return analysis.prepare(load(paths)[0])


def test_one_environment_per_device_class_the_newest_torch_cpu_first() -> None:
    envs = summary.representative_envs(_df([*CPU, *H100_DEFAULT]))
    assert envs == ["vm · cpu · torch 2.13.0+cpu · 1 thr", "h100 · cuda · torch 2.11.0+cu130 · 16 thr"]


def test_the_newest_run_s_host_answers_first_as_an_environment_of_its_own() -> None:
    """A run that records its host is its own environment (`vm@<host>`), never pooled with the committed runs
    of machines named alike; the class with the newest run comes first, as a user's own run would."""
    newest = committed("trust/between-run/*T162056Z.jsonl")
    envs = summary.representative_envs(_df([*CPU, *H100_DEFAULT, *newest]))
    host = json.loads(newest[0].read_text().splitlines()[0])["environment"]["host"]
    assert envs[0] == f"vm@{host[:6]} · cpu · torch 2.13.0+cpu · 1 thr"
    assert envs[1:] == ["vm · cpu · torch 2.13.0+cpu · 1 thr", "h100 · cuda · torch 2.11.0+cu130 · 16 thr"]


def test_columns_hold_the_same_cases_under_one_setting_each() -> None:
    columns, rows = summary.common_cases(_df([*CPU, *H100_DEFAULT]))
    assert [c.setting for c in columns] == ["n1 float32", "n1 float32 TF32 cudnn.benchmark"]
    assert rows["shared"].all()
    keys = {c.env: sorted(map(tuple, rows[rows["column"] == c.env][summary.CASE_KEY].astype(object).map(str)
                              .to_numpy())) for c in columns}
    first, second = keys.values()
    assert first == second and len(first) == len(set(first)) == 192  # each case once per column
    for column, part in rows.groupby("column"):  # one setting per mode, never pooled
        assert part.groupby("mode")["setting"].nunique().max() == 1, column
    table = summary.summary_table(rows)
    theory = table.groupby(["mode", "label"])["theory"].agg(["min", "max"])
    assert np.allclose(theory["min"], theory["max"])  # the same cases: the same theory in every column


def test_device_classes_without_a_common_case_keep_their_own() -> None:
    columns, rows = summary.common_cases(_df([*CPU, *H100_BATCH32]))
    assert len(columns) == 2 and not rows["shared"].any()
    assert set(rows.loc[rows["device"] == "cuda", "batch"]) == {32} and set(rows.loc[rows["device"] == "cpu",
                                                                                      "batch"]) == {1}


def test_findings_numbers_recomputed_from_the_json_lines() -> None:
    """The 'slower than the standard conv in k of n' sentence, counted here from the H100 file's lines."""
    df = _df([*CPU, *H100_DEFAULT])
    columns, rows = summary.common_cases(df)
    sentences = summary.findings(df, columns, rows)
    assert 3 <= len(sentences) <= 5
    lines = [json.loads(line) for line in H100_DEFAULT[0].read_text().splitlines()[1:]]
    counts = {}
    for mode in ("inference", "train"):
        part = [r for r in lines if r["status"] == "ok" and r.get("realized") and r["case"]["mode"] == mode
                and r["case"]["variant"] == "depthwise_separable" and r["case"]["batch"] == 1]
        counts[mode] = (sum(r["realized"]["speedup"] < 1 for r in part), len(part))
    mode = max(counts, key=lambda m: (counts[m][0] / counts[m][1], counts[m][1]))
    slower = next(s for s in sentences if "slower than the standard conv" in s)
    assert f"depthwise-separable {mode} is slower than the standard conv in {counts[mode][0]} of {counts[mode][1]} " \
           "cases" in slower
    headline = sentences[0]
    theory = {r["theory"]["speedup"] for r in lines if r["status"] == "ok" and r["case"]["mode"] == "inference"
              and r["case"]["variant"] == "depthwise_separable"}
    gm = float(np.exp(np.mean(np.log(sorted(theory)))))
    assert re.search(rf"{gm:.1f}× fewer FLOPs in theory", headline), headline
