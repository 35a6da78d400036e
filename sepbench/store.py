"""The results store: one JSON Lines file per run, a header line then one line per measured case.

Durability: each record is one `write()` of a whole line on an O_APPEND descriptor, followed by
`fsync`. A crash, Ctrl-C or SIGKILL therefore loses at most the case in flight; the only damage
possible is a torn last line, which the loader reports and skips and `--resume` cuts off before
appending. One writer at a time: a run holds an exclusive `flock` on its file until it ends, and a
second run or resume of the same file is refused.

Loading validates every line against the versioned schema and refuses, with path and line, what
cannot be trusted: damaged lines, non-finite or non-positive times, records of another run than
the file's header (two files concatenated), records of a file without a valid header, and records
already read from another file (a copy). Everything else still loads.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ValidationError

from sepbench import records, upgrade
from sepbench.errors import SepbenchError, os_reason
from sepbench.records import (
    ABCaseRecord,
    ABGate,
    ABHeader,
    CaseRecord,
    ModelHeader,
    ModelNetworkRecord,
    ModelSiteRecord,
    RunEnd,
    RunHeader,
    SittingRecord,
)

# --------------------------------------------------------------------------------------------
# Writing


def ensure_writable(out_dir: Path) -> Path:
    """The output folder, made if need be and checked writable: every command that writes a folder asks
    here before it measures, so a path that cannot be one is refused in one line, not after the work."""
    if out_dir.exists() and not out_dir.is_dir():
        raise SepbenchError(f"output directory {out_dir} is a file, not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SepbenchError(f"cannot create output directory {out_dir}: {os_reason(exc)}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise SepbenchError(f"output directory {out_dir} is not writable")
    return out_dir


def ensure_output_file(path: Path) -> Path:
    """A file a command will write (a --csv): its folder there and writable, the path not a folder; asked
    before the work, so that nothing measured is lost to a path that cannot be written."""
    folder = path.parent
    if not str(path.name):
        raise SepbenchError(f"cannot write {path}: give a file name")
    if path.is_dir():
        raise SepbenchError(f"cannot write {path}: it is a directory")
    if not folder.is_dir():
        raise SepbenchError(f"cannot write {path}: no directory {folder}")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise SepbenchError(f"cannot write {path}: permission denied")
    return path


def write_csv(table: pd.DataFrame, path: Path) -> None:
    """A command's table as CSV, whole or absent: a full disk leaves the old file, or none."""
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        table.to_csv(staged, index=False)
        os.replace(staged, path)
    except OSError as exc:
        staged.unlink(missing_ok=True)
        raise SepbenchError(f"cannot write {path}: {os_reason(exc)}") from None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+_-]+", "_", text)


class ResultsFile:
    """Append-only, fsync'd JSON Lines file of one run, written by one process at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd: int | None = None

    record_kind = "case"  # a file holding no record of this kind is empty

    @classmethod
    def create(cls, out_dir: Path, header: RunHeader | ABHeader | ModelHeader,
               stem: str | None = None) -> ResultsFile:
        """A new file named after the run (or `stem`) and the time, holding `header`."""
        out_dir = ensure_writable(Path(out_dir))
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        if stem is None:
            if not isinstance(header, RunHeader):
                raise TypeError("a comparison file is named by its caller (`stem`)")
            env = header.environment
            shard = f"-shard{header.shard.replace('/', 'of')}" if header.shard else ""
            stem = f"{header.grid_name}{shard}-{env['device']}-{env['machine']}-torch{env['torch']}"
        # Two runs started in the same second, by one process or several, get names of their own:
        # O_EXCL makes the name's claim atomic, and a taken name moves on to the next suffix.
        for n in range(1, 1000):
            path = out_dir / _slug(f"{stem}-{stamp}{'' if n == 1 else f'-{n}'}.jsonl")
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                os.close(fd)
                break
            except FileExistsError:
                continue
            except OSError as exc:
                raise SepbenchError(f"cannot create results file {path}: {os_reason(exc)}") from None
        else:
            raise SepbenchError(f"cannot create results file {path}: 999 runs in this second already")
        results = cls(path)
        try:
            results.lock()
            results.append(header)
        except SepbenchError:
            results.discard_if_empty()
            raise
        _fsync_dir(out_dir)
        return results

    def lock(self) -> None:
        """Hold an exclusive lock on the file for as long as this process runs (or until `unlock`)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise SepbenchError(f"cannot open results file {self.path}: {os_reason(exc)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise SepbenchError(f"results file {self.path} is being written by another sepbench run; wait for it to "
                                "end, or measure into another --out") from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def append(self, record: BaseModel) -> None:
        _append_line(self.path, record, "results file")

    def discard_if_empty(self) -> bool:
        """Remove the file if it holds no case record (a header at most): a run that failed before
        measuring anything leaves nothing behind."""
        try:
            lines = [line for line in self.path.read_bytes().split(b"\n") if line.strip()]
        except OSError:
            return False
        if any(f'"kind":"{self.record_kind}"'.encode() in line for line in lines):
            return False
        self.unlock()
        self.path.unlink(missing_ok=True)
        return True

    def repair_tail(self) -> bool:
        """Cut a torn last line (a write killed midway) so appends start on a line boundary."""
        try:
            with open(self.path, "rb+") as f:
                data = f.read()
                if not data or data.endswith(b"\n"):
                    return False
                f.truncate(data.rfind(b"\n") + 1)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise SepbenchError(f"cannot repair results file {self.path}: {os_reason(exc)}") from None
        return True


