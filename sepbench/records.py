"""The record classes, between measuring and presenting: what a results file holds, line by line.

A results file is one `RunHeader` then one `CaseRecord` per case. The classes are strict pydantic
models (unknown keys and non-finite numbers refused), so the schema is checked on write and on load
alike. The file format and its durability live in `store`; the numbers come from `measure`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from sepbench.case import VARIANTS, Case, check
from sepbench.errors import SepbenchError
from sepbench.upgrade import SCHEMA_VERSION


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Header(_Strict):
    """What the first line of every results file holds: its kind and schema version first (a reader tells
    the kinds apart by the line's start), then the grid it measures and when it began."""

    kind: str
    schema_version: Literal[2] = SCHEMA_VERSION
    grid_name: str
    grid_digest: str
    grid: dict[str, Any]
    started: str


class RunHeader(_Header):
    kind: Literal["run"] = "run"
    run_id: str
    shard: str | None = None
    environment: dict[str, Any]
    peaks: dict[str, dict[str, Any]]  # device → Peaks.as_dict()
    # How busy the machine was as the run began (`machine.load`), and how the thread count was chosen.
    machine_start: dict[str, float] | None = None
    thread_policy: str | None = None
    # Where compiled cases kept inductor's cache, and whether it held anything as the run began ("empty":
    # their first compilations were cold). None: the run compiled nothing.
    compile_cache: dict[str, str] | None = None
    # The between-run component every interval holds, and where it came from (`measure.between.Between`);
    # None: intervals over sittings only (older runs).
    between_run: dict[str, Any] | None = None

    @staticmethod
    def _positive(v: object) -> bool:
        """A positive, finite number (not a boolean, which JSON would let through as 1)."""
        return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and v > 0

    @field_validator("grid")
    @classmethod
    def _grid_shape(cls, grid: dict[str, Any]) -> dict[str, Any]:
        """The grid as its readers take it: axes and settings as tables, the settings they read as numbers.
        (Not the whole schema: a grid written by an older sepbench may hold settings since retired.)"""
        for part in ("grid", "measure"):
            if not isinstance(grid.get(part, {}), dict):
                raise ValueError(f"grid.{part} is {grid.get(part)!r}, not a table")
        for key in ("target", "unstable_threshold", "budget_s"):
            v = grid.get("measure", {}).get(key)
            if v is not None and not cls._positive(v):
                raise ValueError(f"grid.measure.{key} is {v!r}, not a positive number")
        return grid

    @field_validator("environment")
    @classmethod
    def _environment_names(cls, environment: dict[str, Any]) -> dict[str, Any]:
        """The names a run is filed and compared under (machine, torch, device) are there, and strings."""
        for key in ("machine", "torch", "device"):
            if key not in environment:
                raise ValueError(f"environment.{key} is missing")
        for key in ("machine", "torch", "device", "cpu", "gpu"):
            if environment.get(key) is not None and not isinstance(environment[key], str):
                raise ValueError(f"environment.{key} is {environment[key]!r}, not a name")
        return environment

    @field_validator("peaks")
    @classmethod
    def _physical_peaks(cls, peaks: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """A ceiling is a positive, finite rate: anything else would draw a roofline from nothing."""
        for device, p in peaks.items():
            rates = {f"flops.{k}": v for k, v in (p.get("flops") or {}).items()} | {"bandwidth": p.get("bandwidth")}
            for name, v in rates.items():
                if not cls._positive(v):
                    raise ValueError(f"peaks.{device}.{name} is {v!r}, not a positive rate")
        return peaks


class TheoryFigures(_Strict):
    out_shape: list[int]
    params: int
    params_no_bias: int
    macs: int  # forward
    flops_2mac: int  # forward, 2 · MACs
    flops_exact: int  # forward, exact convention
    flops_step: int  # what one timed step costs (2mac; 3 × forward for a training step)
    bytes_step: int  # minimum traffic of one timed step
    intensity: float  # flops_step / bytes_step
    weight_bytes: int
    input_bytes: int
    activation_bytes: int
    memory_bytes: int
    speedup: float  # FLOP ratio baseline / variant
    param_ratio: float
    memory_ratio: float
    roofline_s: float
    roofline_speedup: float  # ratio of roofline lower bounds, baseline / variant
    ceiling: str | None = None  # the measured compute ceiling the bound used (None in older records)


class TimingFigures(_Strict):
    median_s: PositiveFloat
    q1_s: PositiveFloat
    q3_s: PositiveFloat
    times_s: list[PositiveFloat] = Field(min_length=1)  # per-iteration seconds of each block, in round order
    number: int
    warmup_calls: int
    threads: int
    remeasured: bool
    unstable: bool  # the raw block times' IQR / median above the threshold: drift, not the speedup's steadiness
    # What the machine did during the group's rounds (None in records from before the contention check).
    retaken: dict[str, int] | None = None  # blocks timed again because they lost the CPU, by reason
    kept_contended: int | None = None  # contended blocks kept once the group's retakes were spent
    blocks: int | None = None  # blocks the group kept, all variants together
    probe_s: list[PositiveFloat] | None = None  # the reference probe before each round
    stop: str | None = None  # why the rounds ended: target, budget, rounds
    sittings: list[int] | None = None  # rounds in each sitting, on fresh tensors (None: one sitting, older records)
    recompiled: int | None = None  # graphs compiled while the group's blocks were timed (compiled groups only)


class RealizedFigures(_Strict):
    # baseline / variant time from the same interleaved rounds: the median over sittings of each sitting's
    # median ratio (`estimator` "median"; None: the geometric mean over sittings taken back to back, or in
    # records of one sitting the ratio of the medians)
    speedup: PositiveFloat
    low: PositiveFloat | None
    high: PositiveFloat | None
    efficiency: PositiveFloat  # realized / theoretical speedup
    spread: float | None = None  # IQR / median of the per-round speedups (None in older records)
    unstable: bool = False  # the interval did not reach the run's target (older records: spread above a threshold)
    half_width: float | None = None  # the 95 % interval's half-width relative to the speedup
    reason: str | None = None  # why it is unstable: contended, drifting, bimodal, sittings, noisy, or recompiled
    estimator: Literal["median"] | None = None  # how the sittings were summed up (`speedup.ESTIMATOR`)
    # τ, the between-run component in low/high (`measure.between`); None: the interval is over sittings only
    between_run: NonNegativeFloat | None = None


@dataclass(frozen=True)
class MemoryFigures:
    """Each figure beside its method; `error` says why there are none (the case still counts)."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # stored as is in results records

    cpu_rss_rise_bytes: int | None = None
    cpu_method: str | None = None
    cuda_alloc_peak_bytes: int | None = None
    cuda_alloc_method: str | None = None
    nvml_device_used_bytes: int | None = None
    nvml_process_bytes: int | None = None
    nvml_method: str | None = None
    error: str | None = None


class StageFigures(_Strict):
    """One stage of a profiled step: a module's own ops, with its part of the cost model."""

    name: str  # the module's qualified name; "(module)" for the top module's own ops (the residual add)
    kind: str  # the module's class
    seconds: float = Field(ge=0)  # per step
    share: float = Field(ge=0)  # of the step's parts
    flops: int  # 2mac, one step (forward, or forward + grad-input + grad-weight)
    bytes: int  # the stage's part of the minimum traffic, one step
    flop_s: float | None = None  # achieved; None where the stage has no FLOPs or took no time
    byte_s: float | None = None
    ceiling_share: float | None = None  # achieved over the roofline at the stage's intensity


class Attribution(_Strict):
    """Where one step's time goes (`sepbench.measure.attribution`): stages, named overheads, the
    bottleneck. Versioned on its own, so records without it (or with an older one) still load."""

    version: Literal[1] = 1
    method: str  # "positions": hooks on a mapping step only; "hooks": on every profiled step
    steps: int
    events: float  # profiler events per step
    event_cost_s: float  # the profiler's cost per event, measured and taken off
    wall_s: float  # the profiled step's wall time, less that cost
    total_s: float  # stages + overheads (CPU: equals wall_s by construction up to per-part medians)
    stages: list[StageFigures]
    overheads: dict[str, float]  # layout, grad accumulation, unstaged, framework | device idle
    bottleneck: str | None  # the stage whose share of time most exceeds its share of FLOPs
    device_busy_s: float | None = None  # CUDA: kernel time per step
    profile_s: float = 0.0  # wall time spent profiling the case: its cost to the run


class CompileFigures(_Strict):
    """What `torch.compile` cost a compiled case, outside every timed block: its first call in the run
    (cold where inductor's cache held none of its graphs) and, after dynamo forgot it, a second
    compilation from the cache (what a rerun of a program pays)."""

    first_s: float = Field(ge=0)
    cache: Literal["cold", "cached", "partly cached"]  # where the first compilation's graphs came from
    cached_s: float | None = Field(None, ge=0)
    graph_breaks: int = Field(0, ge=0)


class VersusEager(_Strict):
    """The compiled step against the same variant run eagerly, timed in the same rounds: eager ÷
    compiled (> 1: compiling made it faster), with its 95 % interval over sittings."""

    ratio: PositiveFloat
    low: PositiveFloat | None
    high: PositiveFloat | None


class CaseRecord(_Strict):
    kind: Literal["case"] = "case"
    run_id: str
    case_id: str
    group_id: str
    case: Case
    status: Literal["ok", "skipped"]
    reason: str | None = None
    backend: str = ""
    theory: TheoryFigures
    timing: TimingFigures | None = None
    realized: RealizedFigures | None = None
    memory: MemoryFigures | None = None
    attribution: Attribution | None = None  # None: profiling was off, or failed (attribution_error says why)
    attribution_error: str | None = None
    compilation: CompileFigures | None = None  # compiled cases only
    vs_eager: VersusEager | None = None  # compiled cases whose eager twin was timed with them
    finished: str

    @model_validator(mode="after")
    def _consistent(self) -> CaseRecord:
        check_case(self.case, self.case_id)
        if self.group_id != self.case.group_id:
            raise ValueError("group_id does not match its case")
        return self


class RunEnd(_Strict):
    """The last line of a finished run: the machine as the run ended, and what it cost."""

    kind: Literal["end"] = "end"
    run_id: str
    finished: str
    seconds: float = Field(ge=0)
    machine_end: dict[str, float]
    retaken_share: float = Field(ge=0)  # blocks timed again, over blocks kept
    probe_drift: float | None = None  # the run's probe, 90th over 10th percentile


class SittingRecord(_Strict):
    """One sitting of a group, as a run takes it: a line of the run's sitting journal (`store`), so an
    interrupted run keeps the sittings of the groups it had not finished. Not part of a results file."""

    kind: Literal["sitting"] = "sitting"
    run_id: str
    group_id: str
    times_s: dict[str, list[PositiveFloat]]  # case id → per-call seconds of each block, in round order
    numbers: dict[str, int]  # calls per block, from the group's first sitting
    warmup_calls: dict[str, int]
    probe_s: list[PositiveFloat]
    retaken: dict[str, int]
    kept_contended: int = Field(ge=0)
    blocks: int = Field(ge=0)
    seconds: float = Field(ge=0)  # the sitting's wall time, building its tensors included
    recompiled: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _paired(self) -> SittingRecord:
        if len({len(t) for t in self.times_s.values()}) > 1:
            raise ValueError("the variants' rounds are not paired")
        if any(n < 1 for n in self.numbers.values()) or set(self.numbers) != set(self.times_s):
            raise ValueError("calls per block do not match the variants timed")
        return self


def check_case(case: Case, case_id: str) -> None:
    """A record's case as this sepbench can stand behind: a variant it knows (a newer sepbench may
    know more), a case that passes the same checks as a grid's, and the id that case has."""
    if case.variant not in VARIANTS:
        raise ValueError(f"variant {case.variant!r} is unknown to this sepbench (a record from a newer "
                         "version, or damaged)")
    try:
        check(case)
    except SepbenchError as exc:
        raise ValueError(f"the case is not a valid one: {exc}") from None
    if case_id != case.id:
        raise ValueError("case_id does not match its case")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------
# `sepbench ab`: one file per comparison, a header then one record per case.


class ABSide(_Strict):
    python: str  # the interpreter as given
    prefix: str  # its sys.prefix: what tells two installs apart
    environment: dict[str, Any]
    env: dict[str, str] = {}  # variables set in this side's workers (--env-a/--env-b): the settings compared


class ABNetwork(_Strict):
    """A network compared site by site (`sepbench ab --model`): what both installs built, identically."""

    spec: str
    input_shape: tuple[PositiveInt, PositiveInt, PositiveInt, PositiveInt]
    dtype: Literal["float32", "bfloat16", "float16"]
    mode: Literal["inference", "train"]
    device: str
    macs: NonNegativeInt  # the convs' MACs over one forward pass
    census: list[dict[str, Any]]  # one `ConvLayer` per conv and input shape (the same under A and B)
    libraries: dict[str, dict[str, str]] = {}  # per side, the versions of the library that built it (torchvision…)


class ABSite(_Strict):
    """What one line of a network comparison timed: a conv site shape of the network (a conv, or a depthwise
    conv and its pointwise conv) on its real input, standing for every layer of that shape; or, named
    "network", the whole network."""

    name: str  # the first site of this shape ("network" for the whole network)
    layers: list[str] = []
    site_kind: str  # standard, depthwise + pointwise, pointwise, grouped, depthwise, network
    calls: PositiveInt  # how often one pass of the network runs this shape
    in_shape: tuple[PositiveInt, PositiveInt, PositiveInt, PositiveInt]
    out_shape: tuple[PositiveInt, ...]
    macs: NonNegativeInt  # one call


class ABHeader(_Header):
    kind: Literal["ab"] = "ab"
    ab_id: str
    a: ABSide
    b: ABSide
    aa: bool  # the same interpreter on both sides: a false-positive calibration
    inject: float = Field(ge=0, le=1)  # B's blocks stretched by this fraction: a power calibration; 0 otherwise
    seed: int
    budget_s: float
    block_time: float
    threads: int
    cores: list[int] | None
    workers: int = 1  # worker processes per side
    warmup_time: float | None = None  # per instance; None in files from before it was recorded
    rounds_per_visit: int | None = None
    # Protocol 2: sides started and greeted in turns, one calls-per-block for both, each visit's rounds
    # half in each order, one pair of workers replaced per case, and an in-run control on a sample of
    # cases. Files from before it read as protocol 1.
    protocol: int = 1
    control_fraction: float = Field(default=0.0, ge=0, le=1)
    network: ABNetwork | None = None  # `ab --model`: the network whose sites are the cases
    fail_above: float | None = Field(default=None, ge=0)  # `--fail-above`, a fraction: the gate's threshold
    # The between-run component in every case's interval (`measure.between.for_ab`): tau, its source,
    # the pairs of repeats it came from. None in files from before it (read with 0).
    between_run: dict[str, Any] | None = None


class ABControl(_Strict):
    """The same protocol, on the same case, between two workers of one side: what the machine fakes now."""

    side: Literal["A", "B"]  # whose workers stood in both positions
    a_s: list[PositiveFloat]  # the worker in A's position
    b_s: list[PositiveFloat]
    order: str
    instance: list[int]

    @model_validator(mode="after")
    def _paired(self) -> ABControl:
        if not len(self.a_s) == len(self.b_s) == len(self.order) == len(self.instance):
            raise ValueError("the control's rounds are not paired")
        return self


class ABCaseRecord(_Strict):
    kind: Literal["ab_case"] = "ab_case"
    ab_id: str
    case_id: str
    case: Case | None = None  # a grid's case, or
    site: ABSite | None = None  # a network's site (`ab --model`): exactly one of the two
    status: Literal["ok", "missing_a", "missing_b", "refused"]  # missing_x: only that side could not run it
    reason: str | None = None
    a_s: list[PositiveFloat] = []  # seconds per call of A's block in each round
    b_s: list[PositiveFloat] = []
    order: str = ""  # per round, which side went first: "A" or "B"
    instance: list[int] = []  # per round, the worker pair that timed it (the unit of the interval)
    number_a: int | None = None
    number_b: int | None = None
    backend_a: str | None = None
    backend_b: str | None = None
    seconds: float = 0.0  # wall time the case took, preparing included
    retaken: dict[str, int] | None = None  # rounds timed again because a block lost the CPU, by reason
    control: ABControl | None = None
    compile_a_s: list[float] | None = None  # compiled cases: each A worker's first compilation, worker order
    compile_b_s: list[float] | None = None
    compile_cache: dict[str, list[str]] | None = None  # per side, each of those compilations' cache state
    replaced: int | None = None  # worker pairs replaced before this case since the workers started (protocol 2)
    finished: str

    @model_validator(mode="after")
    def _consistent(self) -> ABCaseRecord:
        if (self.case is None) == (self.site is None):
            raise ValueError("a comparison line holds a grid's case or a network's site, one of the two")
        if self.case is not None:
            check_case(self.case, self.case_id)
        if len(self.b_s) != len(self.a_s) or (self.order and len(self.order) != len(self.a_s)):
            raise ValueError(f"{len(self.a_s)} A rounds, {len(self.b_s)} B rounds and {len(self.order)} orders: "
                             "the rounds are not paired")
        return self


class ABGate(_Strict):
    """The last line of a comparison run with `--fail-above`: the threshold, the cases or sites flagged
    slower by more than it at the comparison's false discovery rate, and the exit code it gave."""

    kind: Literal["ab_gate"] = "ab_gate"
    ab_id: str
    fail_above: float = Field(ge=0)  # a fraction of A
    fdr: float = Field(gt=0, lt=1)
    failed: list[str]  # case ids (grid) or site names (network), slowest first
    ratios: list[PositiveFloat]  # B / A of each
    exit_code: Literal[0, 1]
    finished: str


class ModelHeader(_Header):
    """A network measured layer by layer (`sepbench model`): what was built, on what, and its census."""

    kind: Literal["model"] = "model"
    model_id: str
    spec: str
    input_shape: tuple[PositiveInt, PositiveInt, PositiveInt, PositiveInt]
    dtype: Literal["float32", "bfloat16", "float16"]
    device: str
    mode: Literal["inference", "train"]
    threads: PositiveInt
    budget_s: PositiveFloat
    environment: dict[str, Any]
    census: list[dict[str, Any]]  # one `ConvLayer` per conv and input shape, in the order the network ran them
    machine_start: dict[str, float] | None = None  # how busy the machine was as the run began (`machine.load`)
    compile: str = "eager"  # how every site, candidate and network ran (`torch.compile` with inductor, or not)
    between_run: dict[str, Any] | None = None  # the between-run component in every interval (`measure.between`)


class CandidateFigures(_Strict):
    """One candidate of a site against the site as it is, timed interleaved with it."""

    name: str
    macs: NonNegativeInt
    theory: PositiveFloat  # MACs of the site as it is / the candidate's
    median_s: PositiveFloat
    realized: PositiveFloat  # median time as it is / the candidate's (over sittings)
    low: PositiveFloat | None = None  # 95 % interval over sittings
    high: PositiveFloat | None = None


class ModelSiteRecord(_Strict):
    """A site of the network (a conv, or a depthwise conv and the pointwise conv after it) and every layer
    with the same shapes, measured once: the site as it is and its candidates."""

    kind: Literal["model_site"] = "model_site"
    model_id: str
    site: str  # its layers' names, " + "-joined; the first site of this shape in the network
    layers: list[str]  # every layer name this measurement stands for (identical shapes)
    shape: str  # the digest of the site's shapes: what makes two sites one workload
    site_kind: str  # standard, depthwise + pointwise, pointwise, grouped, depthwise
    calls: PositiveInt  # how often the network runs this shape in one pass
    in_shape: tuple[PositiveInt, PositiveInt, PositiveInt, PositiveInt]
    out_shape: tuple[PositiveInt, PositiveInt, PositiveInt, PositiveInt]
    macs: NonNegativeInt  # one call of the site
    status: Literal["ok", "failed", "no_candidate"]
    reason: str | None = None
    median_s: PositiveFloat | None = None  # the site as it is
    candidates: list[CandidateFigures] = []
    sittings: list[int] = []
    seconds: float = 0.0
    # Why some candidate's interval stayed wider than the target ("contended", "drifting", "bimodal",
    # "noisy": `timer.diagnose`), None when every one reached it; blocks timed again because they lost
    # the CPU, by reason, and how many such blocks were kept once the re-takes were spent.
    unstable: str | None = None
    retaken: dict[str, int] | None = None
    kept_contended: int | None = None
    finished: str


class ModelNetworkRecord(_Strict):
    """The whole network as it is against the network with the recommended swaps, timed interleaved: does
    the sum of the per-layer savings add up?"""

    kind: Literal["model_network"] = "model_network"
    model_id: str
    swaps: dict[str, str]  # site (first layer's name) → the candidate put in its place
    macs: NonNegativeInt
    swapped_macs: NonNegativeInt
    as_is_s: PositiveFloat
    swapped_s: PositiveFloat
    predicted_s: PositiveFloat  # as-is time minus the per-layer savings of the swapped sites
    measured: PositiveFloat  # as_is_s / swapped_s, over sittings
    low: PositiveFloat | None = None
    high: PositiveFloat | None = None
    sittings: list[int] = []
    unstable: str | None = None  # as a site's: why the network's interval stayed wider than the target
    retaken_share: float | None = Field(default=None, ge=0)  # the whole run's blocks timed again, over blocks kept
    kept_contended: int | None = None  # contended blocks kept over the whole run
    machine_end: dict[str, float] | None = None  # how busy the machine was as the run ended
    sites_s: float | None = Field(default=None, ge=0)  # Σ calls × each conv site's median as it is
    compile_s: dict[str, float] | None = None  # compiled runs: each network's first call (as is, swapped)
    graph_breaks: int | None = Field(default=None, ge=0)  # compiled runs: breaks met compiling both networks
    finished: str
