"""What a measured network's file says, read without torch: each site's verdict (swap, keep, slower), the
sites in network order, and the signs that the machine was not the run's alone. The report and the
tables read these; `model.measure` chooses its swaps by the same `verdict`."""

from __future__ import annotations

from sepbench.records import CandidateFigures, ModelSiteRecord
from sepbench.store import ModelFile


def verdict(record: ModelSiteRecord) -> tuple[str, CandidateFigures | None]:
    """swap (the fastest candidate's whole interval above 1×), slower (every candidate's below), or keep."""
    if record.status != "ok" or not record.candidates:
        return "keep", None
    best = max(record.candidates, key=lambda c: c.realized)
    if best.low is not None and best.low > 1:
        return "swap", best
    if all(c.high is not None and c.high < 1 for c in record.candidates):
        return "slower", best
    return "keep", best


RETAKEN_SHARE_MAX = 0.05  # a run that timed more than this share of its blocks again met a busy machine


def contention(found: ModelFile) -> str | None:
    """What says the machine was not the run's alone, in words, or None: other work at the start or the
    end (`machine.busy_line`'s threshold), blocks re-taken or kept contended, sites left unstable by it."""
    header, n = found.header, found.network
    signs = []
    for when, load in (("start", header.machine_start if header else None), ("end", n.machine_end if n else None)):
        if load and load.get("other_cores", 0.0) >= 0.5:
            signs.append(f"{load['other_cores']:.1f} cores busy with other work at the {when}")
    if n is not None and n.retaken_share is not None and n.retaken_share > RETAKEN_SHARE_MAX:
        signs.append(f"{n.retaken_share:.0%} of blocks re-taken")
    if n is not None and n.kept_contended:
        signs.append(f"{n.kept_contended} contended blocks kept")
    contended = [r for r in found.sites if r.unstable == "contended"]
    if contended:
        signs.append(f"{len(contended)} site shape{'s' if len(contended) != 1 else ''} unstable for it")
    return "; ".join(signs) or None


def site_rows(found: ModelFile) -> list[dict]:
    """One row per site of a measured network, in network order (identical shapes repeat their one
    measurement): its layers, kind, shapes, share of the network's time, candidates, verdict and best
    candidate; for a depthwise site, whose candidate is its full conv, what the separable design saves."""
    header = found.header
    assert header is not None
    by_first: dict[str, tuple[list[str], ModelSiteRecord]] = {}
    for r in found.sites:
        size = 2 if r.site_kind == "depthwise + pointwise" else 1
        for i in range(0, len(r.layers), size):
            by_first[r.layers[i]] = (r.layers[i:i + size], r)
    total = found.network.as_is_s if found.network else sum((r.median_s or 0) * r.calls for r in found.sites)
    rows = []
    for layer in header.census:
        if layer["name"] not in by_first:
            continue
        names, r = by_first.pop(layer["name"])
        decision, best = verdict(r)
        if best is not None and best.name == "full_conv":
            decision = (f"separable saves {1 / best.realized:.1f}×" if decision == "slower" else
                        "full conv faster" if decision == "swap" else "keep")
        rows.append({"site": " + ".join(names), "kind": r.site_kind, "record": r, "in_shape": r.in_shape,
                     "out_shape": r.out_shape, "share": (r.median_s or 0) / total if total else 0.0,
                     "verdict": decision, "best": best})
    return rows