def _append_line(path: Path, record: BaseModel, what: str, create: bool = False) -> None:
    """One record as one whole line: a single `write` on an O_APPEND descriptor, then `fsync`. Only a
    journal is created on first write: a results file that vanished mid-run is an error, not a new file."""
    line = (record.model_dump_json() + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | (os.O_CREAT if create else 0), 0o644)
    except OSError as exc:
        raise SepbenchError(f"cannot write {what} {path}: {os_reason(exc)}") from None
    try:
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as exc:
        raise SepbenchError(f"cannot write {what} {path}: {os_reason(exc)}") from None
    finally:
        os.close(fd)


class SittingJournal:
    """The sittings of a run's unfinished groups, beside its results file (`<name>.sittings`, not read as
    results): a run spreads each group's sittings over its whole length and writes the group's records
    only when its last sitting is taken, so without the journal an interrupt would lose every sitting
    of every group under way. Written like the results file; removed when the run ends."""

    def __init__(self, results_path: Path) -> None:
        self.path = Path(results_path).with_suffix(".sittings")

    def append(self, record: SittingRecord) -> None:
        _append_line(self.path, record, "sitting journal", create=True)

    def read(self, run_id: str) -> list[SittingRecord]:
        """The run's sittings in the order taken; a torn or damaged line is left out (that sitting is
        simply taken again)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise SepbenchError(f"cannot read sitting journal {self.path}: {os_reason(exc)}") from None
        found = []
        for line in raw.split(b"\n"):
            try:
                record = SittingRecord.model_validate(_decoded(line))
            except (ValueError, ValidationError, RecursionError):
                continue
            if record.run_id == run_id:
                found.append(record)
        return found

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int
    message: str
    torn_tail: bool = False  # an interrupted last write: expected after a kill, not damage

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass
class RunFile:
    path: Path
    header: RunHeader | None
    records: list[CaseRecord]
    problems: list[Problem]
    end: RunEnd | None = None  # the run's last line; None while it runs, after a kill, in older files


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "record"
        return f"does not match schema v{upgrade.SCHEMA_VERSION}: {loc}: {first['msg']}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start} of the line): not a results line"
    if isinstance(exc, (json.JSONDecodeError, RecursionError)):
        return f"not valid JSON: {exc}"
    return str(exc)


def _decoded(line: bytes) -> Any:
    """One line's JSON, refused where a string in it is not Unicode: a `\\ud800` escape alone decodes to
    a lone surrogate, which no page or file can encode later."""
    data = json.loads(line)
    if b"\\ud" in line.lower():
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("holds a string that is not valid Unicode (an unpaired surrogate escape)") from None
    return data


AB_HEADER_START = b'{"kind":"ab"'  # how a comparison file's first line begins (`records._Header` puts kind first)
MODEL_HEADER_START = b'{"kind":"model"'  # and a network's, measured layer by layer (`sepbench model`)


def _kind_of(head: bytes) -> str:
    """'ab', 'model' or 'run', from the start of a file's first line."""
    if head.startswith(AB_HEADER_START + b","):
        return "ab"
    if head.startswith(MODEL_HEADER_START + b","):
        return "model"
    return "run"


