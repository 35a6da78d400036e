"""Attainable peaks of this machine, measured rather than copied from a datasheet: compute from a
large matmul per dtype, bandwidth from a large copy. They are the roofline's ceilings."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from sepbench.measure.timer import calibrate, synchronizer, time_block, warm_up
from sepbench.measure.workload import cuda_math_flags


@dataclass(frozen=True)
class Peaks:
    device: str
    threads: int
    flops: dict[str, float]  # FLOP/s per dtype (2·n³ per n×n matmul)
    bandwidth: float  # bytes/s of a large copy (read + write)
    method: str

    def ceiling(self, key: str) -> tuple[str, float]:
        """The compute ceiling a case's roofline bound uses: its own key ("tf32", "bfloat16", …) where
        that was measured, else float32's. The key used is returned so records can say which."""
        used = key if key in self.flops else "float32"
        return used, self.flops[used]

    def as_dict(self) -> dict:
        return asdict(self)


def _best_of(fn, sync, blocks: int = 5) -> float:
    """Fastest per-iteration time over a few calibrated blocks: a ceiling is the best attained."""
    warm_up(fn, sync, min_time=0.05)
    number = calibrate(fn, sync, block_time=0.05)
    return min(time_block(fn, sync, number) for _ in range(blocks))


# Torch dtype names, plus "tf32": float32 storage with TF32 tensor-core math, while "float32" is then
# measured with TF32 off, so each ceiling matches the cases that use it.
CEILING_DTYPES = {"cpu": ("float32", "bfloat16"), "cuda": ("float32", "tf32", "bfloat16", "float16")}


def measure_peaks(device: str, threads: int) -> Peaks:
    """A compute ceiling per dtype in CEILING_DTYPES[device], and the copy bandwidth."""
    sync = synchronizer(device)
    torch.set_num_threads(threads)
    n = 4096 if device == "cuda" else 1024
    flops = {}
    for name in CEILING_DTYPES[device]:
        dtype = torch.float32 if name == "tf32" else getattr(torch, name)
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        with cuda_math_flags(tf32=name == "tf32"):
            flops[name] = 2 * n**3 / _best_of(lambda a=a, b=b: torch.mm(a, b), sync)
    elems = (1 << 28 if device == "cuda" else 1 << 25)  # 1 GiB on CUDA, 128 MiB on CPU (fp32)
    src = torch.empty(elems, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    bandwidth = 2 * src.numel() * src.element_size() / _best_of(lambda: dst.copy_(src), sync)
    method = (f"compute: best block of torch.mm {n}×{n} per dtype (2n³ FLOP); "
              f"bandwidth: best block of a {src.numel() * 4 >> 20} MiB copy (read + write); {threads} threads")
    return Peaks(device, threads, flops, bandwidth, method)
