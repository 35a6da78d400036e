"""nox sessions. Default sessions reuse an installed torch or the pinned CPU wheel; nothing here
downloads a CUDA build unasked."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

TORCH = "torch==2.13.0"  # on this project's machines: the local CPU wheel, installed offline


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (what CI runs)."""
    session.install(TORCH, "-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session(default=False)
def smoke(session: nox.Session) -> None:
    """A one-minute benchmark run: `sepbench run --preset smoke`."""
    session.install(TORCH, "-e", ".")
    session.run("sepbench", "run", "--preset", "smoke", *session.posargs)
