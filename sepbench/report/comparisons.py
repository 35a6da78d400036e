"""The `sepbench ab` files behind the report, each read once into a `ComparisonReport` and sorted as a reader
needs them: the current method's comparisons, the calibrations that vouch for them (A/A and injected,
same method and machine), and earlier designs and protocols kept as measured. The newest upgrade's
verdict is one sentence made here, for the first screen and for its card alike."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from sepbench.ab import stats as ab_stats
from sepbench.errors import SepbenchError
from sepbench.records import ABHeader, ABSide
from sepbench.report.drawing import Figure, anchor
from sepbench.report.tables import compile_line, control_line, side_label
from sepbench.report.versions import version_key
from sepbench.store import Problem, read_ab, results_files

CURRENT, CALIBRATION, EARLIER = "current", "calibration", "earlier"
GROUPS = {CURRENT: "Comparisons", CALIBRATION: "Calibrations of the current method (A/A and injected)",
          EARLIER: "Earlier designs and protocols, kept as measured"}
DESIGN_FOLDER = "design"  # comparisons of measuring designs that were tried and left


def build_kind(torch: str) -> str:
    """'2.13.0+cpu' → 'CPU build', '2.12.0+cu130' → 'CUDA 13.0 build': what a local version tag means."""
    local = torch.partition("+")[2]
    if local == "cpu":
        return "CPU build"
    if local.startswith("cu") and local[2:].isdigit() and len(local) > 3:
        return f"CUDA {local[2:-1]}.{local[-1]} build"
    if local.startswith("rocm"):
        return f"ROCm {local[4:]} build"
    return "default build" if not local else f"{local} build"


def side_words(side: ABSide) -> str:
    """'torch 2.13.0 (CPU build)', with the settings it ran under."""
    torch = str(side.environment.get("torch", "?"))
    settings = ", ".join(f"{k}={v}" for k, v in sorted(side.env.items()))
    return f"torch {torch.partition('+')[0]} ({build_kind(torch)})" + (f" with {settings}" if settings else "")


@dataclass
class ComparisonReport:
    """One comparison file: its header, per-case table (`ab_stats.case_table`), summary and control."""

    path: Path
    header: ABHeader
    table: pd.DataFrame
    summary: ab_stats.Summary
    control: ab_stats.Control | None
    group: str = CURRENT
    calibrations: list[ComparisonReport] = field(default_factory=list)
    plot: Figure | None = None
    network: ab_stats.NetworkVerdict | None = None  # `ab --model`: the whole network and its sites
    compile_times: ab_stats.CompileTimes | None = None  # compiled cases: what compiling cost each side

    @property
    def spec(self) -> str | None:
        """The network compared (`ab --model`), or None for a grid's cases."""
        return self.header.network.spec if self.header.network else None

    @property
    def anchor(self) -> str:
        """The card's id on the page, from its file's name (which holds its sides and start time)."""
        return anchor("ab", self.path)

    @property
    def kind(self) -> str:
        h = self.header
        kind = f"A/A + injected {100 * h.inject:g} %" if h.inject else ("A/A" if h.aa else "A/B")
        kind += ", compiled" if self.compiled else ""
        return f"{kind} of {self.spec}" if self.spec else kind

    @property
    def calibration(self) -> bool:
        return self.header.aa

    @property
    def predicted_share(self) -> float | None:
        """For an injected change: the share of cases the power figure says it should be found in."""
        return ab_stats.flag_share(self.table, self.header.inject) if self.header.inject else None

    @property
    def compiled(self) -> bool:
        """Its cases ran through `torch.compile`: a question of its own beside the eager layers'."""
        return any(how != "eager" for how in (self.header.grid.get("grid") or {}).get("compile") or ["eager"])

    @property
    def machine(self) -> tuple[str, str, int]:
        """Where it ran: the machine's name (with its host where the file records one, so that two VMs of
        one kind calibrate apart), the device and the threads."""
        a = self.header.a.environment
        name = str(a.get("machine", "?")) + (f"@{str(a['host'])[:6]}" if a.get("host") else "")
        return name, str(a.get("device", "?")), self.header.threads

    @property
    def stamp(self) -> str:
        """When it began, to the minute: what tells two comparisons of the same sides apart."""
        try:
            return datetime.fromisoformat(self.header.started).strftime("%Y-%m-%d %H:%M UTC")
        except ValueError:
            return self.header.started

    @property
    def sides(self) -> str:
        h = self.header
        if h.aa:
            return side_label(h.a)
        return f"{side_words(h.a)} → {side_words(h.b)}"

    @property
    def title(self) -> str:
        machine, device, threads = self.machine
        return f"{self.kind}: {self.sides} · {machine} · {device} · {threads} thr · {self.stamp}"

    @property
    def releases_differ(self) -> bool:
        """Two PyTorch releases under the same settings, whatever their builds."""
        h = self.header
        return (not h.aa and h.a.env == h.b.env
                and str(h.a.environment.get("torch", "")).partition("+")[0]
                != str(h.b.environment.get("torch", "")).partition("+")[0])

    @property
    def builds(self) -> str | None:
        """'2.13.0 CPU build vs 2.14.1 CUDA 13.0 build' where the two sides' builds differ, else None: then the
        release is not the only difference, and the comparison is not the upgrade's answer."""
        a, b = (str(side.environment.get("torch", "?")) for side in (self.header.a, self.header.b))
        if build_kind(a) == build_kind(b):
            return None
        return f"{a.partition('+')[0]} {build_kind(a)} vs {b.partition('+')[0]} {build_kind(b)}"

    @property
    def upgrade(self) -> bool:
        """Two PyTorch releases of one kind of build under the same settings: what "did the upgrade make it
        worse" asks about (a CPU build against a CUDA build differs in more than the release)."""
        return self.releases_differ and self.builds is None

    @property
    def flagged(self) -> pd.DataFrame:
        """Every flagged case (and every flag the control withheld), largest change first."""
        t = self.table
        t = t[t["verdict"].isin([*ab_stats.FLAGS, ab_stats.WITHIN_CONTROL])]
        return t.assign(size=np.abs(np.log(t["ratio"]))).sort_values("size", ascending=False)

    @property
    def lacking(self) -> pd.DataFrame:
        return self.table[self.table["status"] != "ok"]

    @property
    def control_line(self) -> str | None:
        return control_line(self.control, self.summary) if self.control else None

    @property
    def compile_line(self) -> str | None:
        return compile_line(self.compile_times) if self.compile_times else None

    def median_interval(self) -> tuple[float, float, float]:
        """The median ratio B / A over the compared cases, with its distribution-free 95 % interval."""
        logs = np.log(self.table["ratio"].dropna().to_numpy())
        low, high = ab_stats.median_interval(logs)
        return float(np.exp(np.median(logs))), float(np.exp(low)), float(np.exp(high))

    def affected(self, top: int = 3) -> list[tuple[str, int]]:
        """The variants with the most flagged cases, with their counts."""
        return Counter(self.flagged["variant"]).most_common(top)

    def found(self) -> tuple[int, int]:
        """Cases flagged, of those compared: false flags in an A/A, the power in an injected one."""
        return int(self.summary.flagged), int(self.summary.compared)


