"""What to measure, many at a time: grid axes crossed into cases, measurement settings, presets, shards.

A grid file is TOML: `[grid]` axes and `[measure]` settings. Every case a grid yields has passed
`case.check`, so nothing downstream sees an impossible case.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import stat
import sys
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sepbench.case import VARIANTS, Case, check
from sepbench.errors import SepbenchError, os_reason

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Dtype = Literal["float32", "bfloat16", "float16"]


def _not_bool(value: object) -> object:
    """TOML's `true` is not a channel count: bool is a subclass of int, and pydantic would take it as 1."""
    if isinstance(value, bool):
        raise ValueError("a number is expected, not a boolean")
    return value


def _not_number(value: object) -> object:
    """A flag is `true` or `false`, never 0 or 1 written as a number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError("true or false is expected, not a number")
    return value


# Every integer of a geometry fits torch's and oneDNN's 32-bit dimensions; case.check bounds them further.
MAX_DIMENSION = 2**31 - 1
Count = Annotated[int, BeforeValidator(_not_bool), Field(gt=0, le=MAX_DIMENSION)]
Fraction = Annotated[float, BeforeValidator(_not_bool), Field(gt=0, le=1e6, allow_inf_nan=False)]
Flag = Annotated[bool, BeforeValidator(_not_number)]
Name = Annotated[str, Field(min_length=1)]


class GridAxes(BaseModel):
    """Each key is a list of values; the grid is their cross product. Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")

    variants: list[Name] = Field(default_factory=lambda: ["standard", "depthwise_separable"], min_length=1)
    c_in: list[Count] = [32]
    c_out: list[Count] | None = None  # None: c_out = c_in, paired rather than crossed
    size: list[Count] = [56]
    kernel: list[Count] = [3]
    stride: list[Count] = [1]
    dilation: list[Count] = [1]
    padding: list[Literal["same", "valid"]] = ["same"]
    bias: list[Flag] = [False]
    act: list[Literal["none", "bn-relu", "bn-relu6"]] = ["none"]
    groups: list[Count] = [4]
    expansion: list[Count] = [6]
    alpha: list[Fraction] = [1.0]
    batch: list[Count] = [1]
    dtype: list[Dtype] = ["float32"]
    device: list[Literal["cpu", "cuda"]] = ["cpu"]
    mode: list[Literal["inference", "train"]] = ["inference"]
    memory_format: list[Literal["contiguous", "channels_last"]] = ["contiguous"]
    cudnn_benchmark: list[Flag] = [True]
    tf32: list[Flag] = [True]
    compile: list[Literal["eager", "inductor", "inductor-max-autotune"]] = ["eager"]


# A run's default budget per case: timing, memory probe and profile together. A quiet 2-core machine
# reaches the target in about half of it.
BUDGET_PER_CASE_S = 2.0


class Interleaved(TypedDict):
    """How `timer.measure_interleaved` times a case outside a run (timercheck, explain, the harnesses)."""

    min_run_time: float
    min_rounds: int
    max_rounds: int
    block_time: float
    warmup_time: float