def file_kind(path: Path) -> str:
    """Which reader a file is for: 'ab' (`read_ab`), 'model' (`read_model`) or 'run' (`read_run`)."""
    try:
        with open(path, "rb") as f:
            return _kind_of(f.read(256))
    except OSError:
        return "run"


def results_files(paths: list[Path], kind: str = "run") -> tuple[list[Path], list[Problem]]:
    """Files given, plus every *.jsonl under the directories given; a directory or file that cannot
    be read is a Problem, never a silent gap. Only regular files are read. `kind` "run" gives the
    run files (A/B comparison files found in a directory are left to `kind="ab"`, networks measured
    layer by layer to `kind="model"`), "ab" and "model" those."""
    found: list[Path] = []
    problems: list[Problem] = []

    def unreadable(exc: OSError) -> None:
        problems.append(Problem(Path(exc.filename or "?"), 0, f"cannot read directory: {os_reason(exc)}"))

    for p in map(Path, paths):
        if p.is_dir():
            if not os.access(p, os.R_OK | os.X_OK):
                unreadable(PermissionError(13, "Permission denied", str(p)))
            for root, dirs, files in os.walk(p, onerror=unreadable):
                dirs.sort()
                found += [Path(root) / f for f in sorted(files) if f.endswith(".jsonl")]
        elif p.exists():
            found.append(p)
        else:
            raise SepbenchError(f"no such results file or directory: {p}")
    regular = []
    for f in found:
        if not f.is_file():
            problems.append(Problem(f, 0, "not a regular file, not read"))
        elif file_kind(f) == kind:
            regular.append(f)
    return regular, problems


@dataclass
class ABFile:
    path: Path
    header: ABHeader | None
    records: list[ABCaseRecord]
    problems: list[Problem]
    gate: ABGate | None = None  # `--fail-above`: the verdict, the file's last line


@dataclass
class ModelFile:
    path: Path
    header: ModelHeader | None
    sites: list[ModelSiteRecord]
    problems: list[Problem]
    network: ModelNetworkRecord | None = None  # the add-up check, the file's last line once the run is done


def _take_model_line(found: ModelFile, data: dict[str, Any], seen: set[str]) -> None:
    kind = data.get("kind")
    if kind == "model" and found.header is None:
        found.header = ModelHeader.model_validate(data)
    elif kind in ("model_site", "model_network") and found.header is not None:
        record: ModelSiteRecord | ModelNetworkRecord = (
            ModelSiteRecord.model_validate(data) if kind == "model_site" else ModelNetworkRecord.model_validate(data))
        if record.model_id != found.header.model_id:
            raise ValueError(f"record of model run {record.model_id}, but the header is {found.header.model_id}")
        if isinstance(record, ModelNetworkRecord):
            found.network = record
        elif record.shape in seen:
            raise ValueError(f"a second record of site shape {record.shape}, ignored")
        else:
            seen.add(record.shape)
            found.sites.append(record)
    else:
        raise ValueError(f"unexpected line of kind {kind!r} in a model file")


def _take_run_line(run: RunFile, data: dict[str, Any]) -> None:
    kind = data.get("kind")
    if kind == "run":
        header = RunHeader.model_validate(data)
        if run.header is not None:
            raise ValueError(f"a second run header (run {header.run_id}): two runs' files concatenated; "
                             "its records are refused")
        run.header = header
    elif kind == "case":
        record = CaseRecord.model_validate(data)
        if run.header is None:
            raise ValueError("a case record before any run header")
        if record.run_id != run.header.run_id:
            raise ValueError(f"record of run {record.run_id}, but the file's header is run {run.header.run_id}")
        run.records.append(record)
    elif kind == "end":
        end = RunEnd.model_validate(data)
        if run.header is None or end.run_id != run.header.run_id:
            raise ValueError(f"an end line of run {end.run_id}, not of this file's run")
        run.end = end
    else:
        raise ValueError(f"unknown record kind {kind!r} (expected 'run', 'case' or 'end')")


