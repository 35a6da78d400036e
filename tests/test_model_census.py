"""`sepbench.model`: a network from its name, and the census of its convs with their exact MACs, equal
to FlopCounterMode's count layer by layer and in total (and to the cost model's on the zoo's networks)."""

from __future__ import annotations

import importlib

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sepbench.errors import SepbenchError
from sepbench.model import spec
from sepbench.model.census import by_shape, census, network_macs
from sepbench.theory import module_cost


def _flop_counts(module: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """FlopCounterMode's convolution FLOPs per module path ('Odd.stem') and in total ('Global')."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(x)
    conv = torch.ops.aten.convolution
    return {path: int(ops.get(conv, 0)) for path, ops in counter.get_flop_counts().items()}


def test_the_census_of_a_hand_written_model() -> None:
    net = spec.resolve("model_factories:odd")
    x = torch.randn(2, 3, 33, 40)  # odd and non-square
    layers = census(net.module, x)
    by_name = {layer.name: layer for layer in layers}
    assert list(by_name) == ["stem", "wide", "shared", "even", "blocks.0", "blocks.1"]  # `unused` never ran
    stem, wide, shared, even, first, last = layers
    assert (stem.kernel, stem.stride, stem.padding, stem.bias) == ((3, 1), (2, 1), (1, 1, 0, 0), True)
    assert stem.in_shape == (2, 3, 33, 40) and stem.out_shape == (2, 16, 17, 40)
    assert (wide.kernel, wide.padding, wide.groups, wide.role) == ((1, 5), (0, 0, 2, 2), 4, "grouped")
    assert (shared.calls, shared.role, shared.bias) == (2, "depthwise", False)
    assert even.padding == (3, 3, 3, 3) and even.dilation == (2, 2) and even.out_shape[2:] == even.in_shape[2:]
    assert first.role == "pointwise" and first.in_shape[2:] == (17 + 2, 40 + 1)  # F.pad before it: seen padded
    assert last.role == "standard" and last.padding == (0, 0, 0, 0)
    for layer in layers:
        n, _, ho, wo = layer.out_shape
        dot = (layer.c_in // layer.groups) * layer.kernel[0] * layer.kernel[1]
        assert layer.macs == n * layer.c_out * ho * wo * dot
    counts = _flop_counts(net.module, x)
    for layer in layers:  # layer by layer, calls included
        assert 2 * layer.macs * layer.calls == counts[f"Odd.{layer.name}"], layer.name
    assert 2 * network_macs(layers) == counts["Global"]


def test_identical_shapes_are_one_workload() -> None:
    net = spec.resolve("sepbench:mobilenet_v2")
    with torch.device("meta"):
        layers = census(net.module.to("meta"), torch.empty(net.input_shape, device="meta"))
    groups = by_shape(layers)
    assert sum(len(g) for g in groups.values()) == len(layers) and len(groups) < len(layers)
    assert all(len({layer.shape_key for layer in g}) == 1 for g in groups.values())


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v1_fullconv", "mobilenet_v2", "xception_block"])
def test_the_zoo_networks_agree_with_flopcounter_and_the_cost_model(name: str) -> None:
    net = spec.resolve(f"sepbench:{name}")
    module = net.module.to("meta")
    x = torch.empty(net.input_shape, device="meta")
    layers = census(module, x)
    assert 2 * network_macs(layers) == _flop_counts(module, x)["Global"]
    cost = module_cost(net.module, net.input_shape)
    assert network_macs(layers) == sum(c.macs for c in cost.layers if c.kind == "Conv2d")


def _importable(package: str) -> bool:
    try:
        importlib.import_module(package)
    except Exception:  # absent, or built for another torch
        return False
    return True


@pytest.mark.parametrize("name", ["torchvision:resnet18", "torchvision:mobilenet_v2",
                                  "torchvision:mobilenet_v3_large", "torchvision:convnext_tiny",
                                  "timm:efficientnet_b0"])
def test_real_networks_agree_with_flopcounter(name: str) -> None:
    """Where the `models` extra imports (it needs the torchvision build made for this torch)."""
    if not _importable(name.split(":")[0]):
        pytest.skip(f"{name.split(':')[0]} does not import here")
    with torch.device("meta"):
        net = spec.resolve(name)
        x = torch.empty(net.input_shape)
        layers = census(net.module, x)
    assert 2 * network_macs(layers) == _flop_counts(net.module, x)["Global"]
    assert all(layer.padding is not None for layer in layers)


@pytest.mark.parametrize(("name", "message"), [
    ("nope", "give torchvision:NAME, timm:NAME, sepbench:NAME or package.module:factory"),
    ("sepbench:mobilenet_v3", "unknown sepbench network 'mobilenet_v3'; the zoo's networks: mobilenet_v1"),
    ("model_factories:raises", "model_factories:raises: building the model raised ValueError: this factory needs "
                               "a config file"),
    ("model_factories:not_a_module", "model_factories:not_a_module returned a dict, not a torch.nn.Module"),
    ("model_factories:missing", "model_factories:missing: model_factories has no callable 'missing'"),
    ("no_such_package.models:net", "no_such_package.models:net: cannot import no_such_package.models"),
])
def test_a_bad_spec_is_one_line(name: str, message: str) -> None:
    with pytest.raises(SepbenchError) as info:
        spec.resolve(name)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_model_without_a_conv_or_refusing_the_input_is_one_line() -> None:
    with pytest.raises(SepbenchError, match="Sequential has no Conv2d"):
        census(spec.resolve("model_factories:no_conv").module, torch.randn(1, 3, 224, 224))
    with pytest.raises(SepbenchError, match=r"rejects an input of shape \(1, 4, 32, 32\): .*channels"):
        census(spec.resolve("model_factories:odd").module, torch.randn(1, 4, 32, 32))


@pytest.mark.parametrize("failure", [ModuleNotFoundError("No module named 'torchvision'", name="torchvision"),
                                     RuntimeError("operator torchvision::nms does not exist")])
def test_torchvision_or_timm_missing_or_broken_names_the_remedy(monkeypatch: pytest.MonkeyPatch,
                                                                failure: Exception) -> None:
    real = importlib.import_module

    def fake(name: str, *args: object) -> object:
        if name in ("torchvision", "timm"):
            raise failure
        return real(name, *args)

    monkeypatch.setattr(spec.importlib, "import_module", fake)
    for name in ("torchvision:resnet18", "timm:efficientnet_b0"):
        with pytest.raises(SepbenchError) as info:
            spec.resolve(name)
        text = str(info.value)
        if isinstance(failure, ImportError):
            assert text.startswith("torchvision is not installed") and 'pip install -e ".[models]"' in text
        else:
            assert "does not import with torch" in text and "nms does not exist" in text


def _every_site() -> list:
    from sepbench.model.candidates import sites

    found = []
    for name in ("model_factories:odd", "sepbench:mobilenet_v1", "sepbench:mobilenet_v2", "sepbench:xception_block"):
        net = spec.resolve(name)
        shape = (2, 3, 33, 40) if name.endswith("odd") else net.input_shape
        with torch.device("meta"):
            found += [(name, site) for site in sites(census(net.module.to("meta"), torch.empty(shape)))]
    return found


def test_every_candidate_keeps_the_output_shape_and_its_cost_is_counted() -> None:
    """The layer as it is (rebuilt from its census) and every candidate read the site's input and give its
    output shape; a rebuilt layer costs what the census counted, and each candidate's theoretical × is what
    the variant's formula says (depthwise-separable: k²·C_out / (k² + C_out) for a dense k×k conv)."""
    from sepbench.model.candidates import as_is, candidates, macs

    seen = {"depthwise_separable": 0, "grouped(g=2)": 0, "spatially_separable": 0, "spatial_depthwise_separable": 0,
            "full_conv": 0, "grouped_pointwise(g=4)": 0}
    for name, site in _every_site():
        with torch.device("meta"):
            x = torch.empty(site.in_shape)
            assert as_is(site)(x).shape == site.out_shape, (name, site.name)
            assert macs(as_is(site), site.in_shape) == site.macs
            for label, make in candidates(site).items():
                module = make()
                assert module(x).shape == site.out_shape, (name, site.name, label)
                cost = macs(module, site.in_shape)
                seen[label] = seen.get(label, 0) + 1
                c = site.first
                if label == "depthwise_separable" and c.dilation == (1, 1):
                    k2 = c.kernel[0] * c.kernel[1]
                    assert site.macs * (k2 + c.c_out) == cost * k2 * c.c_out
                if label.startswith("grouped"):
                    g = int(label.split("g=")[1].rstrip(")"))
                    assert cost * g == site.macs
    assert all(seen.values()), seen


def test_sites_pair_a_depthwise_conv_with_the_pointwise_conv_after_it() -> None:
    from sepbench.model.candidates import sites

    net = spec.resolve("sepbench:mobilenet_v1")
    with torch.device("meta"):
        found = sites(census(net.module.to("meta"), torch.empty(net.input_shape)))
    pairs = [s for s in found if s.kind == "depthwise + pointwise"]
    assert len(pairs) == 13 and [s.kind for s in found].count("standard") == 1  # the stem
    assert all(a.layers[1].in_shape == a.layers[0].out_shape for a in pairs)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_large", "efficientnet_b0"])
def test_the_written_out_networks_agree_with_flopcounter(name: str) -> None:
    """The committed networks (`benchmarks/networks.py`): the census total is FlopCounterMode's, exactly,
    on the network as a whole and for every conv of it."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    net = spec.resolve(f"benchmarks.networks:{name}")
    module = net.module.to("meta")
    x = torch.empty(net.input_shape, device="meta")
    layers = census(module, x)
    counts = _flop_counts(module, x)
    assert 2 * network_macs(layers) == counts["Global"]
    top = type(module).__name__
    for layer in layers:
        assert 2 * layer.macs * layer.calls == counts[f"{top}.{layer.name}"], layer.name


@pytest.mark.parametrize(("name", "library"), [("resnet18", "torchvision:resnet18"),
                                               ("mobilenet_v3_large", "torchvision:mobilenet_v3_large"),
                                               ("efficientnet_b0", "timm:efficientnet_b0")])
def test_the_written_out_networks_are_the_libraries_own(name: str, library: str) -> None:
    """`benchmarks/networks.py` stands in for torchvision and timm where they do not import (beside the
    local CPU wheel): where they do, each copy has the library module's parameters, MACs and census, conv
    by conv (names, shapes, kernels, strides, padding, groups, bias, calls)."""
    import sys
    from pathlib import Path

    if not _importable(library.split(":")[0]):
        pytest.skip(f"{library.split(':')[0]} does not import here")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    with torch.device("meta"):
        copy, real = spec.resolve(f"benchmarks.networks:{name}"), spec.resolve(library)
        x = torch.empty(real.input_shape)
        ours, theirs = census(copy.module, x), census(real.module, x)
    assert sum(p.numel() for p in copy.module.parameters()) == sum(p.numel() for p in real.module.parameters())
    assert network_macs(ours) == network_macs(theirs)
    assert ours == theirs
