"""What the API returns: one typed object per kind of results file, read back from that file, so that an
object from `sepbench.run` and one from `sepbench.read` of the same file are the same thing. Each gives
its table as a DataFrame (`to_pandas`), the lines the CLI prints (`lines`), and a table in Jupyter
(`_repr_html_`)."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from sepbench.errors import SepbenchError
from sepbench.store import ABFile, ModelFile, RunFile, file_kind
from sepbench.store import load as load_runs
from sepbench.store import read as read_file

if TYPE_CHECKING:
    from sepbench.ab.stats import CompileTimes, Control, NetworkVerdict, Summary
    from sepbench.case import Case
    from sepbench.theory import Cost

_SHOWN = 40  # rows a notebook shows of a long table; to_pandas() has them all


def _html(title: str, lines: list[str], table: pd.DataFrame) -> str:
    shown = table.head(_SHOWN)
    more = f"<p>… {len(table) - _SHOWN} more rows: <code>.to_pandas()</code></p>" if len(table) > _SHOWN else ""
    notes = "".join(f"<p>{html.escape(line)}</p>" for line in lines)
    return f"<h4>{html.escape(title)}</h4>{notes}{shown.to_html(index=False, na_rep='')}{more}"


@dataclass
class RunResult:
    """A grid's run: theory and measurement per case, from its results file."""

    file: RunFile
    measured: int | None = None  # cases measured by the call that returned it (None: read from a file)
    already_done: int = 0  # cases an interrupted run had measured before `resume`
    seconds: float | None = None  # the call's wall time, measuring included

    @property
    def path(self) -> Path:
        return self.file.path

    @cached_property
    def table(self) -> pd.DataFrame:
        df, _ = load_runs([self.path])
        return df

    def to_pandas(self) -> pd.DataFrame:
        """One row per case, every figure a column (`docs/results-format.md`)."""
        return self.table.copy()

    def lines(self) -> list[str]:
        """The run's summary: the machine's condition over it and, for compiled cases, the finding."""
        from sepbench.report.tables import compile_lines, machine_line, resolution_line

        header, end = self.file.header, self.file.end
        found = []
        if header is not None and end is not None:
            found.append(machine_line(header.thread_policy or "", header.machine_start, end))
            resolution = resolution_line(self.table, header.grid_name, header.between_run) if len(self.table) else None
            found += [resolution] if resolution else []
        return found + (compile_lines(self.table) if len(self.table) else [])

    def _repr_html_(self) -> str:
        df = self.table
        columns = [c for c in ("variant", "geometry", "mode", "status", "theory_speedup", "realized_speedup",
                               "realized_low", "realized_high", "timing_median_s", "realized_unstable")
                   if c in df]
        return _html(f"{self.path.name}: {len(df)} cases", self.lines(), df[columns] if columns else df)


@dataclass
class ComparisonResult:
    """Two installs (or one under two settings) paired case by case: the ratio B / A with its interval and
    verdict per case, the summary, the in-run control and, for a network or a gate, their answers."""

    file: ABFile
    table: pd.DataFrame
    control: Control | None
    summary: Summary
    network: NetworkVerdict | None = None
    compile: CompileTimes | None = None

    @classmethod
    def of(cls, file: ABFile) -> ComparisonResult:
        from sepbench.ab.stats import compile_times, network_verdict, of_file, summarize

        if file.header is None:  # `store.read` refuses a comparison file without one
            raise SepbenchError(f"{file.path} has no header")
        table, control = of_file(file)
        whole = network_verdict(table) if file.header.network is not None else None
        return cls(file, table, control, summarize(table), whole, compile_times(file.records))

    @property
    def path(self) -> Path:
        return self.file.path

    @property
    def exit_code(self) -> int:
        """0, or the gate's (`--fail-above`): 1 when a change beyond the threshold was found."""
        return self.file.gate.exit_code if self.file.gate is not None else 0

    def to_pandas(self) -> pd.DataFrame:
        """One row per case: ratio B / A, its interval, p, verdict."""
        return self.table.copy()

    def lines(self) -> list[str]:
        from sepbench.report.tables import (
            ab_between_line,
            ab_summary_line,
            compile_line,
            control_line,
            gate_line,
            network_ab_line,
        )

        assert self.file.header is not None
        found = [ab_summary_line(self.summary, self.path), ab_between_line(self.file.header),
                 control_line(self.control, self.summary)]
        if self.compile is not None:
            found.append(compile_line(self.compile))
        if self.network is not None:
            found.append(network_ab_line(self.network, self.file.header))
        if self.file.gate is not None:
            found.append(gate_line(self.file.gate))
        return found

    def _repr_html_(self) -> str:
        columns = [c for c in ("case", "variant", "geometry", "ratio", "low", "high", "p", "verdict")
                   if c in self.table]
        return _html(f"{self.path.name}: {self.summary.compared} cases compared", self.lines(),
                     self.table[columns] if columns else self.table)


