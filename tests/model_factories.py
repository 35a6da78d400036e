"""Networks for the census tests, named as users name theirs: `model_factories:<factory>`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Odd(nn.Module):
    """Every shape a real network throws at a census: non-square kernels, explicit and asymmetric
    padding, PyTorch's "same" with an even kernel, a dilated conv, a grouped and a depthwise conv, a
    conv called twice, convs inside a ModuleList, and a conv that is never called."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, (3, 1), stride=(2, 1), padding=(1, 0), bias=True)
        self.wide = nn.Conv2d(16, 16, (1, 5), padding=(0, 2), groups=4)
        self.shared = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.even = nn.Conv2d(16, 24, 4, padding="same", dilation=2)
        self.blocks = nn.ModuleList([nn.Conv2d(24, 24, 1), nn.Conv2d(24, 32, 3, stride=2)])
        self.unused = nn.Conv2d(32, 32, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.wide(self.stem(x))
        x = self.shared(self.shared(x))  # one module, two calls
        x = self.even(x)
        x = F.pad(x, (0, 1, 2, 0))  # asymmetric: the conv after it sees the padded map
        for block in self.blocks:
            x = block(x)
        return x


def odd() -> nn.Module:
    return Odd()


def raises() -> nn.Module:
    raise ValueError("this factory needs a config file")


def not_a_module() -> object:
    return {"conv": 1}


def no_conv() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 224 * 224, 10))


def small() -> nn.Module:
    """Three site shapes in a few microseconds each: a strided stem, a depthwise + pointwise pair, a 1×1."""
    return nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.Conv2d(16, 32, 1), nn.ReLU(),
                         nn.Conv2d(32, 32, 1))


def one_conv() -> nn.Module:
    """One site shape and the network around it: the smallest network comparison."""
    return nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
