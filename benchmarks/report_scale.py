"""How long the report takes to build from many records (target: 5,000 records in ≤ 30 s).

    python benchmarks/report_scale.py [--records 5000] [--target 30]

The records are the committed results, repeated as further runs (each copy gets its own run id), so
the page grows the way it does after months of nightly runs: more runs per environment, more
repeats for the cross-version comparison. Exits 1 when the build misses the target. Not an asv
benchmark (nothing here is named time_*): a script, run by hand or by CI.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def replicate(sources: list[Path], dest: Path, records: int) -> int:
    """Copy results files into `dest`, each copy a new run, until at least `records` case records."""
    written = 0
    for copy, src in zip(itertools.count(), itertools.cycle(sources)):
        if written >= records:
            break
        lines = src.read_text().splitlines()
        run_id = f"scale{copy:05d}"
        out = []
        for line in lines:
            data = json.loads(line)
            data["run_id"] = run_id
            written += data["kind"] == "case"
            out.append(json.dumps(data))
        (dest / f"{copy:05d}-{src.name}").write_text("\n".join(out) + "\n")
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--target", type=float, default=30.0, help="seconds")
    args = parser.parse_args()
    from sepbench.report.page import build

    sources = sorted((ROOT / "results").glob("*.jsonl"))
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp, "results"), Path(tmp, "report")
        data.mkdir()
        n = replicate(sources, data, args.records)
        started = time.perf_counter()
        built = build([data], out, pytest_benchmark=ROOT / "results" / "pytest-benchmark", asv_url="asv/")
        wall = time.perf_counter() - started
    print(f"{built.records} records from {built.files} files ({n} written), {len(built.environments)} environments, "
          f"{len(built.figures)} figures: built in {wall:.1f} s (target {args.target:.0f} s)")
    return 0 if wall <= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
