"""The picture of the report's first screen in the README: the report of every committed results file
under results/, opened in the system's headless Chromium (never a downloaded one) at 1400×900, the
top of the page captured.

    python benchmarks/report_screenshot.py          # writes docs/img/report-first-screen.png
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from sepbench.report.page import build

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "img" / "report-first-screen.png"
CHROMIUM_ARGS = ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def main() -> None:
    from playwright.sync_api import sync_playwright  # here: asv imports every module under benchmarks/

    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        sys.exit("report_screenshot: no system Chromium (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as site:
        built = build([ROOT / "results"], Path(site), pytest_benchmark=ROOT / "results" / "pytest-benchmark")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(built.index.as_uri(), wait_until="load")
            OUT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(OUT))
            browser.close()
    print(f"{OUT.relative_to(ROOT)}: the first screen of the report of {built.records} records in {built.files} files")


if __name__ == "__main__":
    main()
