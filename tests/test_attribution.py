"""Stage attribution: every profiled op lands in exactly one stage or a named overhead, the parts add
up, and profiling stays out of the timed blocks."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest
import torch

from conftest import requires_cuda, sepbench, tiny_grid
from sepbench import theory
from sepbench.case import VARIANTS, Case
from sepbench.grid import load_grid
from sepbench.measure import attribution, runner, timer
from sepbench.measure.workload import Workload
from sepbench.store import load, read_run

LAYERS = [v for v, spec in VARIANTS.items() if spec.family == "layer"]
NETWORKS = [v for v, spec in VARIANTS.items() if spec.family == "network"]


def _case(variant: str, mode: str) -> Case:
    if VARIANTS[variant].family == "network":
        return Case(variant, alpha=0.25, size=64, batch=2, mode=mode)
    return Case(variant, c_in=16, c_out=16, size=8, mode=mode, act="bn-relu")


def _mapped(case: Case) -> tuple[list, list[str], dict[str, torch.nn.Module]]:
    """The units of one hooked step and where each was put."""
    work = Workload(case)
    with attribution.profile([torch.profiler.ProfilerActivity.CPU]) as prof, ExitStack() as hooks:
        attribution._hook_modules(work.module, hooks)
        with torch.profiler.record_function(attribution.MAP):
            work.step()
    (_, units), = attribution._steps(prof.events(), attribution.MAP)
    return units, attribution._owners(units), dict(work.module.named_modules())


@pytest.mark.parametrize("mode", ["inference", "train"])
@pytest.mark.parametrize("variant", LAYERS + NETWORKS)
def test_every_profiled_op_lands_in_one_stage_or_a_named_overhead(variant: str, mode: str) -> None:
    case = _case(variant, mode)
    units, owners, modules = _mapped(case)
    assert len(owners) == len(units) > 0
    stages = {o[len("stage:"):] for o in owners if o.startswith("stage:")}
    overheads = {o[len("overhead:"):] for o in owners if o.startswith("overhead:")}
    assert all(o.startswith(("stage:", "overhead:")) for o in owners)
    assert stages <= {name or attribution.ROOT for name in modules}
    assert overheads <= set(attribution.CPU_OVERHEADS) - {"framework"}
    assert "unstaged" not in overheads  # the zoo's modules run no op outside a module
    # Every conv and linear of the cost model shows up as a stage of its own, forward and backward.
    layers = [lc.name for lc in theory.case_cost(case).layers if lc.macs]
    assert set(layers) <= stages
    if mode == "train":
        backward = [o for u, o in zip(units, owners, strict=True) if attribution._is_node(u)]
        assert {o for o in backward if o.startswith("stage:")} >= {f"stage:{name}" for name in layers}
        # Only AccumulateGrad lacks a forward op; it is the named overhead, never a stage.
        accumulate = [u.name for u, o in zip(units, owners, strict=True) if o == "overhead:grad accumulation"]
        assert accumulate and all("AccumulateGrad" in name for name in accumulate)


def test_the_residual_add_and_the_se_gate_belong_to_their_own_modules() -> None:
    units, owners, _ = _mapped(_case("inverted_residual", "inference"))
    assert [o for u, o in zip(units, owners, strict=True) if u.name == "aten::add"] == [f"stage:{attribution.ROOT}"]
    units, owners, _ = _mapped(_case("se_depthwise_separable", "inference"))
    assert [o for u, o in zip(units, owners, strict=True) if u.name == "aten::mul"] == ["stage:se"]


def test_the_parts_add_up_to_the_profiled_step() -> None:
    case = _case("se_depthwise_separable", "train")
    work = Workload(case)
    for cost in (0.0, 1e-7):
        one = attribution.profile_case(work.step, work.module, timer.synchronizer("cpu"), "cpu", cost, steps=1)
        assert one.total_s == pytest.approx(one.wall_s, rel=1e-9)  # one step: the parts are that step
        assert one.wall_s == pytest.approx(one.raw_wall_s - cost * one.events, rel=1e-9)
    many = attribution.profile_case(work.step, work.module, timer.synchronizer("cpu"), "cpu", 0.0, steps=7)
    assert many.steps == 7 and many.method == "positions"
    assert many.total_s == pytest.approx(sum(many.stages.values()) + sum(many.overheads.values()))
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in work.module.modules())  # hooks removed


def test_figures_join_the_cost_model_and_name_the_bottleneck() -> None:
    case = _case("depthwise_separable", "inference")
    cost = theory.case_cost(case)
    profiled = attribution.Profiled(stages={"dw": 6e-6, "dw_bn": 1e-6, "dw_act": 0.5e-6, "pw": 2e-6, "pw_bn": 1e-6,
                                            "pw_act": 0.5e-6},
                                    kinds={}, overheads={"framework": 1e-6}, wall_s=12e-6, raw_wall_s=12e-6,
                                    events=20, steps=5, method="positions")
    att = attribution.figures(profiled, cost, case.mode, peak_flops=1e11, peak_bandwidth=1e10, cost_per_event=0.0)
    by_name = {s.name: s for s in att.stages}
    assert sum(s.flops for s in att.stages) == cost.flops(case.mode)
    assert sum(s.bytes for s in att.stages) == cost.bytes(case.mode)
    assert by_name["dw"].flop_s == pytest.approx(by_name["dw"].flops / 6e-6)
    assert by_name["dw_bn"].flops == 0 and by_name["dw_bn"].flop_s is None
    assert att.bottleneck == "dw"  # half the time for an eighth of the FLOPs
    assert att.total_s == pytest.approx(12e-6)


def test_profiling_happens_after_the_timed_blocks_never_during_them(tmp_path: Path, monkeypatch) -> None:
    events: list[tuple[str, bool]] = []
    time_block = timer.time_block

    def timed(*args, **kwargs):  # every timed block notes whether a profiler was recording as it began
        events.append(("block", torch._C._autograd._profiler_enabled()))
        return time_block(*args, **kwargs)

    profile_case = attribution.profile_case

    def profiled(*args, **kwargs):
        events.append(("profile", torch._C._autograd._profiler_enabled()))
        return profile_case(*args, **kwargs)

    monkeypatch.setattr(timer, "time_block", timed)
    monkeypatch.setattr(attribution, "profile_case", profiled)
    grid = load_grid(tiny_grid(tmp_path / "tiny.toml"))
    run = read_run(runner.Runner(grid, tmp_path / "out").run().path)
    assert all(r.attribution is not None for r in run.records)
    assert not any(enabled for kind, enabled in events if kind == "block")
    kinds = [kind for kind, _ in events]
    assert kinds[:kinds.index("profile")].count("block") > 0
    groups = len({r.group_id for r in run.records})
    runs_of_profiles = sum(1 for i, k in enumerate(kinds) if k == "profile" and (i == 0 or kinds[i - 1] == "block"))
    assert runs_of_profiles == groups  # a group's profiles come as one run, after its first sitting's blocks
    assert kinds[-1] == "block"  # and its later sittings follow: profiling happens once, not per sitting


def test_a_run_without_profiling_records_none_and_old_records_still_load(tmp_path: Path) -> None:
    grid = load_grid(tiny_grid(tmp_path / "tiny.toml"))
    path = runner.Runner(grid, tmp_path / "out", profile=False).run().path
    run = read_run(path)
    assert all(r.attribution is None and r.attribution_error is None for r in run.records)
    df, problems = load([path])
    assert problems == [] and df["attribution_error"].isna().all()


@requires_cuda
@pytest.mark.cuda
def test_cuda_stages_are_kernel_time_and_the_rest_is_device_idle() -> None:
    case = Case("depthwise_separable", c_in=64, c_out=64, size=28, batch=1, device="cuda")
    work = Workload(case)
    profiled = attribution.profile_case(work.step, work.module, timer.synchronizer("cuda"), "cuda", 0.0)
    assert set(profiled.overheads) == set(attribution.CUDA_OVERHEADS)
    assert profiled.device_busy_s is not None and 0 < profiled.device_busy_s <= profiled.wall_s
    assert profiled.stages["dw"] > 0 and profiled.stages["pw"] > 0
    assert profiled.total_s == pytest.approx(profiled.wall_s, rel=0.05)


def test_explain_reads_a_case_from_results_and_measures_one_that_is_not_there(tmp_path: Path) -> None:
    grid = load_grid(tiny_grid(tmp_path / "tiny.toml"))
    runner.Runner(grid, tmp_path / "out").run()
    done = sepbench("explain", "depthwise_separable", "--c-in", "8", "--size", "8", "--threads", "1",
                    "--results", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert "dw ◀" in done.stdout and "pw" in done.stdout and "timer median" in done.stdout
    assert "tiny" in done.stdout and "measured now" not in done.stdout  # from the file, which it names
    fresh = sepbench("explain", "inverted_residual", "--c-in", "8", "--size", "8", "--threads", "1", "--mode",
                     "train", "--results", tmp_path / "out")
    assert fresh.returncode == 0, fresh.stderr
    assert "measured now" in fresh.stdout and "body.dw" in fresh.stdout and "grad accumulation" in fresh.stdout


@pytest.mark.parametrize("args, message", [
    (["no_such_variant"], "unknown variant 'no_such_variant'"),
    (["grouped", "--c-in", "6", "--groups", "4"], "groups"),
    (["standard", "--results", "/no/such/dir"], "does not exist"),
])
def test_explain_refuses_bad_input_in_one_line(args: list[str], message: str) -> None:
    done = sepbench("explain", *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) <= 2
