"""The cost model against an independent counter (FlopCounterMode on the meta device), against
`sum(p.numel())`, and against hand-worked numbers in both FLOP conventions."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sepbench.case import VARIANTS, Case
from sepbench.grid import load_preset, preset_names
from sepbench.theory import case_cost, compare, module_cost
from sepbench.zoo import build, input_shape, mobilenet_v1, mobilenet_v2


def _geometries(preset: str) -> list[Case]:
    """The preset's cases on cpu and cuda, reduced to what the cost depends on (not dtype/device/layout)."""
    seen: dict[str, Case] = {}
    for device in ("cpu", "cuda"):
        cases, _ = load_preset(preset).with_device(device).expand()
        for c in cases:
            c = replace(c, dtype="float32", device="cpu", memory_format="contiguous", cudnn_benchmark=None, tf32=None)
            seen.setdefault(c.id, c)
    return list(seen.values())


def _counted(case: Case, train: bool = False) -> tuple[int, int, tuple[int, ...]]:
    module = build(case, device="meta")
    x = torch.empty(input_shape(case), device="meta", requires_grad=train)
    with FlopCounterMode(display=False) as counter:
        y = module(x)
        if train:
            y.backward(torch.empty_like(y))
    return counter.get_total_flops(), sum(p.numel() for p in module.parameters()), tuple(y.shape)


@pytest.mark.parametrize("preset", preset_names())
def test_forward_flops_params_and_shape_match_flop_counter_on_every_preset_case(preset: str) -> None:
    cases = _geometries(preset)
    assert cases
    for case in cases:
        flops, params, shape = _counted(case)
        cost = case_cost(case)
        assert cost.flops_2mac == flops, case.id
        assert cost.params == params, case.id
        assert cost.out_shape == shape, case.id


@pytest.mark.parametrize("variant", [v for v in VARIANTS if VARIANTS[v].family == "layer"])
def test_training_step_flops_are_three_forwards_and_flop_counter_agrees_up_to_its_grouped_grad_weight_count(
    variant: str,
) -> None:
    case = Case(variant, c_in=16, c_out=32, size=12, groups=4, expansion=2, mode="train")
    cost = case_cost(case)
    assert cost.flops("train") == 3 * cost.flops_2mac
    counted, _, _ = _counted(case, train=True)
    grouped = any(isinstance(m, nn.Conv2d) and m.groups > 1 for m in build(case, device="meta").modules())
    if not grouped:
        assert counted == cost.flops("train")
    else:
        # As of torch 2.13 FlopCounterMode counts a grouped conv's grad-weight `groups` times over
        # (forward + grad-input + g · grad-weight); our figure stays 3 × forward. Accept either, so
        # the day torch fixes it this test still holds, and nothing else is accepted.
        overcount = sum(
            2 * lc.macs * (2 + m.groups if isinstance(m, nn.Conv2d) else 3)
            for lc, m in zip(
                [lc for lc in cost.layers if lc.macs], [m for m in build(case, device="meta").modules()
                                                        if isinstance(m, (nn.Conv2d, nn.Linear))], strict=True,
            )
        )
        assert counted in (cost.flops("train"), overcount)


@pytest.mark.parametrize(("alpha", "rho"), [(1.0, 224), (0.5, 160), (0.25, 128)])
def test_networks_match_flop_counter_and_numel(alpha: float, rho: int) -> None:
    for variant in ("mobilenet_v1", "mobilenet_v1_fullconv", "mobilenet_v2", "mobilenet_v2_fullconv", "xception_block",
                    "xception_block_fullconv"):
        case = Case(variant, alpha=alpha, size=rho)
        flops, params, shape = _counted(case)
        cost = case_cost(case)
        assert (cost.flops_2mac, cost.params, cost.out_shape) == (flops, params, shape)


def test_mobilenet_v1_matches_the_paper() -> None:
    """Howard et al. 2017, Table 1/2: 569 M mult-adds and 4.2 M parameters at α=1, ρ=224."""
    cost = module_cost(mobilenet_v1(1.0).to("meta"), (1, 3, 224, 224))
    assert round(cost.macs / 1e6) == 569
    conv_and_fc = sum(lc.params for lc in cost.layers if lc.kind in ("Conv2d", "Linear"))
    assert round(conv_and_fc / 1e6, 1) == 4.2


def _conv_and_fc_params(cost: object) -> int:
    return sum(lc.params for lc in cost.layers if lc.kind in ("Conv2d", "Linear"))  # type: ignore[attr-defined]


@pytest.mark.parametrize(("alpha", "rho", "macs_m", "params_m"), [
    (1.0, 224, 300, 3.47), (1.0, 192, 221, 3.47), (1.0, 160, 154, 3.47), (1.0, 128, 99, 3.47), (1.4, 224, 582, 6.06),
])
def test_mobilenet_v2_matches_the_reference_checkpoints(alpha: float, rho: int, macs_m: int, params_m: float) -> None:
    """The authors' released models (tensorflow/models, research/slim/nets/mobilenet/README.md): MACs in
    millions, truncated, and conv + FC parameters in millions (theirs have 1001 classes: +1 281 weights)."""
    cost = module_cost(mobilenet_v2(alpha).to("meta"), (1, 3, rho, rho))
    assert int(cost.macs / 1e6) == macs_m
    assert round((_conv_and_fc_params(cost) + 1 + int(1280 * max(1, alpha))) / 1e6, 2) == params_m