def _read(path: Path) -> tuple[ComparisonReport | None, list[Problem]]:
    try:
        ab = read_ab(path)
    except SepbenchError as exc:
        return None, [Problem(path, 1, str(exc))]
    if ab.header is None or not ab.records:
        return None, list(ab.problems)
    table, control = ab_stats.of_file(ab)
    network = ab_stats.network_verdict(table) if ab.header.network is not None else None
    return (ComparisonReport(path, ab.header, table, ab_stats.summarize(table), control, network=network,
                       compile_times=ab_stats.compile_times(ab.records)), list(ab.problems))


def load(paths: list[Path]) -> tuple[list[ComparisonReport], list[Problem]]:
    """Every comparison file under `paths`, grouped (`group`) and sorted: the current protocol's
    comparisons newest upgrade first, then its calibrations, then earlier designs and protocols. A
    damaged line is named in the problems, never silently dropped."""
    files, _ = results_files(paths, kind="ab")  # unreadable folders: already named by `store.load`
    found, problems = [], []
    for path in files:
        c, more = _read(path)
        problems += more
        if c is not None:
            found.append(c)
    if not found:
        return [], problems
    current = max(c.header.protocol for c in found)
    for c in found:
        if DESIGN_FOLDER in c.path.parts or c.header.protocol < current:
            c.group = EARLIER
        elif c.calibration:
            c.group = CALIBRATION
    for c in found:
        if not c.calibration:
            c.calibrations = [k for k in found if k.calibration and k.machine == c.machine
                              and k.header.protocol == c.header.protocol and k.spec == c.spec
                              and k.compiled == c.compiled
                              and (DESIGN_FOLDER in k.path.parts) == (DESIGN_FOLDER in c.path.parts)]
    order = {CURRENT: 0, CALIBRATION: 1, EARLIER: 2}
    found.sort(key=_newest, reverse=True)
    found.sort(key=lambda c: (order[c.group], not c.upgrade))  # stable: newest first within each
    return found, problems


