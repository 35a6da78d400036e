"""What to measure: one `Case`, the variant catalogue, and the constraints a case must meet.

A case is pure data. Everything downstream (build, theory, measure, record) takes cases from here,
so the constraints live here too: an impossible case is refused before anything is built.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Literal

from sepbench.errors import SepbenchError

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
        Variant(
            "mobilenet_v2_fullconv", "network", "mobilenet_v2_fullconv",
            "MobileNetV2 with every depthwise 3×3 + projection 1×1 replaced by one standard 3×3 conv",
        ),
        Variant("mobilenet_v2", "network", "mobilenet_v2_fullconv", "MobileNetV2 (width α, resolution ρ)"),
        Variant(
            "xception_block_fullconv", "network", "xception_block_fullconv",
            "Xception middle-flow block with every separable conv replaced by one standard 3×3 conv",
        ),
        Variant(
            "xception_block", "network", "xception_block_fullconv",
            "Xception middle-flow block: [ReLU → separable 3×3 → BN] × 3 + residual, 728·α channels at ⌈ρ/16⌉²",
        ),
    ]
}

DTYPES = ("float32", "bfloat16", "float16")
DEVICES = ("cpu", "cuda")
MODES = ("inference", "train")
MEMORY_FORMATS = ("contiguous", "channels_last")
# How the module runs: eagerly, or compiled by `torch.compile` with inductor (defaults, or mode="max-autotune").
COMPILE_MODES = ("eager", "inductor", "inductor-max-autotune")
ACTS = ("none", "bn-relu", "bn-relu6")
PADDINGS = ("same", "valid")
SE_REDUCTION = 4
NETWORK_STRIDE = 32  # MobileNetV1 and V2 halve the map five times
MAX_ALPHA = 2.0  # MobileNetV2's widest published model is α = 1.4


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
    compile: str = "eager"

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
        """Stable key: equal cases give equal ids across runs, files and machines. An eager case leaves
        `compile` out, so ids from before the axis existed still name the same cases."""
        return "|".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self)
                        if f.name != "compile" or self.compile != "eager")

    @property
    def group_id(self) -> str:
        """The geometry shared by the variants that are compared against one baseline."""
        return self.baseline().id

    @property
    def timing_group(self) -> str:
        """The cases timed together in interleaved rounds: a geometry's variants under every compile
        mode, so that compiled ÷ eager is paired like a speedup is."""
        return replace(self.baseline(), compile="eager").id

    @property
    def compiled(self) -> bool:
        return self.compile != "eager"

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
        tail += f" {self.compile}" if self.compiled else ""
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
        text += f" {self.compile}" if self.compiled else ""
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
        # The widest layer bounds them all: the classifier (≤ 1280·max(1, α) inputs) or, in Xception's
        # block, a 3×3 conv at 728·α channels. Activations never exceed 3·ρ² by more than 32·α/3.
        width = math.ceil(1280 * max(1.0, case.alpha) + 8)
        side = -(-case.size // 2)
        return {"input": n * 3 * case.size**2, "activation": math.ceil(n * 96 * case.alpha + 8) * side**2,
                "output": n * 1000, "weight": max(width * 1000, math.ceil(728 * case.alpha) ** 2 * 9)}
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
        ("act", ACTS), ("padding", PADDINGS), ("compile", COMPILE_MODES),
    ):
        if getattr(case, name) not in valid:
            raise SepbenchError(f"unknown {name} {getattr(case, name)!r}; valid: {', '.join(valid)}")
    for name in ("c_in", "c_out", "size", "kernel", "stride", "dilation", "groups", "expansion", "batch"):
        if getattr(case, name) < 1:
            raise SepbenchError(f"{name} must be a positive integer, got {getattr(case, name)}")
    if case.family == "network" and not 0 < case.alpha <= MAX_ALPHA:
        raise SepbenchError(f"width multiplier alpha must lie in (0, {MAX_ALPHA:g}], got {case.alpha}")
    elements = tensor_elements(case)
    name, largest = max(elements.items(), key=lambda kv: kv[1])
    if largest > MAX_ELEMENTS:
        raise SepbenchError(f"the {name} tensor would hold {largest:.3g} elements, beyond the {MAX_ELEMENTS:.3g} "
                            "that sepbench describes; use fewer channels, a smaller size or batch")
    if case.dtype == "float16" and case.device == "cpu":
        raise SepbenchError("float16 is measured on CUDA only; on cpu use float32 or bfloat16")
    if case.family == "network":
        if case.size < NETWORK_STRIDE:
            raise SepbenchError(f"resolution {case.size} is below MobileNet's total stride {NETWORK_STRIDE}")
        return
    k, d = case.kernel, case.dilation
    for name in ("stride", "dilation"):
        if getattr(case, name) > case.size:
            # A stride past the input leaves one output pixel; a dilation past it reaches only padding;
            # torch and oneDNN refuse such values where their integers overflow.
            raise SepbenchError(f"{name}={getattr(case, name)} exceeds the input size {case.size}; "
                                f"use {name} 1–{case.size}")
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
