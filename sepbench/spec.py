"""What to measure: one `Case`, the variant catalogue, the constraints a case must meet, and grids.

A case is pure data. Everything downstream (build, theory, measure, record) takes cases from here,
so the constraints live here too: an impossible case is refused before anything is built.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import stat
import sys
from collections import Counter
from dataclasses import asdict, dataclass, fields, replace
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError, model_validator

from sepbench.errors import SepbenchError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Family = Literal["layer", "network"]


@dataclass(frozen=True)
class Variant:
    name: str
    family: Family
    baseline: str
    summary: str


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in [
        Variant("standard", "layer", "standard", "k×k conv, C_in→C_out (the reference)"),
        Variant("grouped", "layer", "standard", "k×k conv with groups=g (g divides C_in and C_out)"),
        Variant("depthwise", "layer", "standard", "k×k conv, groups=C_in, C_out = m·C_in"),
        Variant("pointwise", "layer", "standard", "1×1 conv, C_in→C_out"),
        Variant("depthwise_separable", "layer", "standard", "depthwise k×k → pointwise 1×1 (MobileNet)"),
        Variant("spatially_separable", "layer", "standard", "k×1 C_in→C_out → 1×k C_out→C_out (Inception-v3)"),
        Variant(
            "spatial_depthwise_separable", "layer", "standard",
            "depthwise k×1 → depthwise 1×k → pointwise 1×1",
        ),
        Variant(
            "se_depthwise_separable", "layer", "standard",
            "depthwise k×k → squeeze-and-excitation (r=4) → pointwise 1×1",
        ),
        Variant(
            "inverted_residual", "layer", "standard",
            "MobileNetV2 block: pointwise expand ×t → depthwise k×k → pointwise project (+ residual)",
        ),
        Variant(
            "mobilenet_v1_fullconv", "network", "mobilenet_v1_fullconv",
            "MobileNetV1 with every depthwise+pointwise pair replaced by one standard 3×3 conv",
        ),
        Variant("mobilenet_v1", "network", "mobilenet_v1_fullconv", "MobileNetV1 (width α, resolution ρ)"),
    ]
}

DTYPES = ("float32", "bfloat16", "float16")
DEVICES = ("cpu", "cuda")
MODES = ("inference", "train")
MEMORY_FORMATS = ("contiguous", "channels_last")
ACTS = ("none", "bn-relu", "bn-relu6")
PADDINGS = ("same", "valid")
SE_REDUCTION = 4
NETWORK_STRIDE = 32  # MobileNetV1 halves the map five times


@dataclass(frozen=True)
class Case:
    """One variant at one geometry, dtype, device, mode and layout.

    `size` is the square input's side (ρ for networks). `groups` is read by the grouped variant only,
    `expansion` by inverted_residual only, `alpha` by the networks only; the other variants keep
    their defaults so that equal cases have equal ids.
    """

    variant: str
    c_in: int = 32
    c_out: int = 32
    size: int = 56
    kernel: int = 3
    stride: int = 1
    dilation: int = 1
    padding: str = "same"
    bias: bool = False
    act: str = "none"
    groups: int = 1
    expansion: int = 1
    alpha: float = 1.0
    batch: int = 1
    dtype: str = "float32"
    device: str = "cpu"
    mode: str = "inference"
    memory_format: str = "contiguous"
    cudnn_benchmark: bool | None = None
    tf32: bool | None = None

    def __post_init__(self) -> None:
        """Reset the knobs this variant ignores, so that equal cases always have equal ids."""
        if self.variant not in VARIANTS:
            return  # check() names the valid variants
        fixed: dict = {}
        if self.family == "network":
            fixed = dict(c_in=3, c_out=1000, kernel=3, stride=1, dilation=1, padding="same", bias=False,
                         act="bn-relu", groups=1, expansion=1)
        else:
            fixed["alpha"] = 1.0
            if self.variant != "grouped":
                fixed["groups"] = 1
            if self.variant != "inverted_residual":
                fixed["expansion"] = 1
        if self.device != "cuda":
            fixed.update(cudnn_benchmark=None, tf32=None)
        elif self.dtype != "float32":
            fixed["tf32"] = None  # TF32 only changes float32 math
        for name, value in fixed.items():
            object.__setattr__(self, name, value)

    @property
    def family(self) -> Family:
        return VARIANTS[self.variant].family

    @property
    def id(self) -> str:
        """Stable key: equal cases give equal ids across runs, files and machines."""
        return "|".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))

    @property
    def group_id(self) -> str:
        """The geometry shared by the variants that are compared against one baseline."""
        return self.baseline().id

    @property
    def ceiling(self) -> str:
        """The roofline compute ceiling this case runs under (a key of the measured peaks): "tf32"
        for CUDA float32 with TF32 allowed, else the dtype."""
        return "tf32" if self.device == "cuda" and self.dtype == "float32" and self.tf32 else self.dtype

    def baseline(self) -> Case:
        base = VARIANTS[self.variant].baseline
        return replace(self, variant=base, groups=1, expansion=1)

    def label(self) -> str:
        """Short human name of the variant within its group."""
        if self.variant == "grouped":
            return f"grouped(g={self.groups})"
        if self.variant == "inverted_residual":
            return f"inverted_residual(t={self.expansion})"
        if self.variant == "depthwise" and self.c_out != self.c_in:
            return f"depthwise(m={self.c_out // self.c_in})"
        return self.variant

    def geometry(self) -> str:
        """Short human name of the group (everything but the variant)."""
        if self.family == "network":
            head = f"α={self.alpha:g} ρ={self.size}"
        else:
            head = f"{self.c_in}→{self.c_out} {self.size}² k{self.kernel}"
            head += f" s{self.stride}" if self.stride != 1 else ""
            head += f" d{self.dilation}" if self.dilation != 1 else ""
            head += " valid" if self.padding == "valid" else ""
            head += f" {self.act}" if self.act != "none" else ""
            head += " +bias" if self.bias else ""
        tail = f"n{self.batch} {self.dtype} {self.mode}"
        tail += " CL" if self.memory_format == "channels_last" else ""
        if self.device == "cuda":
            tail += f" cudnn.bm={int(bool(self.cudnn_benchmark))} tf32={int(bool(self.tf32))}"
        return f"{head} | {tail} [{self.device}]"

    def setting(self) -> str:
        """Human name of the non-geometry axes (batch, dtype, TF32, mode, layout, autotuning): the
        conditions a geometry was measured under."""
        text = f"n{self.batch} {self.dtype}"
        if self.device == "cuda" and self.dtype == "float32":
            text += " TF32" if self.tf32 else " no-TF32"
        text += f" {self.mode}"
        text += " channels_last" if self.memory_format == "channels_last" else ""
        if self.device == "cuda":
            text += " cudnn.benchmark" if self.cudnn_benchmark else " no-benchmark"
        return text

    def as_dict(self) -> dict:
        return asdict(self)


def same_padding(kernel: int, dilation: int) -> int:
    return dilation * (kernel - 1) // 2


def conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """PyTorch's output size: floor((H + 2p − d·(k − 1) − 1) / s) + 1."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _divisors(n: int) -> list[int]:
    """Divisors of n in √n steps (channel counts are bounded by MAX_ELEMENTS, so √n is small)."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted({*small, *(n // d for d in small)})


# A tensor of more elements than this cannot be described, even on the meta device (2^48 elements
# of 4 bytes stay well inside PyTorch's int64 storage sizes); bounds what `cost` will compute.
MAX_ELEMENTS = 2**48


def tensor_elements(case: Case) -> dict[str, int]:
    """Elements of the case's input, output and largest weight, from shapes alone (exact integers)."""
    n = case.batch
    if case.family == "network":
        width = max(1, round(1024 * case.alpha))
        return {"input": n * 3 * case.size**2, "output": n * 1000, "weight": width * 1000}
    pad = same_padding(case.kernel, case.dilation) if case.padding == "same" else 0
    out = max(conv_out(case.size, case.kernel, case.stride, pad, case.dilation), 0)
    hidden = case.c_in * max(case.expansion, 1)
    return {"input": n * case.c_in * case.size**2, "output": n * case.c_out * out**2,
            "hidden": n * hidden * case.size**2,
            "weight": max(case.c_out, hidden) * max(case.c_in, hidden) * case.kernel**2}


