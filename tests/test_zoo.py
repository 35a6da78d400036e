"""Every variant is a drop-in replacement for the standard conv; impossible cases are refused clearly."""

from __future__ import annotations

import pytest
import torch

from sepbench.case import VARIANTS, Case, check
from sepbench.errors import SepbenchError
from sepbench.zoo import InvertedResidual, SqueezeExcite, build, input_shape

LAYER_VARIANTS = [v for v, spec in VARIANTS.items() if spec.family == "layer"]
GEOMETRIES = [
    dict(c_in=8, c_out=8, size=9, kernel=3),
    dict(c_in=8, c_out=16, size=10, kernel=5, stride=2),
    dict(c_in=4, c_out=8, size=11, kernel=3, stride=3, dilation=2, bias=True),
    dict(c_in=8, c_out=8, size=12, kernel=7, act="bn-relu6"),
    dict(c_in=8, c_out=16, size=9, kernel=1, act="bn-relu"),
    dict(c_in=8, c_out=8, size=12, kernel=3, padding="valid", dilation=2),
]


@pytest.mark.parametrize("variant", LAYER_VARIANTS)
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: "-".join(f"{k}{v}" for k, v in g.items()))
def test_every_variant_produces_the_standard_conv_output_shape(variant: str, geometry: dict) -> None:
    case = Case(variant, groups=2, expansion=3, batch=2, **geometry)
    if variant == "pointwise" and case.padding == "valid" and case.kernel > 1:
        pytest.skip("refused by design, see test_refusals")
    x = torch.randn(input_shape(case))
    expected = build(case.baseline())(x).shape
    assert build(case)(x).shape == expected


@pytest.mark.parametrize("variant", ["mobilenet_v1", "mobilenet_v1_fullconv", "mobilenet_v2", "mobilenet_v2_fullconv"])
def test_networks_classify(variant: str) -> None:
    net = build(Case(variant, alpha=0.25, size=64, batch=2)).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 3, 64, 64)).shape == (2, 1000)


def test_fullconv_twin_replaces_each_depthwise_pointwise_pair_by_one_3x3_conv() -> None:
    def convs(variant: str) -> list[torch.nn.Conv2d]:
        return [m for m in build(Case(variant, alpha=0.5, size=64)).modules() if isinstance(m, torch.nn.Conv2d)]

    separable, twin = convs("mobilenet_v1"), convs("mobilenet_v1_fullconv")
    assert len(separable) == 1 + 2 * 13 and len(twin) == 1 + 13
    assert all(c.groups == 1 and c.kernel_size == (3, 3) for c in twin)
    assert [c.out_channels for c in twin[1:]] == [c.out_channels for c in separable[2::2]]


def test_mobilenet_v2_twin_replaces_each_depthwise_and_projection_by_one_3x3_conv() -> None:
    def convs(variant: str, part: str) -> list[torch.nn.Conv2d]:
        net = build(Case(variant, alpha=0.5, size=64))
        return [m for name, m in net.named_modules() if name.endswith(f".{part}")]

    depthwise, projections, twins = convs("mobilenet_v2", "dw"), convs("mobilenet_v2", "project"), \
        convs("mobilenet_v2_fullconv", "conv")
    assert len(depthwise) == len(projections) == len(twins) == 17  # Table 2: 1+2+3+4+3+3+1 bottlenecks
    assert all(d.groups == d.in_channels for d in depthwise) and all(c.groups == 1 for c in twins)
    for d, p, c in zip(depthwise, projections, twins, strict=True):
        assert (c.in_channels, c.out_channels, c.kernel_size, c.stride) == (d.in_channels, p.out_channels, (3, 3),
                                                                            d.stride)


def test_xception_block_adds_its_untouched_input() -> None:
    """The first ReLU must not be in place: it would overwrite the input the residual adds back."""
    block = build(Case("xception_block", alpha=0.05, size=64)).eval()
    x = torch.randn(input_shape(Case("xception_block", alpha=0.05, size=64)))
    with torch.no_grad():
        expected = x + block.body(x.clone())
        assert torch.equal(block(x), expected)
    kinds = [type(m).__name__ for m in block.body]
    assert kinds == ["ReLU", "Conv2d", "Conv2d", "BatchNorm2d"] * 3
    twin = build(Case("xception_block_fullconv", alpha=0.05, size=64))
    assert [type(m).__name__ for m in twin.body] == ["ReLU", "Conv2d", "BatchNorm2d"] * 3


def test_depthwise_separable_is_depthwise_then_pointwise() -> None:
    convs = [m for m in build(Case("depthwise_separable", c_in=8, c_out=16, stride=2)).modules()
             if isinstance(m, torch.nn.Conv2d)]
    assert [(c.groups, c.kernel_size, c.stride) for c in convs] == [(8, (3, 3), (2, 2)), (1, (1, 1), (1, 1))]


def test_se_and_inverted_residual_blocks() -> None:
    se = build(Case("se_depthwise_separable", c_in=16, c_out=16))
    assert any(isinstance(m, SqueezeExcite) for m in se.modules())
    block = build(Case("inverted_residual", c_in=16, c_out=16, expansion=6))
    assert isinstance(block, InvertedResidual) and block.residual
    assert not build(Case("inverted_residual", c_in=16, c_out=16, stride=2, expansion=6)).residual
    assert not build(Case("inverted_residual", c_in=16, c_out=32, expansion=6)).residual


@pytest.mark.parametrize(
    ("case", "message"),
    [
        (Case("grouped", c_in=32, c_out=48, groups=5),
         r"groups=5 must divide c_in=32 and c_out=48; valid groups: 1, 2, 4, 8, 16$"),
        (Case("depthwise", c_in=32, c_out=48), r"depthwise needs c_out a multiple of c_in .*valid c_out: 32, 64, 96"),
        (Case("standard", kernel=4), r"kernel=4 is even: padding='same' cannot keep the output shape symmetrically"),
        (Case("standard", kernel=5, size=3, padding="valid"),
         r"kernel reach d·\(k−1\)\+1 = 5 exceeds the padded input 3"),
        (Case("standard", c_in=0), r"c_in must be a positive integer, got 0"),
        (Case("standard", batch=-1), r"batch must be a positive integer, got -1"),
        (Case("nonsense"), r"unknown variant 'nonsense'; valid variants: standard, grouped, depthwise"),
        (Case("standard", dtype="float16"), r"float16 is measured on CUDA only"),
        (Case("pointwise", kernel=3, padding="valid"), r"pointwise \(1×1\) cannot match a 3×3 padding='valid'"),
        (Case("mobilenet_v1", alpha=2.5), r"alpha must lie in \(0, 2\]"),
        (Case("mobilenet_v1", size=16), r"resolution 16 is below MobileNet's total stride 32"),
    ],
)
def test_refusals_name_the_constraint_and_the_valid_choices(case: Case, message: str) -> None:
    with pytest.raises(SepbenchError, match=message):
        check(case)
    with pytest.raises(SepbenchError):
        build(case)


def test_ignored_knobs_do_not_split_equal_cases() -> None:
    assert Case("standard", groups=4, expansion=6).id == Case("standard").id
    assert Case("mobilenet_v1", c_in=64, alpha=0.5).id == Case("mobilenet_v1", alpha=0.5).id
    assert Case("standard", tf32=True).tf32 is None  # CUDA-only axes vanish on CPU
    assert Case("standard", device="cuda", dtype="bfloat16", tf32=True).tf32 is None  # TF32 is fp32-only