def test_mobilenet_v2_against_the_paper() -> None:
    """Sandler et al. 2018, Table 4 gives 300 M MAdds / 3.4 M params at α=1 and 585 M / 6.9 M at α=1.4,
    without saying how it counts. MAdds agree within 1 %; the params agree at α=1 (3.47 M, which the
    table truncates) but not at 1.4: the released 1.4 model has 6.06 M, as does this one (test above)."""
    one, wide = (module_cost(mobilenet_v2(a).to("meta"), (1, 3, 224, 224)) for a in (1.0, 1.4))
    assert abs(one.macs / 300e6 - 1) < 0.01 and abs(wide.macs / 585e6 - 1) < 0.01
    assert int(_conv_and_fc_params(one) / 1e5) / 10 == 3.4
    assert abs(_conv_and_fc_params(wide) / 6.9e6 - 1) > 0.1


def test_hand_worked_xception_block() -> None:
    """Chollet 2017, middle flow at ρ=299: 19×19×728; three separable convs (depthwise 3×3 + pointwise 1×1)."""
    case = Case("xception_block", size=299)
    assert input_shape(case) == (1, 728, 19, 19)
    pixels = 19 * 19
    cost = case_cost(case)
    assert cost.macs == 3 * (728 * 9 + 728 * 728) * pixels
    assert _conv_and_fc_params(cost) == 3 * (728 * 9 + 728 * 728)
    assert cost.out_shape == (1, 728, 19, 19)
    twin = case_cost(case.baseline())
    assert twin.macs == 3 * 728 * 728 * 9 * pixels
    assert twin.flops_2mac / cost.flops_2mac == pytest.approx(1 / (1 / 728 + 1 / 9))  # the textbook ratio


def test_hand_worked_standard_conv_in_both_conventions() -> None:
    # 3×3, 32→32, 56×56, batch 1: each output is a dot product of length L = 32·9 = 288.
    outputs = 32 * 56 * 56
    cost = case_cost(Case("standard", c_in=32, c_out=32, size=56))
    assert cost.macs == 288 * outputs == 28_901_376
    assert cost.flops(convention="2mac") == 57_802_752
    assert cost.flops(convention="exact") == (2 * 288 - 1) * outputs == 57_702_400
    assert cost.params == 32 * 32 * 9 == 9216
    with_bias = case_cost(Case("standard", c_in=32, c_out=32, size=56, bias=True))
    assert with_bias.flops(convention="exact") == 57_702_400 + outputs  # one add per output
    assert with_bias.flops(convention="2mac") == 57_802_752  # bias ignored, as FlopCounterMode does
    assert (with_bias.params, with_bias.params_no_bias) == (9216 + 32, 9216)


def test_hand_worked_depthwise_separable_and_the_textbook_ratio() -> None:
    case = Case("depthwise_separable", c_in=32, c_out=64, size=56)
    cost = case_cost(case)
    hw = 56 * 56
    assert cost.macs == 32 * 9 * hw + 32 * 64 * hw == 7_325_696
    assert cost.flops(convention="exact") == (2 * 9 - 1) * 32 * hw + (2 * 32 - 1) * 64 * hw == 14_350_336
    assert cost.params == 32 * 9 + 32 * 64
    # Cost relative to standard is 1/N + 1/K² (N = C_out): 8× cheaper-ish for 3×3.
    assert compare(case).speedup == pytest.approx(1 / (1 / 64 + 1 / 9))


def test_spatial_factorization_saves_a_third_at_equal_channels_and_loses_when_c_out_is_large() -> None:
    assert compare(Case("spatially_separable", c_in=32, c_out=32)).speedup == pytest.approx(1.5)
    # (C_in + C_out) / (k · C_in) > 1 once C_out > (k − 1) · C_in
    assert compare(Case("spatially_separable", c_in=16, c_out=64)).speedup == pytest.approx(48 / 80)


def test_pointwise_with_padding_grows_the_map() -> None:
    cost = module_cost(nn.Conv2d(8, 8, 1, padding=1), (1, 8, 10, 10))
    assert cost.out_shape == (1, 8, 12, 12)
    assert cost.macs == 8 * 8 * 12 * 12


def test_depthwise_3x3_intensity_is_about_k_squared_over_4_in_fp32() -> None:
    cost = case_cost(Case("depthwise", c_in=256, c_out=256, size=56))
    assert cost.intensity() == pytest.approx(9 / 4, rel=0.01)
    dense = case_cost(Case("standard", c_in=256, c_out=256, size=56))
    assert dense.intensity() > 100  # compute-bound


def test_minimum_traffic_writes_and_reads_each_intermediate_once() -> None:
    case = Case("depthwise_separable", c_in=8, c_out=16, size=10, dtype="bfloat16")
    cost = case_cost(case)
    x, mid, y = 8 * 100, 8 * 100, 16 * 100
    weights = 8 * 9 + 8 * 16
    assert cost.bytes() == 2 * (x + 2 * mid + y + weights)
    assert math.isclose(cost.intensity(), cost.flops_2mac / cost.bytes())


def test_unsupported_module_is_refused_by_name() -> None:
    from sepbench.errors import SepbenchError

    with pytest.raises(SepbenchError, match="no cost rule for LSTM"):
        module_cost(nn.Sequential(nn.LSTM(4, 4)), (1, 4, 4, 4))