def _newest(c: ComparisonReport) -> tuple:
    """Newer B release, then the later comparison: the largest is the newest."""
    return version_key(str(c.header.b.environment.get("torch", "0")).partition("+")[0]), c.header.started


def newest_upgrade(comparisons: list[ComparisonReport]) -> ComparisonReport | None:
    """The comparison that answers "did the upgrade make it worse": of the current method, between two
    releases, the newest B release (then the latest run); else the newest comparison of any kind. A grid's
    comparison of eager layers answers first; the networks' have answers of their own (`network_upgrades`), a
    compiled grid's is on its card."""
    real = [c for c in comparisons if not c.calibration]
    real = [c for c in real if c.spec is None] or real
    real = [c for c in real if not c.compiled] or real  # the eager layers answer first; compiled ones on cards
    if not real:
        return None
    upgrades = [c for c in real if c.upgrade and c.group == CURRENT] or [c for c in real if c.group == CURRENT] \
        or real
    return max(upgrades, key=_newest)


def network_upgrades(comparisons: list[ComparisonReport]) -> list[ComparisonReport]:
    """Per network compared, its newest comparison between two releases of the current method (then of
    any kind): what the first screen names beside the grid's answer."""
    newest: dict[str, ComparisonReport] = {}
    for c in comparisons:
        if c.spec is None or c.calibration or c.network is None or c.group != CURRENT:
            continue
        key = (c.upgrade, *_newest(c))
        held = newest.get(c.spec)
        if held is None or key > (held.upgrade, *_newest(held)):
            newest[c.spec] = c
    return list(newest.values())


def network_short(c: ComparisonReport) -> str:
    """The first screen's words for a network comparison: the network, its change with its interval, the
    verdict and the releases."""
    n = c.network
    assert n is not None
    return (f"{c.spec} {100 * (n.ratio - 1):+.1f} % [{100 * (n.low - 1):+.1f} … {100 * (n.high - 1):+.1f} %] "
            f"({n.verdict}), {c.sides}")


def network_words(c: ComparisonReport) -> str:
    """A network comparison in one sentence: the whole network's change with its interval and verdict, the
    sides, and the sites that carry most of it."""
    n, h = c.network, c.header
    assert n is not None
    sites = n.sites[n.sites["ratio"].notna()]
    slower = int((sites["verdict"] == "B slower").sum())
    faster = int((sites["verdict"] == "B faster").sum())
    top = ", ".join(f"{r.label} {100 * (r.ratio - 1):+.1f} % ({100 * r.carries:+.2f} % of the network)"
                    for r in sites.head(3).itertuples())
    libraries = h.network.libraries if h.network else {}
    built = "; ".join(f"{name} {libraries.get('A', {}).get(name, '?')} → {version}"
                      for name, version in libraries.get("B", {}).items())
    return (f"{c.spec}: the whole network {100 * (n.ratio - 1):+.1f} % [{100 * (n.low - 1):+.1f} … "
            f"{100 * (n.high - 1):+.1f} %] ({n.verdict}) under {side_words(h.b)} against {side_words(h.a)}"
            + (f" ({built})" if built else "") + "; "
            f"{slower} of {len(sites)} conv site shapes slower, {faster} faster; most carried by {top}.")


