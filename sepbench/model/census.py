"""Every Conv2d of a network as the network uses it: one forward pass with hooks records each conv's
input and output shapes, kernel, stride, padding, dilation, groups and bias, its name in the model and
how often it is called. The MACs of each follow from its output shape and weight shape alone
(N·C_out·H_out·W_out · C_in/g·k_h·k_w); `torch.utils.flop_counter.FlopCounterMode`, which counts the
ops as they run, is the independent check (tests compare the two exactly).

Padding is recorded as it takes effect: (top, bottom, left, right). A conv whose forward pads the input
itself (timm's `Conv2dSame`, TensorFlow's "same") is seen before its padding; its pads are derived
with TensorFlow's rule and checked against the output shape it produced.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from sepbench.errors import SepbenchError

Shape4 = tuple[int, int, int, int]


@dataclass(frozen=True)
class ConvLayer:
    """One conv at one input shape, as the network called it (`calls` times)."""

    name: str
    module: str  # the module's class, e.g. "Conv2d", "Conv2dSame"
    in_shape: Shape4
    out_shape: Shape4
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int] | None  # top, bottom, left, right; None when it cannot be told
    dilation: tuple[int, int]
    groups: int
    bias: bool
    padding_mode: str = "zeros"
    calls: int = 1

    @property
    def c_in(self) -> int:
        return self.in_shape[1]

    @property
    def c_out(self) -> int:
        return self.out_shape[1]

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one call: one dot product of C_in/g·k_h·k_w per output element."""
        return math.prod(self.out_shape) * (self.c_in // self.groups) * self.kernel[0] * self.kernel[1]

    @property
    def role(self) -> str:
        """What the conv is: depthwise (one filter per channel), pointwise (1×1, dense), grouped, or
        standard (dense k×k)."""
        if self.groups > 1 and self.groups == self.c_in:
            return "depthwise"
        if self.groups > 1:
            return "grouped"
        return "pointwise" if self.kernel == (1, 1) else "standard"

    @property
    def shape_key(self) -> tuple:
        """What makes two layers the same workload: everything but the name and the call count."""
        return (self.module, self.in_shape, self.out_shape, self.kernel, self.stride, self.padding, self.dilation,
                self.groups, self.bias, self.padding_mode)


def from_json(e: dict) -> ConvLayer:
    """A census entry as read back from JSON (lists where the census had tuples)."""
    def pair(v: list) -> tuple[int, int]:
        return int(v[0]), int(v[1])

    def four(v: list) -> tuple[int, int, int, int]:
        return int(v[0]), int(v[1]), int(v[2]), int(v[3])

    return ConvLayer(name=e["name"], module=e["module"], in_shape=four(e["in_shape"]), out_shape=four(e["out_shape"]),
                     kernel=pair(e["kernel"]), stride=pair(e["stride"]),
                     padding=None if e["padding"] is None else four(e["padding"]), dilation=pair(e["dilation"]),
                     groups=int(e["groups"]), bias=bool(e["bias"]), padding_mode=e["padding_mode"],
                     calls=int(e["calls"]))


def _same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's "same": the output is ceil(size / stride); the extra pixel goes after."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _out(size: int, kernel: int, stride: int, dilation: int, before: int, after: int) -> int:
    return (size + before + after - dilation * (kernel - 1) - 1) // stride + 1


def _padding(m: nn.Conv2d, in_shape: Shape4, out_shape: Shape4) -> tuple[int, int, int, int] | None:
    """The pads that took effect, checked against the output shape the conv produced."""
    k, s, d = m.kernel_size, m.stride, m.dilation
    if type(m).forward is not nn.Conv2d.forward:  # pads in its own forward: TensorFlow's "same"
        pads = [_same_pads(in_shape[2 + i], k[i], s[i], d[i]) for i in (0, 1)]
        pads = [(a + m.padding[i], b + m.padding[i]) for i, (a, b) in enumerate(pads)] \
            if not isinstance(m.padding, str) else pads
    elif m.padding == "valid":
        pads = [(0, 0), (0, 0)]
    elif m.padding == "same":  # PyTorch's: the extra pixel goes after
        pads = [(d[i] * (k[i] - 1) // 2, d[i] * (k[i] - 1) - d[i] * (k[i] - 1) // 2) for i in (0, 1)]
    else:
        pads = [(int(m.padding[i]), int(m.padding[i])) for i in (0, 1)]
    if any(_out(in_shape[2 + i], k[i], s[i], d[i], *pads[i]) != out_shape[2 + i] for i in (0, 1)):
        return None
    return pads[0][0], pads[0][1], pads[1][0], pads[1][1]


def _batched(t: torch.Tensor) -> Shape4:
    """N×C×H×W of a conv's input or output (an unbatched C×H×W call counts as N = 1)."""
    shape = (1, *t.shape) if t.dim() == 3 else tuple(t.shape)
    n, c, h, w = (int(v) for v in shape)
    return n, c, h, w


def census(model: nn.Module, example: torch.Tensor) -> list[ConvLayer]:
    """Run `model` once on `example` (no grad) and return its convs in the order they ran; a conv
    called again at the same shape counts its calls, at another shape is a row of its own."""
    names: dict[int, str] = {}
    for name, module in model.named_modules():
        names.setdefault(id(module), name or "(model)")
    found: dict[tuple[str, Shape4], ConvLayer] = {}

    def record(m: nn.Conv2d, args: tuple, output: object) -> None:
        if not (args and isinstance(args[0], torch.Tensor) and isinstance(output, torch.Tensor)):
            return
        in_shape, out_shape = _batched(args[0]), _batched(output)
        key = (names[id(m)], in_shape)
        if key in found:
            found[key] = replace(found[key], calls=found[key].calls + 1)
            return
        k, s, d = m.kernel_size, m.stride, m.dilation
        found[key] = ConvLayer(
            name=names[id(m)], module=type(m).__name__, in_shape=in_shape, out_shape=out_shape,
            kernel=(k[0], k[1]), stride=(s[0], s[1]), padding=_padding(m, in_shape, out_shape),
            dilation=(d[0], d[1]), groups=m.groups, bias=m.bias is not None, padding_mode=m.padding_mode)

    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise SepbenchError(f"{type(model).__name__} has no Conv2d: there is nothing to measure layer by layer")
    hooks = [m.register_forward_hook(record) for m in convs]
    try:
        with torch.no_grad():
            model(example)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        if out_of_memory(exc):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SepbenchError(f"the model rejects an input of shape {tuple(example.shape)}: {first}") from None
    finally:
        for h in hooks:
            h.remove()
    if not found:
        raise SepbenchError(f"{type(model).__name__} has Conv2d modules but its forward called none of them")
    return list(found.values())


def out_of_memory(exc: BaseException) -> bool:
    """Whether an error is the device running out of memory (torch raises it as a RuntimeError on a CPU)."""
    if isinstance(exc, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))):
        return True
    text = str(exc).lower()
    return "allocate" in text and "memory" in text


def network_macs(layers: Sequence[ConvLayer]) -> int:
    """The convs' MACs over one forward pass of the network: each layer times its calls."""
    return sum(layer.macs * layer.calls for layer in layers)


def by_shape(layers: Sequence[ConvLayer]) -> dict[tuple, list[ConvLayer]]:
    """Layers grouped by workload: a shape measured once serves every layer that has it."""
    groups: dict[tuple, list[ConvLayer]] = {}
    for layer in layers:
        groups.setdefault(layer.shape_key, []).append(layer)
    return groups
