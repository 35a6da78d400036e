"""`sepbench list` and `sepbench env`: what can be measured, and what this machine is."""

from __future__ import annotations

from sepbench.console import out


def variants_and_presets() -> int:
    from sepbench.case import VARIANTS
    from sepbench.grid import group_cases, load_preset, preset_names
    from sepbench.report.tables import presets_table, variants_table

    out.print(variants_table(list(VARIANTS.values())))
    rows = []
    for name in preset_names():
        grid = load_preset(name)
        counts = []
        for device in ("cpu", "cuda"):
            cases, _ = grid.with_device(device).expand()
            counts.append(f"{len(cases)} / {len(group_cases(cases))}")
        rows.append((name, counts, grid.spec.description))
    out.print(presets_table(rows))
    return 0


def environment(device: str, threads: int | None, peaks: bool) -> int:
    from sepbench.measure.environment import fingerprint
    from sepbench.measure.peaks import measure_peaks
    from sepbench.measure.runner import default_threads
    from sepbench.measure.workload import require_device
    from sepbench.report.tables import environment_table

    require_device(device)
    threads = threads or default_threads([device])[0]
    out.print(environment_table(fingerprint(device, threads), measure_peaks(device, threads) if peaks else None))
    return 0