def check(case: Case) -> None:
    """Refuse an impossible case with a message naming the constraint and the valid choices."""
    if case.variant not in VARIANTS:
        raise SepbenchError(f"unknown variant {case.variant!r}; valid variants: {', '.join(VARIANTS)}")
    for name, valid in (
        ("dtype", DTYPES), ("device", DEVICES), ("mode", MODES), ("memory_format", MEMORY_FORMATS),
        ("act", ACTS), ("padding", PADDINGS),
    ):
        if getattr(case, name) not in valid:
            raise SepbenchError(f"unknown {name} {getattr(case, name)!r}; valid: {', '.join(valid)}")
    for name in ("c_in", "c_out", "size", "kernel", "stride", "dilation", "groups", "expansion", "batch"):
        if getattr(case, name) < 1:
            raise SepbenchError(f"{name} must be a positive integer, got {getattr(case, name)}")
    if case.family == "network" and not 0 < case.alpha <= 1:
        raise SepbenchError(f"width multiplier alpha must lie in (0, 1], got {case.alpha}")
    elements = tensor_elements(case)
    name, largest = max(elements.items(), key=lambda kv: kv[1])
    if largest > MAX_ELEMENTS:
        raise SepbenchError(f"the {name} tensor would hold {largest:.3g} elements, beyond the {MAX_ELEMENTS:.3g} "
                            "that sepbench describes; use fewer channels, a smaller size or batch")
    if case.dtype == "float16" and case.device == "cpu":
        raise SepbenchError("float16 is measured on CUDA only; on cpu use float32 or bfloat16")
    if case.family == "network":
        if not 0 < case.alpha <= 1:
            raise SepbenchError(f"width multiplier alpha must lie in (0, 1], got {case.alpha}")
        if case.size < NETWORK_STRIDE:
            raise SepbenchError(f"resolution {case.size} is below MobileNet's total stride {NETWORK_STRIDE}")
        return
    k, d = case.kernel, case.dilation
    if case.padding == "same" and k % 2 == 0:
        raise SepbenchError(
            f"kernel={k} is even: padding='same' cannot keep the output shape symmetrically; "
            "use an odd kernel (1, 3, 5, 7, …) or padding='valid'"
        )
    pad = same_padding(k, d) if case.padding == "same" else 0
    reach = d * (k - 1) + 1
    if reach > case.size + 2 * pad:
        raise SepbenchError(
            f"kernel reach d·(k−1)+1 = {reach} exceeds the padded input {case.size + 2 * pad} "
            f"(size {case.size} + 2·padding {pad}); use a smaller kernel or dilation, or a larger size"
        )
    if case.variant == "grouped":
        g = case.groups
        if case.c_in % g or case.c_out % g:
            common = sorted(set(_divisors(case.c_in)) & set(_divisors(case.c_out)))
            raise SepbenchError(
                f"groups={g} must divide c_in={case.c_in} and c_out={case.c_out}; "
                f"valid groups: {', '.join(map(str, common))}"
            )
    if case.variant == "depthwise" and case.c_out % case.c_in:
        raise SepbenchError(
            f"depthwise needs c_out a multiple of c_in (c_in={case.c_in}, c_out={case.c_out}); "
            f"valid c_out: {case.c_in}, {2 * case.c_in}, {3 * case.c_in}, …"
        )
    if case.variant == "pointwise" and case.padding == "valid" and k > 1:
        raise SepbenchError(
            f"pointwise (1×1) cannot match a {k}×{k} padding='valid' conv's output shape; "
            "use padding='same' or kernel=1"
        )