def _take_ab_line(ab: ABFile, data: dict[str, Any], seen: set[str]) -> None:
    kind = data.get("kind")
    if kind == "ab" and ab.header is None:
        ab.header = ABHeader.model_validate(data)
    elif kind == "ab_case" and ab.header is not None:
        record = ABCaseRecord.model_validate(data)
        if record.ab_id != ab.header.ab_id:
            raise ValueError(f"record of comparison {record.ab_id}, but the header is {ab.header.ab_id}")
        if record.case_id in seen:
            raise ValueError(f"a second record of case {record.case_id}, ignored")
        seen.add(record.case_id)
        ab.records.append(record)
    elif kind == "ab_gate" and ab.header is not None:
        gate = ABGate.model_validate(data)
        if gate.ab_id != ab.header.ab_id:
            raise ValueError(f"a gate line of comparison {gate.ab_id}, but the header is {ab.header.ab_id}")
        ab.gate = gate
    else:
        raise ValueError(f"unexpected line of kind {kind!r} in a comparison file")


def read(path: Path, kind: str | None = None) -> RunFile | ABFile | ModelFile:
    """Any sepbench results file: a run (or a shard of one), an A/B comparison or a network measured layer
    by layer (`kind` "run", "ab" or "model"; None: as its first line says). Every line is lifted from the
    file's schema version to this sepbench's (`upgrade`) and validated; each line that fails is a Problem
    with its line number, the rest still loads. A torn last line (an interrupted write) is a Problem marked as such."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SepbenchError(f"cannot read results file {path}: {os_reason(exc)}") from None
    if kind is None:
        kind = _kind_of(raw[:256])
    found: RunFile | ABFile | ModelFile
    take: Callable[[dict[str, Any]], None]
    seen: set[str] = set()
    if kind == "ab":
        ab = found = ABFile(path, None, [], [])
        take = partial(_take_ab_line, ab, seen=seen)
    elif kind == "model":
        model = found = ModelFile(path, None, [], [])
        take = partial(_take_model_line, model, seen=seen)
    else:
        run = found = RunFile(path, None, [], [])
        take = partial(_take_run_line, run)
    lines = raw.split(b"\n")
    torn = lines[-1] != b""
    version, header = upgrade.SCHEMA_VERSION, None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if torn and number == len(lines):
            found.problems.append(Problem(path, number, "torn last line (interrupted write), ignored", True))
            continue
        try:
            data = _decoded(line)
            if not isinstance(data, dict):
                raise ValueError(f"unknown record kind None (expected a JSON object, got {type(data).__name__})")
            if data.get("kind") in ("run", "ab", "model") and found.header is None:
                version, header = upgrade.version_of(data), data
            take(upgrade.line(data, version, header))
        except (ValueError, ValidationError, RecursionError) as exc:
            found.problems.append(Problem(path, number, _reason(exc)))
    if isinstance(found, RunFile):
        if found.header is None and not any(p.line == 1 for p in found.problems):
            found.problems.append(Problem(path, 1, "no run header line"))
        measure = found.header.grid.get("measure", {}) if found.header else {}
        upgrade.finish_run(version, found.records, measure.get("unstable_threshold"))
    elif found.header is None:
        what = "model" if isinstance(found, ModelFile) else "ab comparison"
        raise SepbenchError(f"{path} is not a sepbench {what} file (no header line)")
    return found


def read_run(path: Path) -> RunFile:
    """One run file (`read`, as a run)."""
    run = read(path, "run")
    assert isinstance(run, RunFile)  # what `read` makes of kind "run"
    return run


def read_ab(path: Path) -> ABFile:
    """One A/B comparison file (`read`, as a comparison)."""
    ab = read(path, "ab")
    assert isinstance(ab, ABFile)  # what `read` makes of kind "ab"
    return ab


def read_model(path: Path) -> ModelFile:
    """One network measured layer by layer (`read`, as a model file)."""
    found = read(path, "model")
    assert isinstance(found, ModelFile)  # what `read` makes of kind "model"
    return found


def _flatten(run: RunFile, record: CaseRecord) -> dict[str, Any]:
    env = run.header.environment if run.header else {}
    row: dict[str, Any] = {
        "file": str(run.path), "run_id": record.run_id, "case_id": record.case_id, "group_id": record.group_id,
        "status": record.status, "reason": record.reason, "backend": record.backend, "label": record.case.label(),
        "geometry": record.case.geometry(), "setting": record.case.setting(), "family": record.case.family,
        "finished": record.finished,
        **record.case.as_dict(),
    }
    for key in ("machine", "host", "torch", "cpu", "gpu", "threads", "sepbench_commit", "onednn", "cudnn", "heap"):
        row[f"env_{key}"] = env.get(key)
    if row["env_host"]:  # two VMs of one kind share a name: the host tells them apart (older runs have none)
        row["env_machine"] = f"{row['env_machine']}@{row['env_host'][:6]}"
    row["env_settings"] = ", ".join(f"{k}={v}" for k, v in sorted((env.get("settings") or {}).items()))
    row["run_started"] = run.header.started if run.header else None
    row["run_grid"] = run.header.grid_name if run.header else None
    measure = (run.header.grid.get("measure") or {}) if run.header else {}
    row["run_unstable_threshold"] = measure.get("unstable_threshold", 0.10)
    row["run_target"] = measure.get("target")  # None in runs from before the stopping rule
    peaks = run.header.peaks.get(record.case.device, {}) if run.header else {}
    flops = peaks.get("flops", {})
    row["ceiling"] = record.theory.ceiling  # as recorded (`upgrade` fills it in for older records)
    row["ceiling_fallback"] = row["ceiling"] != record.case.ceiling
    row["peak_flops"] = flops.get(row["ceiling"])
    row["peak_bandwidth"] = peaks.get("bandwidth")
    for prefix, part in (("theory", record.theory), ("timing", record.timing), ("realized", record.realized),
                         ("memory", record.memory), ("compilation", record.compilation),
                         ("vs_eager", record.vs_eager)):
        if part is not None:
            fields = part.model_dump() if isinstance(part, BaseModel) else asdict(part)
            row.update({f"{prefix}_{k}": v for k, v in fields.items()})
    retaken = row.pop("timing_retaken", None)
    row["timing_retaken"] = sum(retaken.values()) if retaken else (0 if retaken is not None else None)
    row["timing_retaken_reasons"] = " ".join(f"{k}:{v}" for k, v in sorted(retaken.items())) if retaken else ""
    row.pop("timing_probe_s", None)
    row.update(_condition_columns(run))
    row.update(_attribution_columns(record))
    return row


# A run counts as taken on a contended machine when other work kept this many cores busy as it began or
# ended, or when this share of its blocks had to be timed again.
BUSY_CORES = 0.5
BUSY_RETAKEN_SHARE = 0.05


def _condition_columns(run: RunFile) -> dict[str, Any]:
    """The machine's condition over the run: thread policy, load at both ends, blocks re-taken, probe drift."""
    header, end = run.header, run.end
    start = (header.machine_start if header else None) or {}
    finish = end.machine_end if end else {}
    share = end.retaken_share if end else None
    busy = [x for x in (start.get("other_cores"), finish.get("other_cores")) if x is not None]
    return {
        "run_thread_policy": header.thread_policy if header else None,
        "run_other_cores_start": start.get("other_cores"), "run_other_cores_end": finish.get("other_cores"),
        "run_retaken_share": share, "run_probe_drift": end.probe_drift if end else None,
        "run_contended": bool((busy and max(busy) >= BUSY_CORES) or (share or 0) > BUSY_RETAKEN_SHARE),
    }