class MeasureSettings(BaseModel):
    """How hard to look at each case. Defaults suit a 2-core CPU; GPU presets may tighten them. Every
    number is finite and bounded, so no setting can make a run hang on one case."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    min_run_time: float = Field(0.2, gt=0, le=3600)  # seconds of timed blocks per variant and group
    min_rounds: int = Field(10, ge=1, le=100_000)  # interleaved rounds (one block per variant each)
    max_rounds: int = Field(200, ge=1, le=100_000)
    block_time: float = Field(0.01, gt=0, le=10)  # target seconds per block, so timer overhead is negligible
    warmup_time: float = Field(0.05, gt=0, le=600)
    unstable_threshold: float = Field(0.10, gt=0, le=100)  # per-round speedups' IQR / median: recorded as `spread`
    # A group measures until every speedup's 95 % interval is within ±target (a fraction), or its share of
    # the run's budget is spent; "unstable" means the target was not reached.
    target: float = Field(0.03, gt=0, le=1)
    # The rounds of a group come in sittings of this many, each on freshly built tensors; the interval is
    # over sittings (a ratio moves more between them than between rounds), at least `min_sittings`.
    sitting_rounds: int = Field(2, ge=1, le=10_000)
    min_sittings: int = Field(6, ge=2, le=10_000)
    budget_s: float | None = Field(None, gt=0, le=7 * 24 * 3600)  # the whole run; None: BUDGET_PER_CASE_S a case
    # Intra-op threads; None: 1 on a CPU (two threads on two busy cores wait at every barrier for the
    # preempted one), torch's default on CUDA, where the host thread only launches.
    threads: int | None = Field(None, ge=1, le=4096)
    memory: bool = True  # measure peak memory per case (fresh child process on CPU)

    @field_validator("*", mode="before")
    @classmethod
    def _typed(cls, value: object, info: ValidationInfo) -> object:
        return _not_number(value) if info.field_name == "memory" else _not_bool(value)

    @model_validator(mode="after")
    def _rounds_in_order(self) -> MeasureSettings:
        if self.min_rounds > self.max_rounds:
            raise ValueError(f"min_rounds ({self.min_rounds}) exceeds max_rounds ({self.max_rounds})")
        return self

    def budget_for(self, cases: int) -> float:
        """Seconds the run may take for this many cases."""
        return self.budget_s if self.budget_s is not None else BUDGET_PER_CASE_S * cases

    def interleaved(self, min_run_time: float | None = None) -> Interleaved:
        """The keyword arguments of `timer.measure_interleaved` (`min_run_time` overridden if given)."""
        return Interleaved(min_run_time=self.min_run_time if min_run_time is None else min_run_time,
                           min_rounds=self.min_rounds, max_rounds=self.max_rounds, block_time=self.block_time,
                           warmup_time=self.warmup_time)


class GridFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    grid: GridAxes = Field(default_factory=GridAxes)
    measure: MeasureSettings = Field(default_factory=MeasureSettings)


@dataclass(frozen=True)
class Grid:
    name: str
    spec: GridFile

    @property
    def measure(self) -> MeasureSettings:
        return self.spec.measure

    def with_device(self, device: str) -> Grid:
        return self.with_axes({"device": [device]})

    def with_axes(self, overrides: dict[str, list], source: str = "--axis") -> Grid:
        """The grid with some axes replaced, validated like a grid file (unknown keys refused)."""
        data = self.spec.model_dump(mode="json")
        data["grid"].update(overrides)
        try:
            spec = GridFile.model_validate(data)
        except ValidationError as exc:
            raise SepbenchError(format_validation(source, exc)) from None
        _check_variant_names(spec, source)
        return Grid(self.name, spec)

    def digest(self) -> str:
        """Hash of what the grid measures, so --resume only continues the same grid."""
        data = self.spec.model_dump(mode="json")
        if data["grid"].get("compile") == ["eager"]:
            del data["grid"]["compile"]  # an eager grid keeps the digest it had before the axis existed
        blob = json.dumps(data, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def expand(self, shard_spec: tuple[int, int] | None = None) -> tuple[list[Case], Counter[str]]:
        """Cross the axes into valid cases (baselines added) and count what was dropped, and why;
        with a shard K/N, only that slice of the grid's geometries."""
        return expand(self.spec.grid, shard_spec)


def format_validation(source: str, err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = f"unknown key {loc!r}" if first["type"] == "extra_forbidden" else f"{loc}: {first['msg']}"
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: {msg}{more}"


def parse_grid(text: str, name: str, source: str) -> Grid:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SepbenchError(f"{source}: not valid TOML: {exc}") from None
    try:
        spec = GridFile.model_validate(data)
    except ValidationError as exc:
        raise SepbenchError(format_validation(source, exc)) from None
    _check_variant_names(spec, source)
    return Grid(name, spec)


def _check_variant_names(spec: GridFile, source: str) -> None:
    unknown = [v for v in spec.grid.variants if v not in VARIANTS]
    if unknown:
        raise SepbenchError(f"{source}: unknown variant {unknown[0]!r}; valid variants: {', '.join(VARIANTS)}")


def parse_axis(text: str) -> tuple[str, list[str]]:
    """'c_in=32,64' → ('c_in', ['32', '64']); values are typed by the grid schema."""
    key, sep, values = text.partition("=")
    if not sep or not key.strip() or not values.strip():
        raise SepbenchError(f"--axis must look like KEY=V1,V2 (e.g. c_in=32,64), got {text!r}")
    return key.strip(), [v.strip() for v in values.split(",") if v.strip()]


MAX_GRID_BYTES = 1 << 20


def load_grid(path: str | Path) -> Grid:
    """A grid file: a regular file (a FIFO or a device would block or never end), at most 1 MiB, UTF-8."""
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise SepbenchError(f"grid file {path} is not a regular file")
        if info.st_size > MAX_GRID_BYTES:
            raise SepbenchError(f"grid file {path} is {info.st_size:,} bytes; a grid file is at most "
                                f"{MAX_GRID_BYTES:,}")
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise SepbenchError(f"cannot read grid file {path}: {os_reason(exc)}") from None
    except UnicodeDecodeError as exc:
        raise SepbenchError(f"grid file {path} is not UTF-8 text (byte {exc.start})") from None
    return parse_grid(text, path.stem, str(path))


def preset_names() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in resources.files("sepbench.presets").iterdir()
                  if p.name.endswith(".toml"))


