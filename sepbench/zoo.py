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

from sepbench.spec import SE_REDUCTION, VARIANTS, Case, check, same_padding


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
    """MobileNetV2 block: the body, plus the input when stride is 1 and channels match."""

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
}
assert _LAYERS.keys() == VARIANTS.keys(), "every catalogued variant needs a builder"


def build(case: Case, device: torch.device | str | None = None) -> nn.Module:
    """The module for a case, with float32 parameters on `device` (meta for theory-only use)."""
    check(case)
    with torch.device(device or "cpu"):
        made = _LAYERS[case.variant](case)
        return made if isinstance(made, nn.Module) else nn.Sequential(OrderedDict(made))


def input_shape(case: Case) -> tuple[int, int, int, int]:
    return (case.batch, case.c_in, case.size, case.size)
