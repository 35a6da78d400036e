"""The layer zoo: a case in, an `nn.Module` out.

Every layer variant of a case produces the standard conv's output shape, so they are drop-in
replacements and their costs compare like with like. Stride sits on the first spatial stage of a
multi-stage variant; BatchNorm + activation (when asked) follow every stage, MobileNet style.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from sepbench.case import SE_REDUCTION, VARIANTS, Case, check, same_padding


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): x · σ(W₂ ReLU(W₁ avgpool(x)))."""

    def __init__(self, channels: int, reduction: int = SE_REDUCTION) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class InvertedResidual(nn.Module):
    """A residual block: the body, plus the input when `residual` (MobileNetV2: stride 1 and equal
    channels; Xception's middle flow: always)."""

    def __init__(self, body: nn.Sequential, residual: bool) -> None:
        super().__init__()
        self.body = body
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def _stage(
    name: str, c_in: int, c_out: int, kernel: tuple[int, int], stride: int, dilation: int,
    padding: tuple[int, int], groups: int, bias: bool, act: str,
) -> list[tuple[str, nn.Module]]:
    conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, dilation=dilation,
                     groups=groups, bias=bias)
    layers: list[tuple[str, nn.Module]] = [(name, conv)]
    if act != "none":
        layers.append((f"{name}_bn", nn.BatchNorm2d(c_out)))
        layers.append((f"{name}_act", nn.ReLU6(inplace=True) if act == "bn-relu6" else nn.ReLU(inplace=True)))
    return layers


def _pad(case: Case, k: int) -> int:
    return same_padding(k, case.dilation) if case.padding == "same" else 0


def _standard(c: Case, groups: int = 1) -> list:
    p = _pad(c, c.kernel)
    return _stage("conv", c.c_in, c.c_out, (c.kernel, c.kernel), c.stride, c.dilation, (p, p), groups, c.bias, c.act)


def _depthwise(c: Case) -> list:
    return _standard(c, groups=c.c_in)


def _pointwise(c: Case) -> list:
    return _stage("pw", c.c_in, c.c_out, (1, 1), c.stride, 1, (0, 0), 1, c.bias, c.act)


def _dw_then_pw(c: Case, middle: list | None = None) -> list:
    p = _pad(c, c.kernel)
    dw = _stage("dw", c.c_in, c.c_in, (c.kernel, c.kernel), c.stride, c.dilation, (p, p), c.c_in, c.bias, c.act)
    pw = _stage("pw", c.c_in, c.c_out, (1, 1), 1, 1, (0, 0), 1, c.bias, c.act)
    return dw + (middle or []) + pw


def _se_dw_then_pw(c: Case) -> list:
    return _dw_then_pw(c, middle=[("se", SqueezeExcite(c.c_in))])


def _spatially_separable(c: Case) -> list:
    p, k = _pad(c, c.kernel), c.kernel
    first = _stage("kx1", c.c_in, c.c_out, (k, 1), c.stride, c.dilation, (p, 0), 1, c.bias, c.act)
    second = _stage("1xk", c.c_out, c.c_out, (1, k), 1, c.dilation, (0, p), 1, c.bias, c.act)
    return first + second


def _spatial_depthwise_separable(c: Case) -> list:
    p, k = _pad(c, c.kernel), c.kernel
    first = _stage("dw_kx1", c.c_in, c.c_in, (k, 1), c.stride, c.dilation, (p, 0), c.c_in, c.bias, c.act)
    second = _stage("dw_1xk", c.c_in, c.c_in, (1, k), 1, c.dilation, (0, p), c.c_in, c.bias, c.act)
    pw = _stage("pw", c.c_in, c.c_out, (1, 1), 1, 1, (0, 0), 1, c.bias, c.act)
    return first + second + pw