@dataclass
class ModelResult:
    """A network measured layer by layer: each conv site against its candidates, and the whole network as
    it is and with the faster candidates swapped in."""

    file: ModelFile

    @property
    def path(self) -> Path:
        return self.file.path

    def to_pandas(self) -> pd.DataFrame:
        """One row per site in network order: its layers, kind, shapes, share of the network's time, verdict and
        best candidate with its realized × and interval."""
        from sepbench.model.verdicts import site_rows

        rows = []
        for row in site_rows(self.file) if self.file.header is not None else []:
            best, record = row["best"], row["record"]
            rows.append({"site": row["site"], "kind": row["kind"], "in_shape": "×".join(map(str, row["in_shape"])),
                         "out_shape": "×".join(map(str, row["out_shape"])), "share": row["share"],
                         "median_s": record.median_s, "verdict": row["verdict"],
                         "best": best.name if best else None, "realized": best.realized if best else None,
                         "low": best.low if best else None, "high": best.high if best else None})
        return pd.DataFrame(rows)

    def lines(self) -> list[str]:
        from sepbench.report.tables import network_line

        return [network_line(self.file)]

    def _repr_html_(self) -> str:
        spec = self.file.header.spec if self.file.header else "?"
        return _html(f"{spec}: {self.path.name}", self.lines(), self.to_pandas())


@dataclass
class CostResult:
    """Exact cost of cases against their baseline, nothing run: params, MACs, FLOPs, bytes, intensity."""

    rows: list[tuple[Case, Cost, Cost]] = field(default_factory=list)  # (case, its cost, its baseline's)

    def to_pandas(self) -> pd.DataFrame:
        out = []
        for case, mine, base in self.rows:
            mode = case.mode
            out.append({"variant": case.variant, "label": case.label(), "geometry": case.geometry(), "mode": mode,
                        "params": mine.params, "macs": mine.macs, "flops": mine.flops(mode),
                        "flops_exact": mine.flops_exact, "bytes": mine.bytes(mode), "intensity": mine.intensity(mode),
                        "memory_bytes": mine.memory_bytes(mode), "speedup": base.flops(mode) / mine.flops(mode),
                        "param_ratio": mine.params / base.params})
        return pd.DataFrame(out)

    def _repr_html_(self) -> str:
        return _html("cost against the baseline (theory)", [], self.to_pandas())


def read(path: str | Path) -> RunResult | ComparisonResult | ModelResult:
    """Any sepbench results file as its typed result."""
    path = Path(path)
    if not path.is_file():
        raise SepbenchError(f"no such results file: {path}")
    kind = file_kind(path)
    found = read_file(path, kind)
    if isinstance(found, ABFile):
        return ComparisonResult.of(found)
    if isinstance(found, ModelFile):
        return ModelResult(found)
    if found.header is None:
        raise SepbenchError(f"{path} is not a sepbench results file (no header line)")
    return RunResult(found)
