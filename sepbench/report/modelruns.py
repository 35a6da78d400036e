"""Networks measured layer by layer (`sepbench model`), for the page: each results file read once, its
sites in network order with their verdicts (`model.verdicts.site_rows`), the add-up check in one line,
and the rows its figure draws."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sepbench.errors import SepbenchError
from sepbench.model.verdicts import site_rows
from sepbench.report.drawing import Figure, anchor
from sepbench.report.tables import network_line
from sepbench.store import ModelFile, Problem, read_model, results_files


@dataclass
class ModelRun:
    path: Path
    found: ModelFile
    rows: list[dict] = field(default_factory=list)
    plot: Figure | None = None

    @property
    def anchor(self) -> str:
        return anchor("model", self.path)

    @property
    def title(self) -> str:
        h = self.found.header
        assert h is not None
        env = h.environment
        how = f", compiled ({h.compile})" if h.compile != "eager" else ""
        return (f"{h.spec} at {'×'.join(map(str, h.input_shape))}, {h.dtype} {h.mode}{how} · "
                f"{env.get('machine', '?')} · {h.device} · torch {env.get('torch', '?')} · {h.threads} thr")

    @property
    def line(self) -> str:
        return network_line(self.found)

    def figure_rows(self) -> pd.DataFrame:
        """One row per site and candidate: the site's share of the network's time and verdict, and the
        candidate's theoretical and realized ×."""
        out = []
        for order, row in enumerate(self.rows):
            for c in row["record"].candidates:
                out.append({"order": order, "site": row["site"], "share": row["share"], "verdict": row["verdict"],
                            "candidate": c.name, "theory": c.theory, "realized": c.realized,
                            "best": row["best"] is not None and c.name == row["best"].name})
            if not row["record"].candidates:
                out.append({"order": order, "site": row["site"], "share": row["share"], "verdict": row["verdict"],
                            "candidate": "", "theory": float("nan"), "realized": float("nan"), "best": False})
        return pd.DataFrame(out)


def load(paths: list[Path]) -> tuple[list[ModelRun], list[Problem]]:
    """Every model results file under `paths` that holds measured sites, newest first."""
    files, _ = results_files(paths, kind="model")
    runs, problems = [], []
    for path in files:
        try:
            found = read_model(path)
        except SepbenchError as exc:
            problems.append(Problem(path, 1, str(exc)))
            continue
        problems += found.problems
        if found.header is not None and found.sites:
            runs.append(ModelRun(path, found, site_rows(found)))
    return sorted(runs, key=lambda r: r.found.header.started if r.found.header else "", reverse=True), problems