def _inverted_residual(c: Case) -> nn.Module:
    hidden = c.c_in * c.expansion
    p = _pad(c, c.kernel)
    layers = []
    if c.expansion != 1:
        layers += _stage("expand", c.c_in, hidden, (1, 1), 1, 1, (0, 0), 1, c.bias, c.act)
    layers += _stage("dw", hidden, hidden, (c.kernel, c.kernel), c.stride, c.dilation, (p, p), hidden, c.bias, c.act)
    # The projection is linear (no activation): MobileNetV2's "linear bottleneck".
    project = _stage("project", hidden, c.c_out, (1, 1), 1, 1, (0, 0), 1, c.bias, c.act)
    layers += project[:2] if c.act != "none" else project
    residual = c.stride == 1 and c.c_in == c.c_out and c.padding == "same"
    return InvertedResidual(nn.Sequential(OrderedDict(layers)), residual)


# MobileNetV1 (Howard et al. 2017), Table 1: (output channels, stride) of each depthwise-separable block.
MOBILENET_V1_BLOCKS = [
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
]


def mobilenet_v1(alpha: float = 1.0, fullconv: bool = False, num_classes: int = 1000) -> nn.Sequential:
    """MobileNetV1 at width α; `fullconv` swaps each depthwise + pointwise pair for one 3×3 conv."""

    def width(c: int) -> int:
        return max(1, int(c * alpha))

    layers = _stage("stem", 3, width(32), (3, 3), 2, 1, (1, 1), 1, False, "bn-relu")
    c_in = width(32)
    for i, (c, s) in enumerate(MOBILENET_V1_BLOCKS, start=1):
        c_out = width(c)
        if fullconv:
            layers += _stage(f"b{i}_conv", c_in, c_out, (3, 3), s, 1, (1, 1), 1, False, "bn-relu")
        else:
            layers += _stage(f"b{i}_dw", c_in, c_in, (3, 3), s, 1, (1, 1), c_in, False, "bn-relu")
            layers += _stage(f"b{i}_pw", c_in, c_out, (1, 1), 1, 1, (0, 0), 1, False, "bn-relu")
        c_in = c_out
    layers += [("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("fc", nn.Linear(c_in, num_classes))]
    return nn.Sequential(OrderedDict(layers))


def make_divisible(value: float, divisor: int = 8) -> int:
    """MobileNetV2's channel rounding (the reference implementation's `_make_divisible`): to the
    nearest multiple of `divisor`, never below it and never more than 10 % below `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


# MobileNetV2 (Sandler et al. 2018), Table 2: expansion t, output channels c, repeats n, first stride s.
MOBILENET_V2_BLOCKS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                       (6, 160, 3, 2), (6, 320, 1, 1)]
MOBILENET_V2_LAST = 1280  # the last 1×1 conv; the paper widens it for α > 1 only


def mobilenet_v2(alpha: float = 1.0, fullconv: bool = False, num_classes: int = 1000) -> nn.Sequential:
    """MobileNetV2 at width α. `fullconv` swaps each block's depthwise 3×3 + linear 1×1 projection for one
    standard 3×3 conv from the expanded width to the block's output (still linear, still residual)."""
    c_in = make_divisible(32 * alpha)
    layers = _stage("stem", 3, c_in, (3, 3), 2, 1, (1, 1), 1, False, "bn-relu6")
    i = 0
    for t, c, n, s in MOBILENET_V2_BLOCKS:
        c_out = make_divisible(c * alpha)
        for j in range(n):
            i += 1
            stride, hidden = (s if j == 0 else 1), c_in * t
            body = _stage("expand", c_in, hidden, (1, 1), 1, 1, (0, 0), 1, False, "bn-relu6") if t != 1 else []
            if fullconv:
                body += _stage("conv", hidden, c_out, (3, 3), stride, 1, (1, 1), 1, False, "bn-relu6")[:2]
            else:
                body += _stage("dw", hidden, hidden, (3, 3), stride, 1, (1, 1), hidden, False, "bn-relu6")
                body += _stage("project", hidden, c_out, (1, 1), 1, 1, (0, 0), 1, False, "bn-relu6")[:2]
            layers.append((f"b{i}", InvertedResidual(nn.Sequential(OrderedDict(body)), stride == 1 and c_in == c_out)))
            c_in = c_out
    last = make_divisible(MOBILENET_V2_LAST * max(1.0, alpha))
    layers += _stage("last", c_in, last, (1, 1), 1, 1, (0, 0), 1, False, "bn-relu6")
    layers += [("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("fc", nn.Linear(last, num_classes))]
    return nn.Sequential(OrderedDict(layers))


XCEPTION_WIDTH = 728  # Xception's middle flow (Chollet 2017, Fig. 5): 728 channels at 1/16 of the input
XCEPTION_STRIDE = 16


def xception_width(alpha: float) -> int:
    return max(1, round(XCEPTION_WIDTH * alpha))


def xception_map(resolution: int) -> int:
    """The middle flow's map side for an input of side ρ: four stride-2 stages, rounded up (299 → 19)."""
    return -(-resolution // XCEPTION_STRIDE)


def xception_block(alpha: float = 1.0, fullconv: bool = False) -> nn.Module:
    """One middle-flow block of Xception: [ReLU → separable 3×3 conv → BN] × 3, plus the input.

    A separable conv is Keras's SeparableConv2D: depthwise 3×3 then pointwise 1×1, nothing between,
    no bias. `fullconv` swaps each for one standard 3×3 conv."""
    c = xception_width(alpha)
    body: list[tuple[str, nn.Module]] = []
    for i in range(1, 4):
        body.append((f"relu{i}", nn.ReLU(inplace=i > 1)))  # the first must leave the residual input alone
        if fullconv:
            body += _stage(f"conv{i}", c, c, (3, 3), 1, 1, (1, 1), 1, False, "none")
        else:
            body += _stage(f"dw{i}", c, c, (3, 3), 1, 1, (1, 1), c, False, "none")
            body += _stage(f"pw{i}", c, c, (1, 1), 1, 1, (0, 0), 1, False, "none")
        body.append((f"bn{i}", nn.BatchNorm2d(c)))
    return InvertedResidual(nn.Sequential(OrderedDict(body)), residual=True)


_LAYERS: dict[str, Callable[[Case], list | nn.Module]] = {
    "standard": _standard,
    "grouped": lambda c: _standard(c, groups=c.groups),
    "depthwise": _depthwise,
    "pointwise": _pointwise,
    "depthwise_separable": _dw_then_pw,
    "spatially_separable": _spatially_separable,
    "spatial_depthwise_separable": _spatial_depthwise_separable,
    "se_depthwise_separable": _se_dw_then_pw,
    "inverted_residual": _inverted_residual,
    "mobilenet_v1": lambda c: mobilenet_v1(c.alpha),
    "mobilenet_v1_fullconv": lambda c: mobilenet_v1(c.alpha, fullconv=True),
    "mobilenet_v2": lambda c: mobilenet_v2(c.alpha),
    "mobilenet_v2_fullconv": lambda c: mobilenet_v2(c.alpha, fullconv=True),
    "xception_block": lambda c: xception_block(c.alpha),
    "xception_block_fullconv": lambda c: xception_block(c.alpha, fullconv=True),
}
assert _LAYERS.keys() == VARIANTS.keys(), "every catalogued variant needs a builder"


def build(case: Case, device: torch.device | str | None = None) -> nn.Module:
    """The module for a case, with float32 parameters on `device` (meta for theory-only use)."""
    check(case)
    with torch.device(device or "cpu"):
        made = _LAYERS[case.variant](case)
        return made if isinstance(made, nn.Module) else nn.Sequential(OrderedDict(made))


def input_shape(case: Case) -> tuple[int, int, int, int]:
    """N×C×H×W of the case's input. A network reads an RGB image of side ρ = size; Xception's
    middle-flow block reads the map that image becomes there."""
    if case.variant.startswith("xception_block"):
        side = xception_map(case.size)
        return (case.batch, xception_width(case.alpha), side, side)
    return (case.batch, case.c_in, case.size, case.size)
