"""A case made runnable: module and input on the device, in the dtype and memory format, with the
backend flags set, and one `step()` that is exactly what gets timed and what memory is measured on."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING

import torch
from torch import nn

from sepbench.case import Case
from sepbench.errors import SepbenchError
from sepbench.zoo import build, input_shape

if TYPE_CHECKING:
    from sepbench.measure.compiled import Compilation

# glibc's mallopt(3) parameters, and the values every measuring process uses.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's ceiling for it on 64-bit Linux
TRIM_THRESHOLD = 512 * 2**20
_heap_policy: str | None = None


def steady_heap() -> str:
    """Fix glibc's allocator thresholds for this process, once, and say what was set.

    By default glibc adapts them to the process's history: a process that has freed a large block
    keeps a layer's per-step buffers (activations, oneDNN scratchpads) on the heap, while another
    returns them to the OS after every step and faults them in again on the next: six fresh processes
    ran one grouped 128-channel training step in 1.10–2.03 ms with 3–279 page faults a step
    (results/crosscheck/process-spread.csv). With fixed thresholds (blocks under 32 MiB from the
    heap, freed memory kept up to 512 MiB) they ran it in 1.08–1.30 ms with none: every process, and
    every harness, measures the layer in the same state. Elsewhere than glibc nothing is changed;
    SEPBENCH_HEAP=default keeps glibc's own behaviour, to measure what the policy changes
    (benchmarks/process_spread.py does)."""
    global _heap_policy
    if _heap_policy is None and os.environ.get("SEPBENCH_HEAP") == "default":
        _heap_policy = "allocator defaults (SEPBENCH_HEAP=default)"
    if _heap_policy is None:
        try:
            libc = ctypes.CDLL(None)
            ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        except (OSError, AttributeError):
            ok = 0
        _heap_policy = (f"glibc mallopt: mmap_threshold {MMAP_THRESHOLD >> 20} MiB, trim_threshold "
                        f"{TRIM_THRESHOLD >> 20} MiB" if ok else "allocator defaults (no glibc mallopt)")
    return _heap_policy


def require_device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise SepbenchError("CUDA was asked for, but torch.cuda.is_available() is False on this machine")


@contextmanager
def cuda_math_flags(*, tf32: bool, cudnn_benchmark: bool | None = None) -> Iterator[None]:
    """Set TF32 (convs and matmuls alike) and, unless None, cuDNN autotuning; restore afterwards."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.allow_tf32 = matmul.allow_tf32 = tf32
    if cudnn_benchmark is not None:
        cudnn.benchmark = cudnn_benchmark
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = before


def backend_flags(case: Case) -> AbstractContextManager:
    """The case's TF32 and cuDNN autotuning (CUDA cases only; a CPU case leaves the flags alone)."""
    if case.device != "cuda":
        return nullcontext()
    return cuda_math_flags(tf32=bool(case.tf32), cudnn_benchmark=bool(case.cudnn_benchmark))


class Workload:
    """Inference is `eval()` under `no_grad`; a training step is forward + backward with the input
    requiring grad (as for any layer that is not the first), so each conv computes grad-input and
    grad-weight. Gradients accumulate in place between steps, as they would before an optimizer step.

    A compiled case (`case.compile`) steps through `torch.compile(module)`; its first step compiles,
    which `compile()` times. A later Workload of the same case reuses the compiled code (dynamo guards on
    shapes and types, not on the module instance), so fresh tensors cost no second compilation."""

    def __init__(self, case: Case, seed: int = 0) -> None:
        require_device(case.device)
        steady_heap()
        self.case = case
        dtype = getattr(torch, case.dtype)
        fmt = torch.channels_last if case.memory_format == "channels_last" else torch.contiguous_format
        gen = torch.Generator(device=case.device).manual_seed(seed)
        torch.manual_seed(seed)
        # `memory_format` is a keyword of Module.to that torch's stubs leave out of its overloads.
        self.module: nn.Module = build(case).to(  # type: ignore[call-overload]
            device=case.device, dtype=dtype, memory_format=fmt)
        # Made on the device itself: an absurd batch fails there as an out-of-memory, not on the host.
        self.input = torch.randn(input_shape(case), generator=gen, device=case.device, dtype=dtype)
        self.input = self.input.contiguous(memory_format=fmt)
        self.grad_output: torch.Tensor | None = None
        if case.mode == "train":
            self.module.train()
            self.input.requires_grad_(True)
            with torch.no_grad():
                out = self.module(self.input)
            self.grad_output = torch.randn(out.shape, generator=gen, device=case.device, dtype=dtype)
        else:
            self.module.eval()
        self.runner: nn.Module = self.module
        if case.compile != "eager":
            from sepbench.measure.compiled import compile_module

            self.runner = compile_module(self.module, case.compile)

    def step(self) -> None:
        if self.grad_output is None:
            with torch.no_grad():
                self.runner(self.input)
        else:
            self.runner(self.input).backward(self.grad_output)

    def compile(self) -> Compilation | None:
        """Compile by taking the first step, timed; None for an eager case."""
        if self.case.compile == "eager":
            return None
        from sepbench.measure.compiled import first_call
        from sepbench.measure.timer import synchronizer

        return first_call(self.step, synchronizer(self.case.device))

    def conv_backends(self) -> str:
        """Which convolution backend PyTorch selects for each conv ('dw:Mkldnn pw:Mkldnn', or counts
        for a network), asked with each conv's real input. Never empty: 'unknown: …' says why not."""
        select = getattr(torch._C, "_select_conv_backend", None)
        if select is None:
            return "unknown: this torch has no torch._C._select_conv_backend"
        chosen: list[tuple[str, str]] = []

        def ask(name: str, m: nn.Conv2d, args: tuple) -> None:
            backend = select(args[0], m.weight, m.bias, list(m.stride), list(m.padding), list(m.dilation),
                             False, [0, 0], m.groups, None)
            chosen.append((name.rsplit(".", 1)[-1], str(backend).rsplit(".", 1)[-1]))

        convs = [(n, m) for n, m in self.module.named_modules() if isinstance(m, nn.Conv2d)]
        hooks = [m.register_forward_pre_hook(lambda mod, args, n=n: ask(n, mod, args)) for n, m in convs]
        try:
            with torch.no_grad():
                self.module(self.input.detach())
        except (RuntimeError, TypeError) as exc:
            return f"unknown: the selector failed ({type(exc).__name__})"
        finally:
            for h in hooks:
                h.remove()
        if len(chosen) > 4:
            counts: dict[str, int] = {}
            for _, backend in chosen:
                counts[backend] = counts.get(backend, 0) + 1
            text = " ".join(f"{b}×{k}" for b, k in counts.items())
        else:
            text = " ".join(f"{n}:{b}" for n, b in chosen)
        # Compiled, inductor chooses its own kernels (an extern oneDNN/cuDNN call or generated code): what
        # eager would select is still said, as the reference the compiled step departs from.
        return text if self.case.compile == "eager" else f"{self.case.compile}; eager would run {text}"
