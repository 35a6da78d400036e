"""`sepbench cost`: the exact cost of a case, or of every layer variant at one geometry, nothing run."""

from __future__ import annotations

from typing import Any

from sepbench import api
from sepbench.console import out

NOTE = ("MACs: multiply-accumulates of conv and linear layers. FLOPs [2mac] = 2·MACs (what FlopCounterMode "
        "reports; bias ignored); FLOPs [exact] = L multiplies + L−1 adds per output of a length-L dot product, "
        "+1 per output with bias. Bytes: minimum traffic, each stage reads input and weights once and writes "
        "output once. Training step = 3 × forward FLOPs.")


def main(variant: str, layers: bool, **knobs: Any) -> int:
    from sepbench.report.tables import comparison_table, layers_table

    found = api.cost(variant, **knobs)
    first, _, base_cost = found.rows[0]  # every row's baseline is the first's: one geometry
    base = first.baseline()
    title = f"{first.geometry().split(' [')[0]} · baseline {base.label()}"
    out.print(comparison_table([(base, base_cost, base_cost), *[r for r in found.rows if r[0] != base]],
                               first.mode, title))
    if layers or variant != "all":
        for case, c, _ in found.rows:
            out.print(layers_table(c, f"{case.label()}: per layer", stages_only=case.family == "network"))
    out.print(NOTE, style="dim", markup=False)
    return 0
