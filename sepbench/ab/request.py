"""What a comparison compares, checked before any worker starts: the sides (one interpreter against itself,
two interpreters, or one under two sets of environment variables) and the rules that make a request
meaningful. The CLI and `sepbench.compare` both ask here, so a notebook gets the CLI's refusals."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from sepbench.ab.driver import Interpreter, interpreter
from sepbench.errors import SepbenchError

_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def env_pairs(option: str, given: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    """KEY=VALUE settings (or a mapping), each key once, in a form a process environment takes."""
    if isinstance(given, Mapping):
        given = [f"{k}={v}" for k, v in given.items()]
    env: dict[str, str] = {}
    for text in given or ():
        key, sep, value = text.partition("=")
        if not sep or not _ENV_KEY.fullmatch(key):
            raise SepbenchError(f"{option} {text!r}: give KEY=VALUE, KEY a name of letters, digits and '_'")
        if "\0" in value:
            raise SepbenchError(f"{option} {key}: a value cannot hold a NUL character")
        if key in env:
            raise SepbenchError(f"{option} {key} is given twice")
        env[key] = value
    return env


def check_subject(model: str | None, grid_given: bool, input_given: bool) -> None:
    """A comparison is of a grid or of a network, not both."""
    if model is not None and grid_given:
        raise SepbenchError("--model compares a network: give no --preset, --grid or --axis with it")
    if model is None and input_given:
        raise SepbenchError("--input goes with --model")


def sides(pythons: Sequence[str], aa: bool, inject: float,
          envs: tuple[dict[str, str], dict[str, str]]) -> tuple[Interpreter, Interpreter]:
    """Sides A and B: each interpreter probed, and the combinations that compare nothing refused."""
    if inject and not aa:
        raise SepbenchError("--inject is a calibration of one interpreter against itself: give it with --aa")
    if aa and (envs[0] or envs[1]):
        raise SepbenchError("--aa compares one setup with itself: give no --env-a/--env-b with it")
    if not pythons:
        raise SepbenchError("give an interpreter for each side, --python A --python B")
    if len(pythons) > 2:
        raise SepbenchError(f"--python is given {len(pythons)} times; give A and B (or one with --aa)")
    if len(pythons) == 1 and not aa and envs[0] == envs[1]:
        raise SepbenchError("give two interpreters, --python A --python B (or one with --aa, or one with "
                            "--env-a/--env-b settings that differ)")
    found = [interpreter(p) for p in pythons]
    a, b = found[0], found[-1]
    if aa and a.prefix != b.prefix:
        raise SepbenchError("--aa compares one interpreter with itself; give one --python")
    if not aa and a.prefix == b.prefix and envs[0] == envs[1]:
        raise SepbenchError(f"--python {a.given} and --python {b.given} are the same install ({a.prefix}) under "
                            "the same settings; to compare it with itself, pass --aa (or set --env-a/--env-b)")
    return a, b
