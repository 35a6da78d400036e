"""`sepbench model`: measure a real network layer by layer, then print its sites and the add-up check."""

from __future__ import annotations

from pathlib import Path

from sepbench import api
from sepbench.console import err, out


def _say(line: str) -> None:
    """The run's own lines dimmed, with an ellipsis; sepbench's warnings as they are."""
    warning = line.startswith("sepbench: ")
    err.print(line if warning else f"[dim]{line}…[/dim]", highlight=False, markup=not warning)


def main(spec: str, *, input_shape: tuple[int, int, int, int] | None, dtype: str, device: str, mode: str,
         threads: int, budget: float, out_dir: Path, resume: bool, how: str) -> int:
    from sepbench.report.tables import model_table

    found = api.model(spec, input=input_shape, dtype=dtype, device=device, mode=mode, threads=threads, budget=budget,
                      out=out_dir, resume=resume, compile=how, say=_say)
    out.print(model_table(found.file))
    for line in found.lines():
        out.print(line, highlight=False)
    out.print(f"→ {found.path}", highlight=False)
    return 0