def load_preset(name: str) -> Grid:
    if name not in preset_names():
        raise SepbenchError(f"unknown preset {name!r}; valid presets: {', '.join(preset_names())}")
    text = resources.files("sepbench.presets").joinpath(f"{name}.toml").read_text()
    return parse_grid(text, name, f"preset {name}")


MAX_COMBINATIONS = 100_000  # planning costs ~50 µs a combination: 10⁵ plan in seconds, 10⁶ took a minute


def combinations(axes: GridAxes) -> int:
    """How many axis combinations the grid crosses (before invalid ones are dropped)."""
    pairs = len(axes.c_in) if axes.c_out is None else len(axes.c_in) * len(axes.c_out)
    lengths = [len(v) for k, v in axes.model_dump().items() if isinstance(v, list) and k not in ("c_in", "c_out")]
    return pairs * math.prod(lengths)


def _unique(values: list) -> list:
    return list(dict.fromkeys(values))


def _geometries(axes: GridAxes, family: str, first: int = 0, step: int = 1) -> tuple[int, Iterator[dict]]:
    """The distinct geometries one family of variants crosses, and how many. A network ignores the layer
    knobs (channels, kernel, stride, …), so its geometries are only size × batch × dtype × device × mode ×
    layout; every case of a group shares its group's geometry, so a shard of geometries never splits a group.
    With `step` N > 1 only the shard of positions `first`, `first` + N, … of `_dealt` is made, each
    geometry decoded from its index, so a slice of a huge grid costs its own size."""
    common = {k: _unique(getattr(axes, k))
              for k in ("size", "batch", "dtype", "device", "mode", "memory_format", "compile")}
    if family == "network":
        lists = common
    else:
        channel_pairs = (
            [(c, c) for c in _unique(axes.c_in)] if axes.c_out is None
            else list(itertools.product(_unique(axes.c_in), _unique(axes.c_out)))
        )
        layer = {k: _unique(getattr(axes, k)) for k in ("kernel", "stride", "dilation", "padding", "bias", "act")}
        lists = {"channels": channel_pairs, **layer, **common}
    count = math.prod(len(v) for v in lists.values())
    keys, values = list(lists), list(lists.values())
    indices = range(count) if step == 1 else sorted(_dealt(count, first, step))

    def geometry(index: int) -> dict:  # the index-th tuple of the product, the last axis fastest
        picked = []
        for options in reversed(values):
            index, digit = divmod(index, len(options))
            picked.append(options[digit])
        return dict(zip(keys, reversed(picked), strict=True))

    return count, (geometry(i) for i in indices)


