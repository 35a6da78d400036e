"""`torch.compile` as a way of running a case: compiling a module, timing the compilation apart from the
step, noticing a recompilation, and saying in one line why a compilation failed.

Why a module of its own: every measuring path (a run's sittings, an `ab` worker, a model's sites) builds
its step through `Workload` or `model.measure.step`, and each must compile the same way, with the same
guards against dynamo's silent fallbacks: past its recompile limit dynamo runs the frame eagerly and says so
only in a log, which would time eager code under a compiled label. Here the limit is raised and, where the
torch has the switch, hitting it is an error the case reports. Compilation stays in the measuring process
(one compile thread): no worker pool lives on beside the timed blocks.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

# The case's `compile` value → torch.compile's mode (None: inductor's defaults).
MODES: dict[str, str | None] = {"inductor": None, "inductor-max-autotune": "max-autotune"}
# Entries dynamo keeps per code object (one per input shape the frame met) before it falls back to eager:
# 8 by default, fewer than the shapes of one preset's conv layers.
RECOMPILE_LIMIT = 512
CACHE_VARIABLES = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")


@dataclass(frozen=True)
class Compilation:
    """What compiling one step cost: the wall time of its first call (tracing, code generation, the C++
    or Triton compiler, and the call itself), and how many of its graphs came from inductor's cache."""

    seconds: float
    cache_hits: int
    cache_misses: int

    @property
    def cache(self) -> str:
        """'cold' (every graph compiled), 'cached' (every graph from the cache), or 'partly cached'."""
        if not self.cache_hits:
            return "cold"
        return "cached" if not self.cache_misses else "partly cached"


def _configure() -> None:
    import torch._dynamo.config as dynamo
    import torch._inductor.config as inductor

    # Compile in this process: inductor's pool of compile workers would inherit the timed core's affinity
    # and stay alive beside the blocks (on a 2-core VM it made 48 of 96 compiled variants "contended").
    inductor.compile_threads = 1

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo, name):
            setattr(dynamo, name, RECOMPILE_LIMIT)
    for name in ("accumulated_recompile_limit", "accumulated_cache_size_limit"):
        if hasattr(dynamo, name):
            setattr(dynamo, name, max(getattr(dynamo, name), 4 * RECOMPILE_LIMIT))
    if hasattr(dynamo, "fail_on_recompile_limit_hit"):
        dynamo.fail_on_recompile_limit_hit = True


def compile_module(module: nn.Module, how: str, fullgraph: bool = True) -> nn.Module:
    """The module compiled by inductor with static shapes. `fullgraph` makes a graph break an error (a
    layer that breaks would time a mix of compiled and eager code); a whole network may break."""
    import torch

    if how not in MODES:
        raise ValueError(f"unknown compile mode {how!r}; valid: eager, {', '.join(MODES)}")
    _configure()
    compiled: nn.Module = torch.compile(module, backend="inductor", mode=MODES[how], fullgraph=fullgraph,
                                        dynamic=False)  # type: ignore[assignment]
    return compiled


def _counters() -> Any:
    if "torch._dynamo" not in sys.modules:
        return None  # nothing was ever compiled in this process
    from torch._dynamo.utils import counters

    return counters


def graphs() -> int:
    """Graphs dynamo has compiled in this process so far: a rise across timed blocks is a recompilation."""
    counters = _counters()
    return 0 if counters is None else int(counters["stats"]["unique_graphs"])


def graph_breaks() -> int:
    counters = _counters()
    return 0 if counters is None else int(sum(counters["graph_break"].values()))


def _cache_counts() -> tuple[int, int]:
    counters = _counters()
    if counters is None:
        return 0, 0
    return int(counters["inductor"]["fxgraph_cache_hit"]), int(counters["inductor"]["fxgraph_cache_miss"])


def first_call(step: Callable[[], object], sync: Callable[[], None]) -> Compilation:
    """Call a compiled step once, timing the compilation it triggers."""
    hits, misses = _cache_counts()
    started = time.perf_counter()
    step()
    sync()
    seconds = time.perf_counter() - started
    now_hits, now_misses = _cache_counts()
    return Compilation(seconds, now_hits - hits, now_misses - misses)


def forget() -> None:
    """Drop every compiled frame of this process, so the next call compiles again (from inductor's cache
    where it holds the graph): how the cached compile time is taken."""
    import torch

    torch._dynamo.reset()


def failure(exc: BaseException) -> str:
    """One line for a failed compilation: no C++ compiler, a graph break, the recompile limit, or the
    backend's own error, with the first line of what torch said."""
    text = " ".join(str(exc).split())
    for tail in ("Set TORCHDYNAMO_VERBOSE", "from user code:", "You can suppress this exception"):
        text = text.split(tail, 1)[0].strip()  # torch's advice on debugging it, not what happened
    name = type(exc).__name__
    if "InvalidCxxCompiler" in name or "InvalidCxxCompiler" in text or "No working C++ compiler" in text:
        what = "no C++ compiler for inductor"
    elif name in ("Unsupported", "UserError") or "graph break" in text.lower():
        what = "graph break"
    elif "RecompileLimit" in name or "recompile_limit" in text:
        what = "recompile limit hit"
    else:
        what = "compilation failed"
    return f"{what} ({name}: {text[:200]})" if text else f"{what} ({name})"


@contextmanager
def cache_in(folder: Path | None) -> Iterator[None]:
    """Inductor's (and Triton's) compile cache in `folder` while the block runs, never the user's default
    place by surprise; None leaves the variables as they are."""
    if folder is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    before = {k: os.environ.get(k) for k in CACHE_VARIABLES}
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder.resolve())
    os.environ["TRITON_CACHE_DIR"] = str((folder / "triton").resolve())
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def cache_state(folder: Path) -> str:
    """'empty' or 'warm': whether a compile cache folder held anything when a run began."""
    return "warm" if folder.is_dir() and any(folder.iterdir()) else "empty"


def settings() -> dict[str, Any]:
    """The inductor settings that change what a compiled conv runs, for the fingerprint: autotuning,
    freezing, the C++ wrapper, the vector ISA and C++ compiler it generates code for, the caches."""
    import torch._inductor.config as inductor

    found: dict[str, Any] = {}
    for name in ("max_autotune", "freezing", "cpp_wrapper", "fx_graph_cache", "epilogue_fusion", "cpu_backend",
                 "force_disable_caches", "compile_threads"):
        if hasattr(inductor, name):
            found[name] = getattr(inductor, name)
    cpp = getattr(inductor, "cpp", None)
    if cpp is not None:
        found["cpp_simdlen"] = getattr(cpp, "simdlen", None)
    try:
        from torch._inductor import cpu_vec_isa

        found["vec_isa"] = str(cpu_vec_isa.pick_vec_isa()) or "none"
    except (ImportError, AttributeError, RuntimeError):
        found["vec_isa"] = None
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        found["cxx"] = get_cpp_compiler()
    except Exception as exc:  # no compiler is a fact to record, not a failure here
        found["cxx"] = f"none ({type(exc).__name__})"
    return found