def power_words(s: ab_stats.Summary, unit: str) -> str:
    """The power of the test the comparison makes (Benjamini–Hochberg over all its cases), lone change first."""
    return (f"with 80 % power, the median {unit} is flagged when it alone slowed by {100 * s.median_d80_alone:.1f} %, "
            f"or by {100 * s.median_d80:.1f} % where most {unit}s changed (Benjamini–Hochberg over "
            f"{s.compared} {unit}s)")


def calibration_words(c: ComparisonReport) -> str:
    """What vouches for a comparison: A/A false flags and the power to find an injected change, from the
    calibration files of its method on its machine, and its own in-run control."""
    aa = [k for k in c.calibrations if not k.header.inject]
    injected = [k for k in c.calibrations if k.header.inject]
    parts = []
    if aa:
        flags, cases = (sum(k.found()[i] for k in aa) for i in (0, 1))
        parts.append(f"A/A {flags} false flag{'s' if flags != 1 else ''} in {cases} cases")
    for size in sorted({k.header.inject for k in injected}):
        same = [k for k in injected if k.header.inject == size]
        flags, cases = (sum(k.found()[i] for k in same) for i in (0, 1))
        parts.append(f"an injected {100 * size:g} % found in {flags} of {cases}")
    if c.control is not None:
        k = c.control
        parts.append(f"in-run control {k.flagged} false flags in {k.cases}, bias {k.bias:.3f} "
                     f"[{k.bias_low:.3f}–{k.bias_high:.3f}]")
    return "; ".join(parts) if parts else "no calibration file of this method on this machine"


def verdict(c: ComparisonReport) -> tuple[str, str]:
    """The comparison in two sentences: first how many cases changed, by how much, between what, and the
    median over all cases with its interval; then the variants most affected and the calibration."""
    s, h = c.summary, c.header
    machine, device, threads = c.machine
    if c.network is not None:
        return network_words(c), (f"On {machine} ({device}, {threads} thread{'s' if threads != 1 else ''}), paired "
                                  f"block by block. Calibration: {calibration_words(c)}; {power_words(s, 'site')}.")
    ratio, low, high = c.median_interval()
    moved = c.flagged[c.flagged["verdict"].isin(ab_stats.FLAGS)]
    lead = f"{s.b_slower} of {s.compared} cases slower, {s.b_faster} faster"
    if len(moved):
        change = np.abs(np.expm1(np.log(moved["ratio"].to_numpy())))
        lead += (f", by a median {100 * float(np.median(change)):.1f} % ({100 * change.min():.1f}–"
                 f"{100 * change.max():.1f} %)")
    if c.builds is not None:
        lead = f"Not the upgrade alone, since the builds differ ({c.builds}): {lead}"
    lead += (f": {side_words(h.b)} against {side_words(h.a)} on {machine} ({device}, {threads} "
             f"thread{'s' if threads != 1 else ''}), paired block by block; median B / A over all cases "
             f"{ratio:.3f} [{low:.3f}–{high:.3f}].")
    detail = ("Most affected: " + ", ".join(f"{v.replace('_', '-')} {n}" for v, n in c.affected()) + ". "
              if len(moved) else "")
    if s.withheld:
        detail += f"{s.withheld} flags no larger than the control's bias withheld. "
    detail += f"Calibration: {calibration_words(c)}; {power_words(s, 'case')}."
    return lead, detail
