"""The published site in a real browser: headless Chromium (the system's, never a downloaded one)
opens the report and the asv site as GitHub Pages would serve them, over HTTP. Every page check runs
twice: on a small fixture of four results files, and on the committed `results/`, the data the site is
published from (incomplete shards, damaged-line notes, two dozen comparisons and all). Screenshots are
kept under results/local/screenshots/ (or $SEPBENCH_SCREENSHOTS) for a person to look at."""

from __future__ import annotations

import contextlib
import functools
import os
import re
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
BUILT: dict[str, object] = {}
DATA = {"fixture": SUBSET, "committed": [RESULTS]}
SCREENS = {1400: 900, 400: 800}  # width: height of the first screen
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
def asv_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("asv")
    subprocess.run([sys.executable, "-m", "asv", "publish", "--no-pull", "--html-dir", str(root / "asv")],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)
    return root / "asv"


@pytest.fixture(scope="module", params=list(DATA))
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, asv_site: Path) -> Path:
    """The Pages layout: the report at /, `asv publish` at /asv/ (as `nox -s pages` builds it)."""
    root = tmp_path_factory.mktemp(f"site-{request.param}")
    shutil.copytree(asv_site, root / "asv")
    built = build(DATA[request.param], root, pytest_benchmark=RESULTS / "pytest-benchmark", asv_url="asv/")
    BUILT.update(records=built.records, data=request.param, built=built)
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


# A 1×1 PNG: the least a page with a figure asks of the renderer.
CANARY = ("<html><body><img src='data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNg"
          "YGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=='></body></html>")


def _renders_images(b: object) -> bool:
    """Whether this Chromium shows an image at all: some builds' renderers crash on any image on some VMs
    (Debian's Chromium 150 on a 2-core Intel Xeon VM did), which says nothing about the report."""
    page = b.new_page()  # type: ignore[attr-defined]
    try:
        page.set_content(CANARY)
        page.wait_for_timeout(500)
        return True
    except sync_api.Error:
        return False
    finally:
        with contextlib.suppress(sync_api.Error):
            page.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        if not _renders_images(b):
            b.close()
            version = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip()
            pytest.skip(f"this machine's Chromium ({version}) crashes rendering a 1×1 PNG: the browser test cannot "
                        "judge the report here")
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


def _screenshots() -> Path:
    """Kept after the run, one folder per data set: results/local/ is the clone's own, ignored by git."""
    kept = Path(os.environ.get("SEPBENCH_SCREENSHOTS", ROOT / "results" / "local" / "screenshots"))
    shots = kept / str(BUILT["data"])
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


@pytest.mark.parametrize("width", list(SCREENS))
def test_no_horizontal_overflow_and_screenshots(browser, server: str, width: int) -> None:
    """The page never scrolls sideways (wide tables scroll in their own box, long keys wrap); the first
    screen and each section are photographed for a person to look at."""
    page = browser.new_page(viewport={"width": width, "height": SCREENS[width]})
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"exception: {exc}"))
    page.goto(server, wait_until="networkidle")
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] == widths[1], f"the page is {widths[0] - widths[1]} px wider than a {width} px window"
    assert errors == []
    shots = _screenshots()
    page.screenshot(path=str(shots / f"first-screen-{width}.png"))
    page.add_style_tag(content="nav { position: static; }")  # the sticky bar would cover the section's top
    for section in SECTIONS:
        page.locator(f"section#{section}").screenshot(path=str(shots / f"{section}-{width}.png"))
    assert (shots / f"summary-{width}.png").stat().st_size > 10_000
    page.close()


