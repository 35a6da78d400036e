"""The exact cost model: shapes, parameters, MACs, FLOPs, bytes, intensity and roofline, from shapes alone.

Nothing here runs a layer. Output shapes are propagated module by module with PyTorch's formulas,
so the counts are an independent check on `torch.utils.flop_counter.FlopCounterMode` (which runs
the ops on the meta device) and the tests compare the two exactly.

Conventions (say which one every FLOP figure uses):
- MACs: multiply-accumulates of Conv2d and Linear layers.
- FLOPs `2mac`: 2 · MACs; what FlopCounterMode reports (bias ignored).
- FLOPs `exact`: a dot product of length L costs L multiplies and L − 1 adds, plus one add per
  output for a bias.
- Training step: forward + grad-input + grad-weight, each costing one forward's MACs (3 × forward).
- Minimum traffic: every stage (conv, linear, pool) reads its input and weights once and writes its
  output once; elementwise layers (BatchNorm, activations, the SE gate, the residual add) are taken
  as fused into a neighbouring stage. So a multi-stage variant writes and reads each intermediate
  once. Backward of a stage reads input, output-gradient and weights and writes input- and
  weight-gradients (2·in + out + 2·w).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache, singledispatch
from typing import Any

import torch
from torch import nn

from sepbench.case import Case, conv_out
from sepbench.errors import SepbenchError
from sepbench.zoo import InvertedResidual, SqueezeExcite, build, input_shape

ELEMENT_SIZE = {"float32": 4, "bfloat16": 2, "float16": 2}
CONVENTIONS = ("2mac", "exact")
Shape = tuple[int, ...]


@dataclass(frozen=True)
class LayerCost:
    name: str
    kind: str
    in_shape: Shape
    out_shape: Shape
    params: int
    bias_params: int
    macs: int
    flops_exact: int
    stage: bool  # moves memory on its own; elementwise layers are fused into a stage
    inplace: bool = False

    def step_flops(self, mode: str = "inference") -> int:
        """FLOPs (2mac) of this layer in one step: forward, or forward + grad-input + grad-weight."""
        return (3 if mode == "train" else 1) * 2 * self.macs

    def step_bytes(self, element_size: int, mode: str = "inference") -> int:
        """This layer's part of the minimum traffic (see the module docstring): its weights, and its
        input and output when it is a stage of its own."""
        weights = self.params * element_size
        fwd = (math.prod(self.in_shape) + math.prod(self.out_shape)) * element_size if self.stage else 0
        if mode != "train":
            return fwd + weights
        bwd = (2 * math.prod(self.in_shape) + math.prod(self.out_shape)) * element_size if self.stage else 0
        return fwd + weights + bwd + 2 * weights


@dataclass(frozen=True)
class Cost:
    """Totals for one module at one input shape and dtype."""

    layers: tuple[LayerCost, ...]
    in_shape: Shape
    out_shape: Shape
    element_size: int
    params: int = field(init=False)
    macs: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", sum(lc.params for lc in self.layers))
        object.__setattr__(self, "macs", sum(lc.macs for lc in self.layers))

    @property
    def params_no_bias(self) -> int:
        return self.params - sum(lc.bias_params for lc in self.layers)

    @property
    def flops_2mac(self) -> int:
        return 2 * self.macs

    @property
    def flops_exact(self) -> int:
        return sum(lc.flops_exact for lc in self.layers)

    def flops(self, mode: str = "inference", convention: str = "2mac") -> int:
        """Forward FLOPs under `convention`; a training step is 3 × forward (2mac only)."""
        if convention not in CONVENTIONS:
            raise SepbenchError(f"unknown FLOP convention {convention!r}; valid: {', '.join(CONVENTIONS)}")
        if mode == "train" and convention != "2mac":
            raise SepbenchError("training-step FLOPs are defined under the 2mac convention only")
        if convention == "exact":
            return self.flops_exact
        return sum(lc.step_flops(mode) for lc in self.layers)

    @property
    def weight_bytes(self) -> int:
        return self.params * self.element_size

    @property
    def input_bytes(self) -> int:
        return math.prod(self.in_shape) * self.element_size

    def bytes(self, mode: str = "inference") -> int:
        """Minimum memory traffic (see the module docstring): the layers' parts summed."""
        return sum(lc.step_bytes(self.element_size, mode) for lc in self.layers)

    def intensity(self, mode: str = "inference") -> float:
        """Arithmetic intensity, FLOPs (2mac) per byte of minimum traffic."""
        return self.flops(mode) / self.bytes(mode)

    def activation_bytes(self, mode: str = "inference") -> int:
        """Estimate of activation memory beyond the input and weights.

        Inference: the largest output alive beside its layer's input. Training: every layer output
        autograd keeps for backward, plus the input's gradient.
        """
        e = self.element_size
        outs = [math.prod(lc.out_shape) * e for lc in self.layers if not lc.inplace]
        if mode == "train":
            return sum(outs) + self.input_bytes
        return max(outs, default=0)

    def memory_bytes(self, mode: str = "inference") -> int:
        """Theoretical activation + weight memory of one step (training adds weight gradients)."""
        weights = self.weight_bytes * (2 if mode == "train" else 1)
        return weights + self.input_bytes + self.activation_bytes(mode)


