"""The environment fingerprint stored with every run: enough to tell why two numbers differ."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import re
import subprocess
from pathlib import Path

import psutil
import torch

import sepbench
from sepbench.measure.workload import steady_heap


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    """The commit of the sepbench checkout in use (with '-dirty' for local changes), if any."""
    root = Path(sepbench.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def _config_versions() -> dict[str, str | None]:
    """oneDNN, MKL and OpenMP versions as the torch build reports them."""
    shown = torch.__config__.show()

    def grab(pattern: str) -> str | None:
        m = re.search(pattern, shown)
        return m.group(1) if m else None

    return {
        "onednn": grab(r"MKL-DNN v([\w.]+)"),
        "mkl": grab(r"Math Kernel Library Version ([\w.]+)"),
        "openmp": grab(r"OpenMP (\d+)"),
        "cpu_capability": grab(r"CPU capability usage: (\w+)"),
    }


def machine_name() -> str:
    """SEPBENCH_MACHINE if set (name a GPU machine after its GPU), else the host name."""
    return os.environ.get("SEPBENCH_MACHINE") or platform.node() or "unknown"


# Variables that change what a conv runs (oneDNN's ISA, OpenMP, the allocator, CUDA libraries): two files
# that differ in them measured two settings, and must say so.
SETTINGS_PREFIXES = ("DNNL_", "ONEDNN_", "OMP_", "KMP_", "GOMP_", "MKL_", "MALLOC_", "LD_PRELOAD", "PYTORCH_",
                     "CUBLAS_", "CUDNN_", "TORCH_")


def settings() -> dict[str, str]:
    """The environment variables of `SETTINGS_PREFIXES` this process runs under."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(SETTINGS_PREFIXES)}


def host_id() -> str | None:
    """This host, hashed: the machine id with this boot's id, so that two VMs of one kind (one image, one
    `machine` name) are two environments, and so is one VM after a reboot, which may land on other
    hardware. None where Linux's ids are not there."""
    parts = []
    for path in ("/etc/machine-id", "/proc/sys/kernel/random/boot_id"):
        with contextlib.suppress(OSError):
            parts.append(Path(path).read_text().strip())
    return hashlib.sha256(":".join(parts).encode()).hexdigest()[:12] if parts else None


def fingerprint(device: str, threads: int) -> dict:
    """Touches CUDA only when `device` is cuda."""
    env: dict = {
        "machine": machine_name(),
        "host": host_id(),
        "sepbench": sepbench.__version__,
        "sepbench_commit": _git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores_physical": psutil.cpu_count(logical=False),
        "cores_logical": psutil.cpu_count(logical=True),
        "threads": threads,
        "heap": steady_heap(),  # the allocator policy every measuring process of sepbench runs under
        "memory_bytes": psutil.virtual_memory().total,
        "torch": torch.__version__,
        "torch_git": torch.version.git_version,
        "torch_cuda": torch.version.cuda,
        "mkldnn_enabled": torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled,
        **_config_versions(),
        "device": device,
        "settings": settings(),
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update({
            "gpu": props.name,
            "gpu_memory_bytes": props.total_memory,
            "gpu_capability": f"{props.major}.{props.minor}",
            "gpu_driver": _nvidia_driver(),
            "cudnn": torch.backends.cudnn.version(),
            "cudnn_enabled": torch.backends.cudnn.enabled,
            "cudnn_benchmark_default": torch.backends.cudnn.benchmark,
            "cudnn_allow_tf32_default": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32_default": torch.backends.cuda.matmul.allow_tf32,
        })
    return env


def _nvidia_driver() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:  # no pynvml, no driver, or an NVML error: the fingerprint just lacks the field
        return None
