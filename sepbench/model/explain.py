"""One layer of a measured network, stage by stage: the site as it is and each candidate rebuilt from the
census in its results file, each stage (a conv, a padding) timed alone on the input it really gets, beside
its share of the MACs. Where a candidate's realized × falls short of its theoretical ×, this shows which
stage takes the time its MACs do not explain (a depthwise conv, usually)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sepbench.model.candidates import Site, as_is, candidates
from sepbench.model.census import census, from_json
from sepbench.model.measure import best_block
from sepbench.records import ModelSiteRecord
from sepbench.store import ModelFile


@dataclass(frozen=True)
class Stage:
    name: str
    kind: str
    seconds: float  # per call, timed alone
    macs: int


def site_of(found: ModelFile, record: ModelSiteRecord) -> Site:
    assert found.header is not None
    layers = {e["name"]: from_json(e) for e in found.header.census}
    size = 2 if record.site_kind == "depthwise + pointwise" else 1
    return Site(tuple(layers[name] for name in record.layers[:size]))


def _stages(module: nn.Module) -> list[tuple[str, nn.Module]]:
    children = list(module.named_children()) if isinstance(module, nn.Sequential) else []
    if not children:
        return [(type(module).__name__.lower(), module)]
    out = []
    for name, child in children:
        out += [(f"{name}.{sub}" if sub != type(m).__name__.lower() else name, m) for sub, m in _stages(child)]
    return out


def _time(module: nn.Module, x: torch.Tensor) -> float:
    def step() -> None:
        with torch.no_grad():
            module(x)

    return best_block(step, "cpu", 0.01, 5)


def stage_times(found: ModelFile, record: ModelSiteRecord, threads: int) -> dict[str, list[Stage]]:
    """Each of the site's modules (as it is, then each candidate) as its stages, each timed alone."""
    site = site_of(found, record)
    builders = {"as is": lambda: as_is(site), **candidates(site)}
    out: dict[str, list[Stage]] = {}
    torch.manual_seed(0)
    for label, make in builders.items():
        module = make().eval()
        x = torch.randn(site.in_shape)
        stages = []
        for name, stage in _stages(module):
            with torch.no_grad():
                y = stage(x)
            kind = type(stage).__name__
            macs = 0
            if isinstance(stage, nn.Conv2d):
                [conv] = census(stage, x)
                macs = conv.macs
                kind = f"{conv.role} {conv.kernel[0]}×{conv.kernel[1]}"
            stages.append(Stage(name, kind, _time(stage, x), macs))
            x = y
        out[label] = stages
    return out
