"""sepbench: how much cheaper separable, grouped and depthwise convolutions are in theory, and how
much faster and leaner they are in practice, on this machine and this PyTorch.

From Python: `sepbench.run`, `compare`, `model`, `cost`, `plan` and `read` (see `sepbench.api`), each
returning a typed result with `to_pandas()`. They are imported on first use, so `import sepbench` stays
light (no torch until something is measured or costed)."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = {"run", "compare", "model", "cost", "plan", "read", "Interrupted"}
_RESULTS = {"RunResult", "ComparisonResult", "ModelResult", "CostResult"}
_ERRORS = {"SepbenchError", "InternalError"}
__all__ = sorted(_API | _RESULTS | _ERRORS | {"__version__"})


def __getattr__(name: str) -> Any:
    if name in _API:
        from sepbench import api

        return getattr(api, name)
    if name in _RESULTS:
        from sepbench import results

        return getattr(results, name)
    if name in _ERRORS:
        from sepbench import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'sepbench' has no attribute {name!r}")
