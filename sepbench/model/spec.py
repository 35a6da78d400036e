"""A network from its name, never with downloaded weights (random initialisation is all timing needs):

- `torchvision:resnet18`: any torchvision classification model builder (`weights=None`);
- `timm:mobilenetv3_large_100`: any timm model (`pretrained=False`), its input from its config;
- `sepbench:mobilenet_v1`: the zoo's networks;
- `package.module:factory`: a callable of the user's that returns an `nn.Module`.

torchvision and timm come with the `models` extra (`pip install -e ".[models]"`); the last form needs
neither. Every way a name can fail is a `SepbenchError`: one line, exit 2.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from sepbench.errors import SepbenchError

DEFAULT_INPUT = (1, 3, 224, 224)
EXTRA = 'pip install -e ".[models]"'


@dataclass
class Network:
    spec: str
    module: nn.Module
    input_shape: tuple[int, int, int, int]  # what the model declares, else 1×3×224×224


def _close(name: str, known: list[str]) -> str:
    matches = difflib.get_close_matches(name, known, n=4, cutoff=0.6)
    return f"; close matches: {', '.join(matches)}" if matches else ""


def _import(package: str) -> object:
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        if exc.name in (package, "torchvision"):  # timm needs torchvision too
            raise SepbenchError(f"{exc.name} is not installed; models named {package}:… need it: {EXTRA}") from None
        raise SepbenchError(f"{package} does not import: {exc}") from None
    except Exception as exc:  # installed, but built for another torch (a CUDA torchvision beside a CPU torch)
        import torch

        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SepbenchError(f"{package} is installed but does not import with torch {torch.__version__} "
                            f"({type(exc).__name__}: {first}); it needs the torchvision build made for this torch"
                            ) from None


def _call(spec: str, factory: Callable[[], object]) -> nn.Module:
    try:
        made = factory()
    except SepbenchError:
        raise
    except Exception as exc:  # a user's factory: whatever it raises is its message to them
        raise SepbenchError(f"{spec}: building the model raised {type(exc).__name__}: {exc}") from None
    if not isinstance(made, nn.Module):
        raise SepbenchError(f"{spec} returned a {type(made).__name__}, not a torch.nn.Module")
    return made


def _torchvision(spec: str, name: str) -> Network:
    tv = _import("torchvision")
    models = tv.models  # type: ignore[attr-defined]
    known = sorted(models.list_models(module=models))  # the classification builders
    if name not in known:
        raise SepbenchError(f"unknown torchvision classification model {name!r}{_close(name, known)}")
    return Network(spec, _call(spec, lambda: models.get_model(name, weights=None)), DEFAULT_INPUT)


def _timm(spec: str, name: str) -> Network:
    timm = _import("timm")
    known = timm.list_models()  # type: ignore[attr-defined]
    if name not in known:
        raise SepbenchError(f"unknown timm model {name!r}{_close(name, known)}")
    module = _call(spec, lambda: timm.create_model(name, pretrained=False))  # type: ignore[attr-defined]
    cfg = getattr(module, "pretrained_cfg", None) or getattr(module, "default_cfg", None) or {}
    c, h, w = cfg.get("input_size", DEFAULT_INPUT[1:])
    return Network(spec, module, (1, int(c), int(h), int(w)))


def _zoo(spec: str, name: str) -> Network:
    from sepbench import zoo

    networks: dict[str, tuple[Callable[[], nn.Module], tuple[int, int, int, int]]] = {
        "mobilenet_v1": (zoo.mobilenet_v1, DEFAULT_INPUT),
        "mobilenet_v1_fullconv": (lambda: zoo.mobilenet_v1(fullconv=True), DEFAULT_INPUT),
        "mobilenet_v2": (zoo.mobilenet_v2, DEFAULT_INPUT),
        "mobilenet_v2_fullconv": (lambda: zoo.mobilenet_v2(fullconv=True), DEFAULT_INPUT),
        "xception_block": (zoo.xception_block, (1, zoo.xception_width(1.0), zoo.xception_map(299),
                                                zoo.xception_map(299))),
    }
    if name not in networks:
        raise SepbenchError(f"unknown sepbench network {name!r}; the zoo's networks: {', '.join(networks)}"
                            f"{_close(name, list(networks))}")
    factory, shape = networks[name]
    return Network(spec, _call(spec, factory), shape)


def _factory(spec: str, path: str, attr: str) -> Network:
    """A user's factory, imported as `python -m` would find it: from the current folder first."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(path)
    except ImportError as exc:
        raise SepbenchError(f"{spec}: cannot import {path} ({exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise SepbenchError(f"{spec}: {path} has no callable {attr!r}")
    return Network(spec, _call(spec, factory), DEFAULT_INPUT)


def resolve(spec: str) -> Network:
    """The network a SPEC names, built on the current default device with random weights."""
    source, sep, name = spec.partition(":")
    if not sep or not source or not name:
        raise SepbenchError(f"model {spec!r}: give torchvision:NAME, timm:NAME, sepbench:NAME or "
                            "package.module:factory")
    if source == "torchvision":
        return _torchvision(spec, name)
    if source == "timm":
        return _timm(spec, name)
    if source == "sepbench":
        return _zoo(spec, name)
    return _factory(spec, source, name)
