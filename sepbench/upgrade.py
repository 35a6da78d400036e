"""Older results files, as this sepbench reads them: every rule for a record written before a format
change lives here, one step per schema version, applied as a file is read (`store.read`).

A file's version is its header's `schema_version`; each line is lifted step by step to `SCHEMA_VERSION`
before it is validated, so the record classes (`records`) and everything after them see the current
format only. A format change raises `SCHEMA_VERSION` and adds its step here; `tests/test_upgrade.py`
keeps one committed file of every version and loads it through the steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from sepbench.speedup import spread

SCHEMA_VERSION: Final = 2

# The allocator policy of runs from before it was recorded: glibc's own, adaptive thresholds.
HEAP_DEFAULTS = "allocator defaults"
# The per-round speedup spread above which a record from before it was stored is flagged.
SPREAD_THRESHOLD = 0.10

Json = dict[str, Any]


def _v1_to_v2(data: Json, header: Json | None) -> Json:
    """Version 2: records say how their sittings were summed up (`realized.estimator`: absent in version 1,
    whose sittings were taken back to back, means their geometric mean). And what readers once filled in
    by hand for older records is filled in here:
    - a run header's `environment.heap` missing: the run ran under the allocator's defaults;
    - a case's `theory.ceiling` missing: the roofline bound used the case's own ceiling where the run
      measured one, else float32 (the rule of the time, unrecorded);
    - a case's `realized.spread` missing: recomputed, with its flag, by `finish_run` (it needs the
      baseline's block times)."""
    if data.get("kind") == "run":
        env = data.get("environment")
        if isinstance(env, dict) and env.get("heap") is None:
            data["environment"] = {**env, "heap": HEAP_DEFAULTS}
    elif data.get("kind") == "case":
        theory, case = data.get("theory"), data.get("case")
        if isinstance(theory, dict) and isinstance(case, dict) and theory.get("ceiling") is None:
            peaks = ((header or {}).get("peaks") or {}).get(case.get("device"), {})
            flops = peaks.get("flops") if isinstance(peaks, dict) else None
            tf32 = case.get("device") == "cuda" and case.get("dtype") == "float32" and case.get("tf32")
            own = "tf32" if tf32 else case.get("dtype")  # `Case.ceiling`, on the line as written
            theory["ceiling"] = own if isinstance(flops, dict) and own in flops else "float32"
    return data


# version → the step that lifts a line of that version to the next one
STEPS: dict[int, Callable[[Json, Json | None], Json]] = {1: _v1_to_v2}


def version_of(header: Json) -> int:
    """The schema version a file's header declares, refused when this sepbench cannot read it."""
    version = header.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
        raise ValueError(f"schema version {version!r}, this sepbench reads 1 to {SCHEMA_VERSION}")
    return version


def line(data: Json, version: int, header: Json | None) -> Json:
    """One line of a file of `version`, lifted to `SCHEMA_VERSION` (the header's own line included). The
    steps change `data` in place: it is the reader's own, just decoded."""
    for v in range(version, SCHEMA_VERSION):
        data = STEPS[v](data, header)
    if version < SCHEMA_VERSION and data.get("kind") in ("run", "ab"):
        data["schema_version"] = SCHEMA_VERSION
    return data


def finish_run(version: int, records: list[Any], threshold: float | None) -> None:
    """The part of version 1's upgrade that needs the whole run: each variant's per-round speedup spread
    and its flag, from its block times and its baseline's (the same rounds), where the record lacks them."""
    if version >= 2:
        return
    base = {r.group_id: r.timing.times_s for r in records if r.case_id == r.group_id and r.timing is not None}
    for r in records:
        if r.realized is None or r.realized.spread is not None or r.timing is None:
            continue
        b, v = base.get(r.group_id), r.timing.times_s
        if b is not None and len(b) == len(v) > 1:
            value = spread(b, v)
            r.realized = r.realized.model_copy(update={
                "spread": value, "unstable": value > (threshold if threshold is not None else SPREAD_THRESHOLD)})
