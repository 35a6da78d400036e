"""The published site in a real browser: headless Chromium (the system's, never a downloaded one)
opens the report and the asv site as GitHub Pages would serve them, over HTTP."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import RESULTS, committed
from sepbench.report.page import SECTIONS, build

ROOT = Path(__file__).resolve().parent.parent
SUBSET = committed("default-cpu-vm-torch2.12.0+cu130-20261123T045948Z.jsonl",
                   "default-cpu-vm-torch2.13.0+cpu-20261123T050308Z.jsonl",
                   "networks-cpu-vm-torch2.13.0+cpu-20261123T011107Z.jsonl",
                   "default-cuda-h100-torch2.11.0+cu130-20261123T025103Z.jsonl")
BUILT: dict[str, int] = {}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
# Without these, Chromium dials Google's services at start; on a closed network that floods errors.
CHROMIUM_ARGS = ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

if not CHROMIUM:
    if os.environ.get("CI"):
        pytest.fail("CI needs Debian's chromium for the browser test (.ci/run installs it)", pytrace=False)
    pytest.skip("no system Chromium (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Pages layout: the report at /, `asv publish` at /asv/ (as `nox -s pages` builds it)."""
    root = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "asv", "publish", "--no-pull", "--html-dir", str(root / "asv")],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)
    built = build(SUBSET, root, pytest_benchmark=RESULTS / "pytest-benchmark", asv_url="asv/")
    BUILT["records"] = built.records
    return root


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _open(browser, url: str) -> tuple[object, list[str]]:
    """A page at `url`, fully loaded, and the console errors and uncaught exceptions it produced."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"exception: {exc}"))
    page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
    page.goto(url, wait_until="networkidle")
    return page, errors


def _screenshots(tmp_path: Path) -> Path:
    shots = Path(os.environ.get("SEPBENCH_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def test_every_section_renders_with_its_figures_and_no_errors(browser, server: str, tmp_path: Path) -> None:
    page, errors = _open(browser, server)
    for section in SECTIONS:
        heading = page.locator(f"section#{section} h2")
        assert heading.count() == 1 and heading.is_visible(), section
    assert page.evaluate("document.querySelector('main section').id") == "summary"
    images = page.evaluate("Array.from(document.images, i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
    assert len(images) >= 8
    assert [src for src, complete, width in images if not (complete and width > 0)] == []
    assert errors == []


def test_every_figure_has_an_anchor_a_heading_and_a_full_size_link(browser, server: str) -> None:
    page, _ = _open(browser, server)
    figures = page.evaluate("""Array.from(document.images, img => {
        const f = img.closest('figure');
        const full = f && f.querySelector('a.full-size');
        return [img.getAttribute('src'), f ? f.id : '', f ? !!f.querySelector('h3 a[href="#' + f.id + '"]') : false,
                full ? full.getAttribute('href') : ''];
    })""")
    assert figures
    bad = [src for src, anchor, heading, full in figures if not (anchor and heading and full == src)]
    assert bad == []
    ids = [anchor for _, anchor, _, _ in figures]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("width", [1400, 400])
def test_no_horizontal_overflow_and_screenshots(browser, server: str, tmp_path: Path, width: int) -> None:
    """The page never scrolls sideways (wide tables scroll in their own box); the first screen and each
    section are photographed for a person to look at."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(server, wait_until="networkidle")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than a {width} px window"
    shots = _screenshots(tmp_path)
    page.screenshot(path=str(shots / f"first-screen-{width}.png"))
    page.add_style_tag(content="nav { position: static; }")  # the sticky bar would cover the section's top
    for section in SECTIONS:
        page.locator(f"section#{section}").screenshot(path=str(shots / f"{section}-{width}.png"))
    assert (shots / f"summary-{width}.png").stat().st_size > 10_000
    page.close()


def test_the_data_downloads_and_parses(browser, server: str, tmp_path: Path) -> None:
    """records.csv, linked from the page, downloads; it parses with one row per record; every column it
    has is explained in columns.csv."""
    import pandas as pd

    page, _ = _open(browser, server)
    with page.expect_download() as info:
        page.locator("section#summary a[download]").first.click()
    path = tmp_path / "records.csv"
    info.value.save_as(path)
    records = pd.read_csv(path)
    assert len(records) == BUILT["records"]
    assert {"env", "variant", "realized_speedup", "timing_median_s"} <= set(records)
    columns = pd.read_csv(server + page.eval_on_selector("a[href$='columns.csv']", "a => a.getAttribute('href')"))
    assert list(columns["column"]) == list(records.columns) and columns["meaning"].notna().all()


def test_report_and_asv_site_link_to_each_other(browser, server: str) -> None:
    """Report → asv → report. asv's page loads jQuery and flot from CDNs (asv's own design; the report
    itself has none), which a closed network cannot reach; so the asv hop runs without scripts and
    reads the project link that asv's script would fill in from the index.json it fetches."""
    page, errors = _open(browser, server)
    href = page.eval_on_selector("#asv-link", "a => a.href")
    assert href == server + "asv/"
    context = browser.new_context(java_script_enabled=False)
    asv = context.new_page()
    response = asv.goto(href)
    assert response.status == 200 and asv.locator("#project-name").count() == 1
    index = asv.request.get(href + "index.json")
    assert index.status == 200
    back = asv.evaluate("url => new URL(url, document.baseURI).href", index.json()["project_url"])
    assert back == server
    page.goto(back, wait_until="networkidle")
    assert page.locator("section#overview").is_visible()
    assert errors == []
    context.close()