# ---------------------------------------------------------------------------------------------
# Grids: axes crossed into cases. A grid file is TOML: [grid] axes and [measure] settings.

Dtype = Literal["float32", "bfloat16", "float16"]


class GridAxes(BaseModel):
    """Each key is a list of values; the grid is their cross product. Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")

    variants: list[str] = Field(default_factory=lambda: ["standard", "depthwise_separable"], min_length=1)
    c_in: list[PositiveInt] = [32]
    c_out: list[PositiveInt] | None = None  # None: c_out = c_in, paired rather than crossed
    size: list[PositiveInt] = [56]
    kernel: list[PositiveInt] = [3]
    stride: list[PositiveInt] = [1]
    dilation: list[PositiveInt] = [1]
    padding: list[Literal["same", "valid"]] = ["same"]
    bias: list[bool] = [False]
    act: list[Literal["none", "bn-relu", "bn-relu6"]] = ["none"]
    groups: list[PositiveInt] = [4]
    expansion: list[PositiveInt] = [6]
    alpha: list[PositiveFloat] = [1.0]
    batch: list[PositiveInt] = [1]
    dtype: list[Dtype] = ["float32"]
    device: list[Literal["cpu", "cuda"]] = ["cpu"]
    mode: list[Literal["inference", "train"]] = ["inference"]
    memory_format: list[Literal["contiguous", "channels_last"]] = ["contiguous"]
    cudnn_benchmark: list[bool] = [True]
    tf32: list[bool] = [True]


class MeasureSettings(BaseModel):
    """How hard to look at each case. Defaults suit a 2-core CPU; GPU presets may tighten them. Every
    number is finite and bounded, so no setting can make a run hang on one case."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    min_run_time: float = Field(0.2, gt=0, le=3600)  # seconds of timed blocks per variant and group
    min_rounds: int = Field(10, ge=1, le=100_000)  # interleaved rounds (one block per variant each)
    max_rounds: int = Field(200, ge=1, le=100_000)
    block_time: float = Field(0.01, gt=0, le=10)  # target seconds per block, so timer overhead is negligible
    warmup_time: float = Field(0.05, gt=0, le=600)
    unstable_threshold: float = Field(0.10, gt=0, le=100)  # IQR / median above this is re-measured, then flagged
    threads: int | None = Field(None, ge=1, le=4096)  # intra-op threads; None: torch.get_num_threads()
    memory: bool = True  # measure peak memory per case (fresh child process on CPU)

    @model_validator(mode="after")
    def _rounds_in_order(self) -> MeasureSettings:
        if self.min_rounds > self.max_rounds:
            raise ValueError(f"min_rounds ({self.min_rounds}) exceeds max_rounds ({self.max_rounds})")
        return self

    def interleaved(self, **override: float) -> dict[str, float]:
        """The keyword arguments of `timer.measure_interleaved`, with any of them overridden."""
        timing = {"min_run_time", "min_rounds", "max_rounds", "block_time", "warmup_time"}
        return self.model_dump(include=timing) | override


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
            raise SepbenchError(_format_validation(source, exc)) from None
        _check_variant_names(spec, source)
        return Grid(self.name, spec)

    def digest(self) -> str:
        """Hash of what the grid measures, so --resume only continues the same grid."""
        blob = json.dumps(self.spec.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def expand(self) -> tuple[list[Case], Counter[str]]:
        """Cross the axes into valid cases (baselines added) and count what was dropped, and why."""
        return expand(self.spec.grid)


def _format_validation(source: str, err: ValidationError) -> str:
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
        raise SepbenchError(_format_validation(source, exc)) from None
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
        raise SepbenchError(f"cannot read grid file {path}: {exc.strerror}") from None
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


MAX_COMBINATIONS = 1_000_000


def combinations(axes: GridAxes) -> int:
    """How many axis combinations the grid crosses (before invalid ones are dropped)."""
    pairs = len(axes.c_in) if axes.c_out is None else len(axes.c_in) * len(axes.c_out)
    lengths = [len(v) for k, v in axes.model_dump().items() if isinstance(v, list) and k not in ("c_in", "c_out")]
    return pairs * math.prod(lengths)


def expand(axes: GridAxes) -> tuple[list[Case], Counter[str]]:
    total = combinations(axes)
    if total > MAX_COMBINATIONS:
        raise SepbenchError(f"the grid crosses {total:,} axis combinations, more than the {MAX_COMBINATIONS:,} "
                            "sepbench expands in one run; split it into several grid files")
    cases: dict[str, Case] = {}
    seen: set[str] = set()
    dropped: Counter[str] = Counter()
    channel_pairs = (
        [(c, c) for c in axes.c_in] if axes.c_out is None else list(itertools.product(axes.c_in, axes.c_out))
    )
    shared = itertools.product(
        axes.variants, channel_pairs, axes.size, axes.kernel, axes.stride, axes.dilation, axes.padding,
        axes.bias, axes.act, axes.batch, axes.dtype, axes.device, axes.mode, axes.memory_format,
    )
    for variant, (c_in, c_out), size, k, s, d, pad, bias, act, n, dt, dev, mode, mf in shared:
        knobs = dict(
            variant=variant, c_in=c_in, c_out=c_out, size=size, kernel=k, stride=s, dilation=d, padding=pad,
            bias=bias, act=act, batch=n, dtype=dt, device=dev, mode=mode, memory_format=mf,
        )
        # Variant-specific and CUDA-only axes collapse (Case resets what a variant ignores; ids dedupe).
        per_variant = itertools.product(axes.groups, axes.expansion, axes.alpha, axes.cudnn_benchmark, axes.tf32)
        for g, t, a, cb, tf in per_variant:
            case = Case(**knobs, groups=g, expansion=t, alpha=a, cudnn_benchmark=cb, tf32=tf)
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


def group_cases(cases: list[Case]) -> list[list[Case]]:
    """Cases grouped by geometry, baseline first, in a deterministic order (sorted by group id)."""
    groups: dict[str, list[Case]] = {}
    for case in cases:
        groups.setdefault(case.group_id, []).append(case)
    ordered = []
    for gid in sorted(groups):
        members = sorted(groups[gid], key=lambda c: (c.variant != c.baseline().variant, c.id))
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


def shard(groups: list[list[Case]], k: int, n: int) -> list[list[Case]]:
    """The K-th of N deterministic, disjoint slices. Whole groups stay together so that every
    speedup is measured against a baseline timed in the same process."""
    return [g for i, g in enumerate(groups) if i % n == k - 1]
