"""Grids: expansion, dropped combinations, presetss, grid-file validation."""

from __future__ import annotations

import re
from dataclasses import asdict

import pytest

from sepbench.errors import SepbenchError
from sepbench.grid import group_cases, load_preset, parse_grid, parse_shard, preset_names


def test_invalid_combinations_are_dropped_and_counted_by_reason() -> None:
    grid = parse_grid(
        """
        [grid]
        variants = ["grouped", "depthwise"]
        c_in = [32]
        c_out = [32, 48]
        groups = [3, 4]
        dtype = ["float32", "float16"]
        """, "t", "test",
    )
    cases, dropped = grid.expand()
    # grouped: g=4 fits (32,32) and (32,48), g=3 fits neither; depthwise needs 48 % 32 == 0; fp16 is CUDA-only
    assert dropped["float16 is measured on CUDA only"] == 6
    assert dropped["groups=3 must divide c_in=32 and c_out=32"] == 1
    assert dropped["groups=3 must divide c_in=32 and c_out=48"] == 1
    assert dropped["depthwise needs c_out a multiple of c_in (c_in=32, c_out=48)"] == 1
    labels = sorted(c.label() for c in cases)
    assert labels == ["depthwise", "grouped(g=4)", "grouped(g=4)", "standard", "standard"]  # baselines added


def test_presets_exist_and_smoke_covers_every_layer_variant() -> None:
    assert {"smoke", "default", "full", "networks"} <= set(preset_names())
    smoke, _ = load_preset("smoke").expand()
    assert len({c.variant for c in smoke}) == 9
    networks, _ = load_preset("networks").expand()
    assert {(c.alpha, c.size) for c in networks} == {(a, r) for a in (1.4, 1.0, 0.75, 0.5, 0.25)
                                                      for r in (224, 192, 160, 128)}
    nets = ("mobilenet_v1", "mobilenet_v2", "xception_block")
    assert {c.variant for c in networks} == {f"{net}{twin}" for net in nets
                                             for twin in ("", "_fullconv")}
    assert len(networks) == 3 * 2 * 5 * 4


def test_cuda_axes_only_multiply_cuda_cases() -> None:
    grid = load_preset("full")
    cpu, _ = grid.with_device("cpu").expand()
    cuda, _ = grid.with_device("cuda").expand()
    assert all(c.tf32 is None and c.cudnn_benchmark is None for c in cpu)
    assert {c.tf32 for c in cuda if c.dtype == "float32"} == {True, False}


@pytest.mark.parametrize("preset", ["default", "networks", "gpu"])
def test_shards_are_disjoint_deterministic_balanced_and_cover_the_grid(preset: str) -> None:
    grid = load_preset(preset).with_device("cuda")
    whole = grid.expand()[0]
    parts = [group_cases(grid.expand((k, 3))[0]) for k in (1, 2, 3)]
    ids = [c.id for part in parts for g in part for c in g]
    assert sorted(ids) == sorted(c.id for c in whole)
    assert len(ids) == len(set(ids))
    assert [c.id for g in group_cases(grid.expand((2, 3))[0]) for c in g] == [c.id for g in parts[1] for c in g]
    # Geometries (everything a group shares but the per-variant knobs) are dealt evenly, none twice.
    per_variant = ("variant", "groups", "expansion", "alpha", "cudnn_benchmark", "tf32")
    geometries = [{tuple(v for k, v in asdict(g[0]).items() if k not in per_variant) for g in part} for part in parts]
    assert max(map(len, geometries)) - min(map(len, geometries)) <= 1
    assert not set.intersection(*geometries)
    whole_groups = {g[0].group_id: [c.id for c in g] for g in group_cases(whole)}
    for part in parts:  # a group is never split, and keeps its baseline
        for g in part:
            assert [c.id for c in g] == whole_groups[g[0].group_id]
            assert g[0].variant == g[0].baseline().variant


@pytest.mark.parametrize(("preset", "device", "n"), [("default", "cpu", 4), ("default", "cpu", 2), ("full", "cpu", 200),
                                                   ("full", "cuda", 200)])
def test_every_shard_samples_every_axis_not_the_grids_order(preset: str, device: str, n: int) -> None:
    """Round-robin over the product's order aliased with the axes' lengths: 1/4 of `default` held only
    inference (training costs about 3× more per step), 1/200 of `full` one layout. The dealing is fixed,
    so this holds for every shard of these splits (a shard of a few geometries could miss a mode)."""
    grid = load_preset(preset).with_device(device)
    for k in range(1, n + 1):
        groups = [g[0] for g in group_cases(grid.expand((k, n))[0])]
        assert {c.mode for c in groups} == set(grid.spec.grid.mode), (k, n)
        assert {c.memory_format for c in groups} == set(grid.spec.grid.memory_format), (k, n)


def test_the_dealing_is_a_permutation() -> None:
    from sepbench.grid import _dealt

    for count in (1, 2, 3, 24, 1000, 2880):
        for n in (1, 4, 7):
            shards = [list(_dealt(count, k, n)) for k in range(n)]
            assert sorted(i for s in shards for i in s) == list(range(count))
            assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.mark.parametrize(("text", "message"), [("2/1", "1 ≤ K ≤ N"), ("0/3", "1 ≤ K ≤ N"), ("x", "K/N")])
def test_bad_shards(text: str, message: str) -> None:
    with pytest.raises(SepbenchError, match=message):
        parse_shard(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[grid\nvariants=", "test: not valid TOML"),
        ("[grid]\nkernal = [3]", "test: unknown key 'grid.kernal'"),
        ("[grid]\nc_in = [0]", "test: grid.c_in.0: Input should be greater than 0"),
        ("[grid]\nvariants = ['standrd']", "test: unknown variant 'standrd'; valid variants: standard"),
        ("[measure]\nmin_run_time = -1", "test: measure.min_run_time: Input should be greater than 0"),
        ("[grid]\ndtype = ['float64']", "test: grid.dtype.0: Input should be 'float32', 'bfloat16' or 'float16'"),
    ],
)
def test_grid_file_errors_are_one_clear_line(text: str, message: str) -> None:
    with pytest.raises(SepbenchError) as info:
        parse_grid(text, "t", "test")
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_digest_tracks_what_is_measured() -> None:
    a = load_preset("smoke")
    assert a.digest() == load_preset("smoke").digest()
    assert a.digest() != a.with_device("cuda").digest()


def test_axes_from_the_command_line_are_typed_and_validated_like_a_grid_file() -> None:
    from sepbench.grid import parse_axis

    grid = load_preset("smoke").with_axes(dict([parse_axis("c_in=16, 24"), parse_axis("mode=train")]))
    cases, _ = grid.expand()
    assert {c.c_in for c in cases} == {16, 24} and {c.mode for c in cases} == {"train"}
    with pytest.raises(SepbenchError, match=re.escape("--axis: unknown key 'grid.cin'")):
        load_preset("smoke").with_axes(dict([parse_axis("cin=16")]))
    with pytest.raises(SepbenchError, match=re.escape("--axis: grid.c_in.0: Input should be a valid integer")):
        load_preset("smoke").with_axes(dict([parse_axis("c_in=many")]))
    with pytest.raises(SepbenchError, match="KEY=V1,V2"):
        parse_axis("c_in")