# ----------------------------------------------------------------------------------------------
# Shape propagation: one rule per module type. Containers recurse; leaves append a LayerCost.


@singledispatch
def _propagate(module: nn.Module, shape: Shape, name: str, out: list[LayerCost]) -> Shape:
    raise SepbenchError(f"no cost rule for {type(module).__name__} at {name or 'top level'}")


def _leaf(module: nn.Module, name: str, in_shape: Shape, out_shape: Shape, out: list[LayerCost], *,
          macs: int = 0, flops_exact: int = 0, stage: bool = False) -> Shape:
    params = sum(p.numel() for p in module.parameters(recurse=False))
    bias = getattr(module, "bias", None)
    bias_params = bias.numel() if isinstance(module, (nn.Conv2d, nn.Linear)) and bias is not None else 0
    out.append(LayerCost(name, type(module).__name__, in_shape, out_shape, params, bias_params, macs,
                         flops_exact, stage, bool(getattr(module, "inplace", False))))
    return out_shape


@_propagate.register
def _(m: nn.Sequential, shape: Shape, name: str, out: list[LayerCost]) -> Shape:
    for child_name, child in m.named_children():
        shape = _propagate(child, shape, f"{name}.{child_name}" if name else child_name, out)
    return shape


@_propagate.register
def _(m: nn.Conv2d, shape: Shape, name: str, out: list[LayerCost]) -> Shape:
    if len(shape) != 4 or shape[1] != m.in_channels:
        raise SepbenchError(f"{name}: Conv2d expects N×{m.in_channels}×H×W, got {shape}")
    if isinstance(m.padding, str):
        raise SepbenchError(f"{name}: string padding {m.padding!r} is not modelled; give integers")
    n, _, h, w = shape
    ho = conv_out(h, m.kernel_size[0], m.stride[0], m.padding[0], m.dilation[0])
    wo = conv_out(w, m.kernel_size[1], m.stride[1], m.padding[1], m.dilation[1])
    if ho < 1 or wo < 1:
        raise SepbenchError(f"{name}: kernel {m.kernel_size} does not fit the padded input {h}×{w}")
    outputs = n * m.out_channels * ho * wo
    dot = (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
    exact = (2 * dot - 1) * outputs + (outputs if m.bias is not None else 0)
    return _leaf(m, name, shape, (n, m.out_channels, ho, wo), out, macs=outputs * dot, flops_exact=exact, stage=True)


@_propagate.register
def _(m: nn.Linear, shape: Shape, name: str, out: list[LayerCost]) -> Shape:
    if shape[-1] != m.in_features:
        raise SepbenchError(f"{name}: Linear expects …×{m.in_features}, got {shape}")
    rows = math.prod(shape[:-1])
    outputs = rows * m.out_features
    exact = (2 * m.in_features - 1) * outputs + (outputs if m.bias is not None else 0)
    return _leaf(m, name, shape, (*shape[:-1], m.out_features), out, macs=outputs * m.in_features,
                 flops_exact=exact, stage=True)


@_propagate.register(nn.BatchNorm2d)
@_propagate.register(nn.ReLU)
@_propagate.register(nn.ReLU6)
@_propagate.register(nn.Sigmoid)
@_propagate.register(nn.Hardswish)
@_propagate.register(nn.Hardsigmoid)
@_propagate.register(nn.SiLU)
@_propagate.register(nn.Identity)
@_propagate.register(nn.Dropout)
def _(m: nn.Module, shape: Shape, name: str, out: list[LayerCost]) -> Shape:
    return _leaf(m, name, shape, shape, out)


@_propagate.register
def _(m: nn.AdaptiveAvgPool2d, shape: Shape, name: str, out: list[LayerCost]) -> Shape:
    size = m.output_size if isinstance(m.output_size, tuple) else (m.output_size, m.output_size)
    ho, wo = (s if s is not None else shape[2 + i] for i, s in enumerate(size))
    return _leaf(m, name, shape, (*shape[:2], ho, wo), out, stage=True)


@_propagate.register(nn.MaxPool2d)
@_propagate.register(nn.AvgPool2d)
def _(m: nn.Module, shape: Shape, name: str, out: list[LayerCost]) -> Shape:
    if m.ceil_mode:
        raise SepbenchError(f"{name}: ceil_mode pooling is not modelled")

    def pair(v: Any) -> tuple[int, int]:
        """A pooling size as (h, w): an int or a pair of them (torch types the attributes loosely)."""
        return (int(v[0]), int(v[1])) if isinstance(v, tuple) else (int(v), int(v))

    k, s, p = pair(m.kernel_size), pair(m.stride or m.kernel_size), pair(m.padding)
    d = pair(getattr(m, "dilation", 1))
    ho, wo = (conv_out(shape[2 + i], k[i], s[i], p[i], d[i]) for i in range(2))
    return _leaf(m, name, shape, (*shape[:2], ho, wo), out, stage=True)


@_propagate.register
def _(m: nn.Flatten, shape: Shape, name: str, out: list[LayerCost]) -> Shape:
    start, end = m.start_dim % len(shape), m.end_dim % len(shape)
    flat = (*shape[:start], math.prod(shape[start:end + 1]), *shape[end + 1:])
    return _leaf(m, name, shape, flat, out)


@_propagate.register
def _(m: SqueezeExcite, shape: Shape, name: str, out: list[LayerCost]) -> Shape:
    gate = shape
    for child_name in ("pool", "fc1", "act", "fc2", "gate"):
        gate = _propagate(getattr(m, child_name), gate, f"{name}.{child_name}", out)
    return shape  # x · gate broadcasts back to x's shape


@_propagate.register
def _(m: InvertedResidual, shape: Shape, name: str, out: list[LayerCost]) -> Shape:
    result = _propagate(m.body, shape, f"{name}.body" if name else "body", out)
    if m.residual and result != shape:
        raise SepbenchError(f"{name}: residual add needs equal shapes, got {shape} and {result}")
    return result


def module_cost(module: nn.Module, in_shape: Shape, dtype: str = "float32") -> Cost:
    """Cost of any module built from the supported layers, at `in_shape` (N×C×H×W)."""
    layers: list[LayerCost] = []
    out_shape = _propagate(module, tuple(in_shape), "", layers)
    return Cost(tuple(layers), tuple(in_shape), out_shape, ELEMENT_SIZE[dtype])


@lru_cache(maxsize=4096)
def case_cost(case: Case) -> Cost:
    """Cost of a case; the module is built on the meta device, so no memory is touched."""
    return module_cost(build(case, device=torch.device("meta")), input_shape(case), case.dtype)


@dataclass(frozen=True)
class CostRatios:
    """A variant against its baseline: theory only."""

    speedup: float  # FLOP ratio baseline / variant (2mac)
    param_ratio: float  # variant params / baseline params
    memory_ratio: float  # variant theoretical memory / baseline's


def compare(case: Case) -> CostRatios:
    mine, base = case_cost(case), case_cost(case.baseline())
    return CostRatios(
        speedup=base.flops(case.mode) / mine.flops(case.mode),
        param_ratio=mine.params / base.params,
        memory_ratio=mine.memory_bytes(case.mode) / base.memory_bytes(case.mode),
    )


def roofline_bound(flops: float, nbytes: float, peak_flops: float, peak_bandwidth: float) -> float:
    """Williams et al. (2009): time ≥ max(FLOPs / peak FLOP/s, bytes / peak bandwidth)."""
    return max(flops / peak_flops, nbytes / peak_bandwidth)