@pytest.mark.parametrize("width", list(SCREENS))
def test_both_answers_with_their_numbers_on_the_first_screen(browser, server: str, width: int) -> None:
    """The two questions are answered above the fold at both widths, with the numbers the records and the
    newest upgrade's comparison give (recomputed here from the loaded files, not read off the page)."""
    from sepbench.report import comparisons

    page = browser.new_page(viewport={"width": width, "height": SCREENS[width]})
    page.goto(server, wait_until="networkidle")
    for answer in ("answer-saving", "answer-upgrade"):
        box = page.locator(f"#{answer}").bounding_box()
        assert box is not None and box["y"] + box["height"] <= SCREENS[width], (answer, box)
    warning = page.locator(".data-warning")
    if BUILT["data"] == "committed":  # two sharded runs lack shards: one line up here, the details at the end
        assert warning.count() == 1 and "2 sharded runs incomplete" in warning.inner_text()
        assert warning.locator("a").get_attribute("href") == "#data-notes"
        box = page.locator("#data-notes").bounding_box()
        assert box is not None and box["y"] > 10 * SCREENS[width]
    saving = page.locator("#answer-saving").inner_text()
    assert re.search(r"\d+\.\d× fewer FLOPs in theory; realized \d+\.\d\d× \[\d+\.\d\d–\d+\.\d\d\]", saving), saving
    upgrade = page.locator("#answer-upgrade").inner_text()
    found, _ = comparisons.load(DATA[str(BUILT["data"])])
    newest = comparisons.newest_upgrade(found)
    if newest is None:
        assert "No paired comparison" in upgrade
    else:
        s = newest.summary
        ratio, low, high = newest.median_interval()
        for number in (f"{s.b_slower} of {s.compared} cases slower", f"{s.b_faster} faster",
                       f"{ratio:.3f} [{low:.3f}–{high:.3f}]",
                       comparisons.build_kind(newest.header.a.environment["torch"]),
                       f"alone slowed by {100 * s.median_d80_alone:.1f} %"):
            assert number in upgrade, (number, upgrade)
        assert "Calibration:" in upgrade and ("false flag" in upgrade or "no calibration" in upgrade)
    for c in comparisons.network_upgrades(found):  # each network compared is named, with its own verdict,
        if width < 700:  # except on a phone's first screen, where the cards below name them
            assert comparisons.network_short(c) not in upgrade
            continue
        assert re.sub(r"\s+", " ", comparisons.network_short(c)) in re.sub(r"\s+", " ", upgrade), upgrade
    page.close()


def test_every_flagged_case_is_on_its_card(browser, server: str) -> None:
    """Each comparison's card lists every flagged case (the 2.12 → 2.13 comparison of 2026-11-23 20:02 has
    45), and names its file in a collapsed line rather than in a column."""
    from sepbench.report import comparisons

    page, _ = _open(browser, server)
    found, _ = comparisons.load(DATA[str(BUILT["data"])])
    assert page.locator("section#versions .card").count() == len(found)
    counts = {}
    for c in found:
        card = page.locator(f"#{c.anchor}")
        files = card.locator("details.files")
        assert card.count() == 1 and files.count() == 1 and c.path.name in (files.text_content() or "")
        rows = card.locator("table.flagged tbody tr").count()
        expected = 0 if c.header.inject else len(c.flagged)
        assert rows == expected, (c.path.name, rows, expected)
        if c.network is not None:  # a network's card lists every site shape, by what it carries
            assert card.locator("table.sites tbody tr").count() == len(c.network.sites)
        counts[c.path.name] = rows
    if BUILT["data"] == "committed":
        assert counts["ab-default-cpu-vm-torch2.12.0+cu130-vs-torch2.13.0+cpu-20261123T200252Z.jsonl"] == 45


def test_the_data_downloads_and_parses(browser, server: str, tmp_path: Path) -> None:
    """records.csv, linked from the page, downloads; it parses with one row per record; every column it
    has is explained in columns.csv."""
    import pandas as pd

    page, _ = _open(browser, server)
    with page.expect_download() as info:
        page.locator("section#summary a[download]").first.click()
    path = tmp_path / "records.csv"
    info.value.save_as(path)
    records = pd.read_csv(path, low_memory=False)
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
