"""What a network's conv could be instead: for each site (one conv, or a depthwise conv with the pointwise
conv right after it) the layer as it is, rebuilt from its census, and each candidate with the same input
and output shape:

- a standard k×k conv (groups 1, k > 1) → depthwise-separable, grouped (each g in 2, 4, 8 that divides
  both channel counts), spatially separable (k×1 then 1×k), spatial-depthwise-separable;
- a depthwise conv followed by a pointwise conv → its full-conv twin (one k×k conv), which shows what
  the separable design saved; a lone depthwise conv → its full conv;
- a 1×1 conv → grouped 1×1 (ShuffleNet style, each valid g).

The costs come from the census of each module (`census.census` on the meta device), so a candidate's
theoretical × is counted the same way as the network's own layers. Weights are random: timing needs
no trained values. Padding that is not the same on both sides of a dimension is applied by a
`ZeroPad2d` in front, as the network applied it; a conv whose padding could not be told, or that pads
by reflection, gets no candidate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from sepbench.model.census import ConvLayer, census, network_macs

GROUPS = (2, 4, 8)


@dataclass(frozen=True)
class Site:
    """What one candidate replaces: a conv, or a depthwise conv and the pointwise conv that reads its output."""

    layers: tuple[ConvLayer, ...]

    @property
    def name(self) -> str:
        return " + ".join(layer.name for layer in self.layers)

    @property
    def first(self) -> ConvLayer:
        return self.layers[0]

    @property
    def in_shape(self) -> tuple[int, int, int, int]:
        return self.layers[0].in_shape

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return self.layers[-1].out_shape

    @property
    def macs(self) -> int:
        """One pass through the site (each layer called once)."""
        return sum(layer.macs for layer in self.layers)

    @property
    def kind(self) -> str:
        return "depthwise + pointwise" if len(self.layers) == 2 else self.first.role

    @property
    def shape_key(self) -> tuple:
        return tuple(layer.shape_key for layer in self.layers)


def sites(layers: Sequence[ConvLayer]) -> list[Site]:
    """The census as sites, in network order: a depthwise conv whose output the next conv (a pointwise
    one, called as often) reads directly is paired with it; every other conv stands alone."""
    out: list[Site] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if (layer.role == "depthwise" and nxt is not None and nxt.role == "pointwise"
                and nxt.in_shape == layer.out_shape and nxt.calls == layer.calls):
            out.append(Site((layer, nxt)))
            i += 2
        else:
            out.append(Site((layer,)))
            i += 1
    return out


def _conv(c_in: int, c_out: int, kernel: tuple[int, int], stride: tuple[int, int], pads: tuple[int, int, int, int],
          dilation: tuple[int, int], groups: int, bias: bool) -> nn.Module:
    """A conv with (top, bottom, left, right) padding: in the conv where it is symmetric, else a ZeroPad2d
    in front of an unpadded conv."""
    top, bottom, left, right = pads
    if top == bottom and left == right:
        return nn.Conv2d(c_in, c_out, kernel, stride, (top, left), dilation, groups, bias)
    return nn.Sequential(nn.ZeroPad2d((left, right, top, bottom)),
                         nn.Conv2d(c_in, c_out, kernel, stride, 0, dilation, groups, bias))


def rebuild(layer: ConvLayer) -> nn.Module:
    """The layer as it is, from its census (with random weights)."""
    assert layer.padding is not None
    return _conv(layer.c_in, layer.c_out, layer.kernel, layer.stride, layer.padding, layer.dilation, layer.groups,
                 layer.bias)


def as_is(site: Site) -> nn.Module:
    return nn.Sequential(*(rebuild(layer) for layer in site.layers)) if len(site.layers) > 1 else rebuild(site.first)


def _split(pads: tuple[int, int, int, int]) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """A k×k conv's padding split between its k×1 part (top, bottom) and its 1×k part (left, right)."""
    top, bottom, left, right = pads
    return (top, bottom, 0, 0), (0, 0, left, right)


def candidates(site: Site) -> dict[str, Callable[[], nn.Module]]:
    """Each candidate for the site, by name, as a builder; empty where the site cannot be replaced."""
    c = site.first
    if c.padding is None or c.padding_mode != "zeros" or any(
            layer.padding is None or layer.padding_mode != "zeros" for layer in site.layers):
        return {}
    k, s, d, p, bias = c.kernel, c.stride, c.dilation, c.padding, c.bias
    c_in, c_out = c.c_in, site.out_shape[1]
    out: dict[str, Callable[[], nn.Module]] = {}
    if site.kind == "standard":
        out["depthwise_separable"] = lambda: nn.Sequential(
            _conv(c_in, c_in, k, s, p, d, c_in, False),
            _conv(c_in, c_out, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, bias))
        for g in GROUPS:
            if c_in % g == 0 and c_out % g == 0:
                out[f"grouped(g={g})"] = partial(_conv, c_in, c_out, k, s, p, d, g, bias)
        if k[0] > 1 and k[1] > 1:
            vertical, horizontal = _split(p)
            out["spatially_separable"] = lambda: nn.Sequential(
                _conv(c_in, c_out, (k[0], 1), (s[0], 1), vertical, (d[0], 1), 1, False),
                _conv(c_out, c_out, (1, k[1]), (1, s[1]), horizontal, (1, d[1]), 1, bias))
            out["spatial_depthwise_separable"] = lambda: nn.Sequential(
                _conv(c_in, c_in, (k[0], 1), (s[0], 1), vertical, (d[0], 1), c_in, False),
                _conv(c_in, c_in, (1, k[1]), (1, s[1]), horizontal, (1, d[1]), c_in, False),
                _conv(c_in, c_out, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, bias))
    elif site.kind in ("depthwise + pointwise", "depthwise"):
        out["full_conv"] = lambda: _conv(c_in, c_out, k, s, p, d, 1, site.layers[-1].bias)
    elif site.kind == "pointwise":
        for g in GROUPS:
            if c_in % g == 0 and c_out % g == 0:
                out[f"grouped_pointwise(g={g})"] = partial(_conv, c_in, c_out, (1, 1), s, p, d, g, bias)
    return out


def why_none(site: Site) -> str:
    """Why `candidates` has nothing for a site."""
    if any(layer.padding is None or layer.padding_mode != "zeros" for layer in site.layers):
        return "no candidate: its padding is not zeros, or cannot be told from its shapes"
    if site.kind == "grouped":
        return "no candidate: a grouped conv is already one (its dense and depthwise forms are not proposed)"
    return "no candidate for this site"


def macs(module: nn.Module, in_shape: tuple[int, int, int, int]) -> int:
    """A candidate's MACs, counted by the census on the meta device (no memory, no time)."""
    with torch.device("meta"):
        return network_macs(census(module.to("meta"), torch.empty(in_shape)))
