"""What each stage computes, not only how fast: one sample input through a standard conv, a
depthwise conv and the pointwise conv that follows it in a depthwise-separable layer.

The input is drawn, not downloaded: three channels with different structure (rings, stripes, a
square on a gradient), so the view shows that a depthwise filter keeps each channel's own pattern
while a standard or pointwise conv mixes them. Weights are the layers' default initialisation under
a fixed seed: the point is the wiring, not trained features.
"""

from __future__ import annotations

import torch

from sepbench import zoo
from sepbench.case import Case

SIZE = 96
C_IN = 3
C_OUT = 16
SEED = 0


def sample_input(size: int = SIZE) -> torch.Tensor:
    """A 1 × 3 × size × size image: rings, diagonal stripes, a square on a horizontal gradient."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    rings = torch.cos(12 * torch.sqrt(x**2 + y**2))
    stripes = torch.sign(torch.sin(10 * (x + y)))
    square = ((x.abs() < 0.4) & (y.abs() < 0.4)).float() + 0.5 * x
    return torch.stack([rings, stripes, square]).unsqueeze(0)


def stage_outputs(x: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Input and stage outputs (each C × H × W) for one 1 × 3 × H × W input (default: the drawn one)."""
    x = sample_input() if x is None else x
    torch.manual_seed(SEED)
    size = x.shape[-1]
    standard = zoo.build(Case("standard", c_in=C_IN, c_out=C_OUT, size=size))
    depthwise = zoo.build(Case("depthwise", c_in=C_IN, c_out=C_IN, size=size))
    pointwise = zoo.build(Case("pointwise", c_in=C_IN, c_out=C_OUT, size=size))
    with torch.no_grad():
        dw = depthwise(x)
        return {
            "input": x[0],
            f"standard 3×3, {C_IN}→{C_OUT}": standard(x)[0],
            f"depthwise 3×3, {C_IN}→{C_IN}": dw[0],
            f"pointwise 1×1 after depthwise, {C_IN}→{C_OUT}": pointwise(dw)[0],
        }