def _attribution_columns(record: CaseRecord) -> dict[str, Any]:
    """The attribution in a few flat columns; the stages themselves as JSON (report.analysis unpacks them)."""
    a = record.attribution
    if a is None:
        return {"attribution_error": record.attribution_error}
    top = next((s for s in a.stages if s.name == a.bottleneck), None)
    step_flops = record.theory.flops_step
    return {
        "attribution_error": record.attribution_error, "attribution_method": a.method,
        "attribution_wall_s": a.wall_s, "attribution_total_s": a.total_s, "attribution_busy_s": a.device_busy_s,
        "attribution_bottleneck": a.bottleneck, "attribution_bottleneck_share": top.share if top else None,
        "attribution_bottleneck_flop_share": top.flops / step_flops if top and step_flops else None,
        "attribution_json": a.model_dump_json(),
    }


def read_runs(paths: list[Path]) -> tuple[list[RunFile], list[Problem]]:
    """Every run file under `paths`, read; a file that cannot be read is a Problem, not an error. The
    runs' own line problems stay with each RunFile."""
    files, problems = results_files(paths)
    runs = []
    for path in files:
        try:
            runs.append(read_run(path))
        except SepbenchError as exc:
            problems.append(Problem(path, 0, str(exc).split(": ", 1)[-1]))
    return runs, problems