def _dealt(count: int, first: int, step: int) -> Iterator[int]:
    """The geometry indices at positions `first`, `first` + `step`, … of a fixed pseudo-random permutation
    of range(count). Dealing the product's own order round-robin aliases with the axes' lengths: shard
    1/200 of `full` held only inference cases of one layout, and shard 1/4 of `default` only inference,
    so shards differed 3× in cost and none was a sample of the grid. The permutation is a 4-round Feistel
    network over the smallest even power of two ≥ count, walked until it lands below count (a bijection
    on range(count), O(1) per index, the same on every machine)."""
    half = max(1, (max(count - 1, 1).bit_length() + 1) // 2)
    mask = (1 << half) - 1

    def feistel(x: int) -> int:
        left, right = x >> half, x & mask
        for key in range(4):
            digest = hashlib.blake2b(f"{key}:{right}".encode(), digest_size=8).digest()
            left, right = right, left ^ (int.from_bytes(digest, "big") & mask)
        return (left << half) | right

    for position in range(first, count, step):
        index = feistel(position)
        while index >= count:
            index = feistel(index)
        yield index


def expand(axes: GridAxes, shard_spec: tuple[int, int] | None = None) -> tuple[list[Case], Counter[str]]:
    """Cross the axes into valid cases (baselines added) and count what was dropped, and why.

    With a shard K/N only the geometries dealt to positions K, K+N, K+2N, … of a fixed permutation
    (`_dealt`) are crossed with the variants, so a slice of a huge grid costs its own size and samples
    every axis, not the whole grid's order."""
    k, n = shard_spec or (1, 1)
    total = combinations(axes)
    if math.ceil(total / n) > MAX_COMBINATIONS:
        per = f" ({math.ceil(total / n):,} per shard of {n})" if n > 1 else ""
        raise SepbenchError(f"the grid crosses {total:,} axis combinations{per}, more than the {MAX_COMBINATIONS:,} "
                            "sepbench expands in one run; split it with --shard K/N or into several grid files")
    cases: dict[str, Case] = {}
    seen: set[str] = set()
    dropped: Counter[str] = Counter()
    per_variant = list(itertools.product(*(_unique(getattr(axes, a)) for a in
                                           ("groups", "expansion", "alpha", "cudnn_benchmark", "tf32"))))
    offset = 0  # geometries are numbered across both families, layers first
    for family in ("layer", "network"):
        variants = [v for v in _unique(axes.variants) if VARIANTS[v].family == family]
        first = (k - 1 - offset) % n
        count, geometries = _geometries(axes, family, first, n)
        if not variants:
            continue
        offset += count
        for geometry in geometries:
            c_in, c_out = geometry.pop("channels", (3, 1000))
            for variant in variants:
                for g, t, a, cb, tf in per_variant:
                    case = Case(variant, c_in=c_in, c_out=c_out, groups=g, expansion=t, alpha=a,
                                cudnn_benchmark=cb, tf32=tf, **geometry)
                    if case.id in seen:
                        continue
                    seen.add(case.id)
                    try:
                        check(case)
                    except SepbenchError as exc:
                        dropped[str(exc).split(";")[0]] += 1
                        continue
                    cases.setdefault(case.id, case)
                    base = case.baseline()
                    cases.setdefault(base.id, base)
    return list(cases.values()), dropped


def group_cases(cases: list[Case], timed: bool = False) -> list[list[Case]]:
    """Cases grouped by geometry, baseline first, in a deterministic order (sorted by group id). With
    `timed`, a geometry's compile modes are one group (`Case.timing_group`), the eager cases first."""
    groups: dict[str, list[Case]] = {}
    for case in cases:
        groups.setdefault(case.timing_group if timed else case.group_id, []).append(case)
    ordered = []
    for gid in sorted(groups):
        members = sorted(groups[gid], key=lambda c: (c.compiled, c.compile, c.variant != c.baseline().variant, c.id))
        ordered.append(members)
    return ordered


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' → (K, N), 1 ≤ K ≤ N."""
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise SepbenchError(f"--shard must look like K/N (e.g. 2/4), got {text!r}") from None
    if not 1 <= k <= n:
        raise SepbenchError(f"--shard K/N needs 1 ≤ K ≤ N, got {text!r}")
    return k, n



def configured(grid: Grid, axes: dict[str, list] | None = None, device: str | None = None, threads: int | None = None,
               memory: bool = True, *, target: float | None = None, budget: float | None = None) -> Grid:
    """The grid with axes replaced and settings set (`target` in per cent, `budget` in minutes, as the CLI
    takes them). Its digest depends on all of them: what `run` measures is what `merge` expects."""
    if axes:
        grid = grid.with_axes(dict(axes))
    if device:
        grid = grid.with_device(device)
    updates = {k: v for k, v in (("threads", threads), ("memory", None if memory else False),
                                 ("target", target / 100 if target else None),
                                 ("budget_s", budget * 60 if budget else None)) if v is not None}
    if updates:
        grid = Grid(grid.name, grid.spec.model_copy(update={"measure": grid.measure.model_copy(update=updates)}))
    return grid


def grid_from(preset: str | None = None, grid_file: str | Path | None = None, default_preset: str = "default",
              **settings: Any) -> Grid:
    """The grid a preset or a grid file names, `configured` with `settings`, for every command and API call
    that takes a grid, with the same refusals everywhere."""
    if preset is not None and grid_file is not None:
        raise SepbenchError("give --preset or --grid, not both")
    grid = load_grid(grid_file) if grid_file is not None else \
        load_preset(default_preset if preset is None else preset)
    return configured(grid, **settings)


def axes_from(given: Sequence[str] | Mapping[str, object] | None) -> dict[str, list]:
    """Axes as `--axis KEY=V1,V2` texts or as a mapping (a value or a list of values per key)."""
    if not given:
        return {}
    if isinstance(given, Mapping):
        return {k: list(v) if isinstance(v, (list, tuple)) else [v] for k, v in given.items()}
    if isinstance(given, str):
        given = [given]
    return dict(parse_axis(a) for a in given)
