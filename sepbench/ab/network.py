"""A network as the cases of `sepbench ab --model`: every conv site shape with its real input, and the
whole network, each built in both installs and timed there paired block by block.

The parent need not import the network's library (torchvision, timm): each worker resolves the SPEC
with its own install. The first worker of each side answers a census (`census` below), the parent
holds the two against each other (`agree`) and compares only a network that both installs build the
same way, conv by conv. A site is then named by the digest of its shapes, as `sepbench model` names
it, and a worker builds it, or the whole network, from that name (`Built.step`): random weights and
a fresh input of the real shape for every visit.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from sepbench.errors import SepbenchError
from sepbench.records import ABNetwork, ABSite

NETWORK = "network"  # the target name of the whole network (`ab.stats.NETWORK`)


@dataclass(frozen=True)
class NetworkRequest:
    """What `--model` asks for: the network, its input (None: what it declares), dtype, mode, device."""

    spec: str
    input_shape: tuple[int, int, int, int] | None
    dtype: str = "float32"
    mode: str = "inference"
    device: str = "cpu"


# -------------------------------------------------------------------------------------------------
# In a worker


class Built:
    """A worker's networks, resolved once each: the module, its input shape and its sites by name."""

    def __init__(self) -> None:
        self._found: dict[tuple, tuple[Any, tuple[int, ...], dict[str, Any]]] = {}

    def _network(self, spec: str, input_shape: list[int] | None, dtype: str, device: str) -> tuple:
        key = (spec, tuple(input_shape or ()), dtype, device)
        if key not in self._found:
            import torch

            from sepbench.model import spec as specs
            from sepbench.model.candidates import sites
            from sepbench.model.census import census
            from sepbench.model.run import shapes

            with torch.device(device):
                net = specs.resolve(spec)
            shape = tuple(input_shape) if input_shape else net.input_shape
            kind = getattr(torch, dtype)
            module = net.module.to(device=device, dtype=kind).eval()
            layers = census(module, torch.randn(shape, device=device, dtype=kind))
            self._found[key] = (module, shape, {"layers": layers, "groups": shapes(sites(layers))})
        return self._found[key]

    def census(self, spec: str, input_shape: list[int] | None, dtype: str, device: str, threads: int,
               block_time: float) -> dict:
        """The network's convs as this install runs them, its input, and a forward's time (the best of
        two calibrated blocks: what the parent sizes the budget by)."""

        from sepbench.model.census import network_macs
        from sepbench.model.measure import Settings, best_block, step

        module, shape, found = self._network(spec, input_shape, dtype, device)
        s = Settings(device=device, dtype=dtype, threads=threads, block_time=block_time)
        seconds = best_block(step(module, shape, s, seed=0), device, block_time, 2)
        versions = {name: getattr(__import__(name), "__version__", "?") for name in ("torchvision", "timm")
                    if spec.startswith(f"{name}:")}
        return {"census": [asdict(layer) for layer in found["layers"]], "input": list(shape),
                "macs": network_macs(found["layers"]), "network_s": seconds, "libraries": versions}

    def step(self, request: dict, threads: int) -> Callable[[], None]:
        """One call of the site (or the whole network) the request names, freshly built: random weights
        and a fresh input of its real shape."""
        import torch

        from sepbench.model.candidates import as_is
        from sepbench.model.measure import Settings, step

        module, shape, found = self._network(request["spec"], request["input"], request["dtype"],
                                             request["device"])
        s = Settings(device=request["device"], dtype=request["dtype"], mode=request["mode"], threads=threads)
        seed = int(request.get("seed", 0))
        torch.manual_seed(seed)
        if request["site"] == NETWORK:
            return step(copy.deepcopy(module), shape, s, seed)
        group = found["groups"].get(request["site"])
        if group is None:
            raise SepbenchError(f"{request['spec']} has no site shape {request['site']} in this install")
        return step(as_is(group[0]), group[0].in_shape, s, seed)


# -------------------------------------------------------------------------------------------------
# In the parent


def _differs(a: list[dict], b: list[dict]) -> str | None:
    """The first conv on which two censuses differ, in words; None when they agree."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            keys = [k for k in x if x.get(k) != y.get(k)]
            return (f"conv {i + 1} ({x.get('name')}): {', '.join(f'{k} {x.get(k)} vs {y.get(k)}' for k in keys)}")
    if len(a) != len(b):
        return f"{len(a)} convs vs {len(b)}"
    return None


def agree(request: NetworkRequest, a: dict, b: dict) -> ABNetwork:
    """The network both installs built, or a one-line refusal where their censuses differ (another
    architecture, input or padding rule under the other release of the library)."""
    why = _differs(a["census"], b["census"]) or (None if a["input"] == b["input"] else
                                                  f"input {a['input']} vs {b['input']}")
    if why:
        raise SepbenchError(f"{request.spec}: the two installs build different networks ({why}): a comparison "
                            "would time different work; nothing was written")
    n, c, h, w = (int(v) for v in a["input"])
    return ABNetwork.model_validate({"spec": request.spec, "input_shape": (n, c, h, w), "dtype": request.dtype,
                                     "mode": request.mode, "device": request.device, "macs": a["macs"],
                                     "census": a["census"], "libraries": {"A": a.get("libraries", {}),
                                                                          "B": b.get("libraries", {})}})


def sites(network: ABNetwork) -> list[ABSite]:
    """The network's site shapes in network order, each named by its digest, then the whole network."""
    from sepbench.model.candidates import sites as found_sites
    from sepbench.model.census import from_json
    from sepbench.model.run import shapes

    layers = [from_json(row) for row in network.census]
    out = []
    for key, group in shapes(found_sites(layers)).items():
        first = group[0]
        out.append(ABSite(name=key, layers=[x.name for g in group for x in g.layers], site_kind=first.kind,
                          calls=sum(x.first.calls for x in group), in_shape=first.in_shape,
                          out_shape=first.out_shape, macs=first.macs))
    n, c, h, w = network.input_shape
    out.append(ABSite(name=NETWORK, site_kind=NETWORK, calls=1, in_shape=(n, c, h, w), out_shape=(n,),
                      macs=network.macs))
    return out


def minimum_budget(count: int, network_s: float, pairs: int, rounds: int, block_time: float,
                   control: float) -> float:
    """The least wall time a network comparison takes, whatever the budget: every case gets `pairs`
    visits, each building in both workers, warming up (3 calls at least), calibrating and timing
    `rounds` + 1 blocks per side; the whole network's blocks are at least one forward long, a site's at
    least `block_time` (a site is no slower than the network). The control adds its share of visits."""
    per_side = 3 + 3 + rounds + 1  # warm-up, calibration, settling and timed blocks, in blocks
    visits = pairs * (1 + control)
    return visits * 2 * per_side * (count * block_time + max(network_s, block_time))