def load(paths: list[Path]) -> tuple[pd.DataFrame, list[Problem]]:
    """Merge results from many files, machines and PyTorch versions into one table (one row per
    case record), with every problem found on the way. Records of a file without a valid header,
    and records already read from another file (same run and case: a copy), are refused."""
    runs, problems = read_runs(paths)
    rows = []
    seen: dict[tuple[str, str], Path] = {}
    for run in runs:
        path = run.path
        problems += run.problems
        if run.header is None:
            if run.records:
                problems.append(Problem(path, 0, f"no valid run header: its {len(run.records)} records are refused"))
            continue
        copies: dict[Path, int] = {}
        for record in run.records:
            key = (record.run_id, record.case_id)
            if key in seen:
                copies[seen[key]] = copies.get(seen[key], 0) + 1
                continue
            seen[key] = path
            rows.append(_flatten(run, record))
        for first, n in copies.items():
            where = "earlier in this file" if first == path else f"from {first}"
            problems.append(Problem(path, 0, f"{n} records repeat records already read {where} "
                                             "(same run and case): refused"))
    table = pd.DataFrame(rows)
    missing = [c for c in _part_columns() if c not in table.columns]
    if len(table) and missing:  # no record had that part (no baseline, no memory): the columns still exist
        table = pd.concat([table, pd.DataFrame(None, index=table.index, columns=missing, dtype=object)], axis=1)
    return table, problems


def _part_columns() -> list[str]:
    """Every column a record's parts can fill, whether or not any loaded record has that part."""
    models: tuple[tuple[str, type[BaseModel]], ...] = (
        ("theory", records.TheoryFigures), ("timing", records.TimingFigures), ("realized", records.RealizedFigures),
        ("compilation", records.CompileFigures), ("vs_eager", records.VersusEager))
    return ([f"{prefix}_{name}" for prefix, model in models for name in model.model_fields]
            + [f"memory_{f.name}" for f in dataclasses.fields(records.MemoryFigures)])


def resumable(out_dir: Path, kind: str, same: Callable[[Any], bool]) -> Path | None:
    """The one resume rule of `run`, `ab` and `model`: the newest file of `kind` directly in `out_dir`
    (by its header's start, then its name) whose header `same` accepts. Only regular files are opened
    (a FIFO named like results is passed over, not waited on); a candidate with damaged lines is refused,
    a torn last line is not (`reopen` cuts it)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return None
    best: tuple[tuple[str, str], Path] | None = None
    for path in sorted(out_dir.glob("*.jsonl")):
        if not path.is_file() or file_kind(path) != kind:
            continue
        found = read(path, kind)
        if found.header is None or not same(found.header):
            continue
        damaged = [p for p in found.problems if not p.torn_tail]
        if damaged:
            raise SepbenchError(f"cannot resume from damaged results: {damaged[0]}")
        key = (found.header.started, path.name)
        if best is None or key > best[0]:
            best = (key, path)
    return best[1] if best else None


def reopen(path: Path, kind: type[ResultsFile] = ResultsFile) -> ResultsFile:
    """A file found by `resumable`, opened to append: writable, locked (a second resume of the same run
    stops here) and its torn last line cut."""
    if not os.access(path, os.W_OK):
        raise SepbenchError(f"cannot resume {path}: the file is not writable")
    results = kind(path)
    results.lock()
    results.repair_tail()
    return results


def attributions(paths: list[Path], case_id: str) -> tuple[list[dict[str, Any]], list[Problem]]:
    """The newest profiled record of one case per machine, torch and device in the results given (what
    `explain` shows without measuring), as rows of `load`'s table."""
    df, problems = load(paths)
    if df.empty or "attribution_json" not in df:
        return [], problems
    rows = df[(df["case_id"] == case_id) & df["attribution_json"].notna()]
    rows = rows.sort_values("run_started").groupby(["env_machine", "env_torch", "device"], dropna=False).tail(1)
    return rows.to_dict("records"), problems
