"""The parent side of `sepbench ab`: worker processes of two sides, driven one at a time, in pairs.

A side is an interpreter and the environment variables its workers get. Only one worker runs at any
moment (the others wait on their pipes, using no CPU): on a 2-core machine two at once would measure
each other; all are pinned to the same cores, since a block's speed depends on the core. A worker
process keeps a speed of its own for a case, a few per cent either way, for as long as it lives, so
each side runs several workers, each case is built in every pair of them (one A, one B), and the pair
is the unit the interval is taken over. Protocol 2 takes away what made one side differ from the
other: the sides start and are greeted in turns, run the same calls per block, time half of each
visit's rounds with A first and half with B first, and one pair of workers is replaced per case or so
(imported on a spare core while a case is timed). On a share of the cases the same protocol runs
between two workers of one side: the in-run control. A case stops when its interval is narrow
enough or its share of the budget is spent. Every finished case is one fsync'd line, so a kill loses
only the case in flight, and `--resume` finishes the comparison without repeating one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import select
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from sepbench.ab import network as networks
from sepbench.ab.network import NetworkRequest
from sepbench.ab.stats import half_width, header_tau
from sepbench.budget import Budget, minutes_up
from sepbench.case import Case
from sepbench.errors import InternalError, SepbenchError
from sepbench.grid import Grid, group_cases
from sepbench.measure import between
from sepbench.measure.timer import MAX_RETAKES, cores_for
from sepbench.records import ABCaseRecord, ABControl, ABGate, ABHeader, ABNetwork, ABSide, ABSite, now
from sepbench.store import ResultsFile, read_ab, reopen, resumable

PREPARE_TIMEOUT_S = 600.0
BLOCK_TIMEOUT_S = 120.0
START_TIMEOUT_S = 120.0
PROTOCOL = 2  # see ABHeader.protocol

_PROBE = """
import importlib.util as u, json, sys
def has(name):
    try:
        return u.find_spec(name) is not None
    except Exception:
        return False
print(json.dumps({"prefix": sys.prefix, "executable": sys.executable, "torch": has("torch"),
                  "sepbench": has("sepbench"), "worker": has("sepbench.ab.worker")}))
"""


@dataclass(frozen=True)
class Interpreter:
    given: str
    path: Path
    prefix: str


PROBE_TIMEOUT_S = 30.0
_PROBE_KEYS = {"prefix": str, "torch": bool, "sepbench": bool, "worker": bool}


def _probe(path: Path, text: str) -> dict:
    """What the interpreter says of itself, checked against the probe's shape. The probe runs in a
    session of its own, so that one that hangs is killed with every child it started."""
    refused = SepbenchError(f"--python {text}: it does not run as a Python interpreter")
    try:
        proc = subprocess.Popen([str(path), "-I", "-c", _PROBE], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError:
        raise refused from None
    try:
        stdout, _ = proc.communicate(timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise SepbenchError(f"--python {text}: no answer within {PROBE_TIMEOUT_S:.0f} s; killed") from None
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever it left running in its session
    try:
        info = json.loads(stdout.decode("utf-8", errors="replace").strip().splitlines()[-1])
    except (ValueError, IndexError, RecursionError):
        raise refused from None
    if not isinstance(info, dict) or any(not isinstance(info.get(k), t) for k, t in _PROBE_KEYS.items()):
        raise refused
    return info


def interpreter(text: str) -> Interpreter:
    """A Python interpreter (or a venv folder) that has torch and a sepbench with the A/B worker."""
    path = Path(text)
    if path.is_dir():
        path = path / "bin" / "python"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise SepbenchError(f"--python {text}: no Python interpreter there (give its path, or a venv folder)")
    info = _probe(path, text)
    if not info["torch"]:
        raise SepbenchError(f"--python {text}: torch is not installed in that interpreter ({info['prefix']})")
    if not info["sepbench"]:
        raise SepbenchError(f"--python {text}: sepbench is not installed in that interpreter; pip install -e . there")
    if not info["worker"]:
        raise SepbenchError(f"--python {text}: its sepbench is too old for `ab` (no sepbench.ab.worker); "
                            "install this one there")
    return Interpreter(text, path, info["prefix"])


class WorkerDied(InternalError):
    """A worker that died or stopped answering: a fault at run time, not the user's input (exit 3)."""


class Worker:
    """One long-lived `python -m sepbench.ab.worker`, answering one request at a time. `env` is laid over
    the parent's environment (the settings a side is compared under); `cores`, when given, is where the
    process starts (a replacement imports torch on a core the timed blocks do not use)."""

    def __init__(self, side: str, python: Interpreter, env: dict[str, str] | None = None,
                 cores: set[int] | None = None) -> None:
        self.side, self.python = side, python
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the worker; read when it dies)
        pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None
        # Isolated mode (-I): the interpreter's own installs only, never a sepbench in the working directory.
        self.proc = subprocess.Popen([str(python.path), "-I", "-m", "sepbench.ab.worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, start_new_session=True,
                                     env={**os.environ, **(env or {})}, preexec_fn=pin)
        self._buffer = b""
        if self.proc.stdin is None or self.proc.stdout is None:  # both asked for as pipes above
            raise InternalError(f"worker {side}: no pipes to it")
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout

    def _last_words(self) -> str:
        self.stderr.seek(0)
        lines = [ln for ln in self.stderr.read().decode(errors="replace").splitlines() if ln.strip()]
        return lines[-1][:300] if lines else "no message"

    def send(self, op: str, **request: object) -> None:
        try:
            self.stdin.write((json.dumps({"op": op, **request}) + "\n").encode())
            self.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died(op) from None

    def answered(self) -> bool:
        """Whether an answer waits to be read (never blocks)."""
        fd = self.stdout.fileno()
        while b"\n" not in self._buffer and select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return True  # it died: `receive` says how
            self._buffer += chunk
        return b"\n" in self._buffer

    def receive(self, op: str, timeout: float) -> dict:
        fd = self.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise WorkerDied(f"worker {self.side} ({self.python.given}) did not answer '{op}' "
                                 f"within {timeout:.0f} s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise self._died(op)
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def call(self, op: str, timeout: float, **request: object) -> dict:
        self.send(op, **request)
        return self.receive(op, timeout)

    def _died(self, op: str) -> WorkerDied:
        code = self.proc.wait(timeout=10)
        return WorkerDied(f"worker {self.side} ({self.python.given}) died during '{op}' (exit {code}): "
                          f"{self._last_words()}")

    def kill(self) -> None:
        """The worker and everything it started: it leads a session of its own, and a child it left behind
        (an interpreter that lies, a wrapper script) goes with the group, even once the worker itself is gone."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("bye", 10)
                self.proc.wait(timeout=10)
            except (WorkerDied, subprocess.TimeoutExpired, OSError, ValueError):
                pass
        self.kill()  # whatever it left running in its session, gone with it


@dataclass
class Settings:
    block_time: float = 0.04  # longer blocks than `run`'s: a pair of processes sees more jitter than one
    # Per instance, after at least 3 calls (the first-call costs); kept short against a visit's rounds,
    # since every visit to a pair pays it again.
    warmup_time: float = 0.02
    workers: int = 10  # processes per side; a pair of them (one A, one B) is the unit of replication
    min_pairs: int = 6  # the first pass may stop here once the case's share of the budget is spent
    rounds_per_instance: int = 4  # kept rounds per visit, half in each order: build and warm-up paid once
    settle_fraction: int = 4  # the settling round's blocks are a quarter of a timed one
    max_cycles: int = 100  # passes over all worker pairs
    target: float = 0.01  # stop a case when its interval's half-width is within ±1 %
    threads: int = 1
    max_pad: int = 4 << 20  # an instance's random pad: up to 4 MiB, in cache lines
    control_fraction: float = 0.25  # cases that also get the in-run control (one side against itself)
    recycle: bool = True  # replace one pair of workers per case


def env_label(env: dict[str, str]) -> str:
    """Settings for a file name: KEY=VALUE joined by '+', kept short (the store makes the name safe)."""
    return "+".join(f"{k}={v}" for k, v in sorted(env.items()))[:80]


Round = tuple[str, float, float]  # (who went first, A's seconds per call, B's) in the positions A and B


@dataclass(frozen=True)
class Target:
    """One thing a comparison times in both installs: a grid's case, or a network's site (or the whole
    network). `request` is what a worker's prepare builds it from."""

    id: str
    name: str  # for messages: the case's label at its geometry, or the site's layers
    request: dict[str, Any]
    case: Case | None = None
    site: ABSite | None = None
    weight: float = 1.0  # its share of the budget against the other cases'


def case_target(case: Case) -> Target:
    return Target(case.id, f"{case.label()} at {case.geometry()}", {"case": case.as_dict()}, case=case)


def site_target(site: ABSite, request: NetworkRequest, network: ABNetwork, sites: int) -> Target:
    """A network's site; the whole network, the answer the user asked for and the slowest call, weighs as
    half its `sites` together (a third of the budget)."""
    whole = site.name == networks.NETWORK
    shown = site.name if whole else f"{site.layers[0]} ({site.site_kind})"
    return Target(f"site={site.name}", f"{request.spec} {shown}",
                  {"site": {"spec": request.spec, "input": list(network.input_shape), "dtype": request.dtype,
                            "mode": request.mode, "device": request.device, "site": site.name}}, site=site,
                  weight=max(sites / 2, 1.0) if whole else 1.0)


class Comparison:
    """A grid's cases, or a network's sites, under A and B, paired block by block, into one comparison
    file. With `fail_above` (a fraction), the file closes with the gate's verdict (`gate`)."""

    def __init__(self, subject: Grid | NetworkRequest, a: Interpreter, b: Interpreter, out: Path, *,
                 aa: bool = False, inject: float = 0.0, budget_s: float = 1200.0, settings: Settings | None = None,
                 seed: int | None = None, resume: bool = False, env_a: dict[str, str] | None = None,
                 env_b: dict[str, str] | None = None, fail_above: float | None = None) -> None:
        self.subject, self.a, self.b, self.out = subject, a, b, Path(out)
        self.aa, self.inject, self.budget_s, self.fail_above = aa, inject, budget_s, fail_above
        self.env = {"A": dict(env_a or {}), "B": dict(env_b or {})}
        self.settings = settings or Settings()
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
        self.resume = resume
        self.network: ABNetwork | None = None  # known once the workers have told it (`open`)
        self.dropped: dict = {}
        self.targets: list[Target] = []
        if isinstance(subject, Grid):
            cases, self.dropped = subject.expand()
            self.targets = [case_target(c) for g in group_cases(cases) for c in g]
            self.device = self.targets[0].case.device if self.targets and self.targets[0].case else "cpu"
        else:
            self.device = subject.device
        self.compiles = any(t.case is not None and t.case.compiled for t in self.targets)
        # Each comparison's sides compile into folders of their own: a side's first worker then compiles cold,
        # whatever an earlier comparison into the same --out left (its later workers, from the side's cache).
        self.cache = self.out / ".compile-cache" / uuid.uuid4().hex[:12]
        self.path: Path | None = None
        self.done = 0
        self.started = time.monotonic()  # the budget counts from here: starting the workers is part of it
        self.tau = 0.0  # the between-run component in every interval, known once the file is open
        # What `open` fills: whole from here on, so that `close` and a refusal half-way never meet a gap.
        self.cores = cores_for(self.settings.threads)  # every worker shares them
        self.spare = set(os.sched_getaffinity(0)) - set(self.cores)  # where replacements import torch
        self.workers: dict[str, list[Worker]] = {"A": [], "B": []}
        self.pending: dict[str, Worker] | None = None  # a replacement pair, importing torch
        self.results: ResultsFile | None = None
        self.todo: list[Target] = []
        self.generation = self.first_generation = 0  # which pair the next replacement takes
        self.ab_id = ""

    def _python(self, side: str) -> Interpreter:
        return self.a if side == "A" else self.b

    def _hello(self, w: Worker, describe: bool) -> dict[str, Any]:
        hello = {"device": self.device, "threads": self.settings.threads, "core": self.cores,
                 "inject": self.inject if w.side.startswith("B") else 0.0, "describe": describe}
        if self.compiles:  # each side compiles with its own torch into its own cache, kept with the results
            hello["compile_cache"] = str((self.cache / w.side[:1]).resolve())
        return hello

    def _network(self, request: NetworkRequest) -> None:
        """Ask the first worker of each side for the network's census: both must build the same one, and
        the budget must cover its cases. Refusals name the side whose install failed."""
        s = self.settings
        answers = {}
        for side in ("A", "B"):
            w = self.workers[side][0]
            answer = w.call("census", PREPARE_TIMEOUT_S, spec=request.spec,
                            input=list(request.input_shape) if request.input_shape else None, dtype=request.dtype,
                            device=request.device, block_time=s.block_time)
            if not answer.get("ok"):
                raise SepbenchError(f"--python {w.python.given} ({side}): {answer.get('error')}")
            answers[side] = answer
        self.network = networks.agree(request, answers["A"], answers["B"])
        found = networks.sites(self.network)
        self.targets = [site_target(site, request, self.network, len(found) - 1) for site in found]
        least = networks.minimum_budget(len(self.targets) - 1, max(a["network_s"] for a in answers.values()),
                                        s.min_pairs, s.rounds_per_instance, s.block_time, s.control_fraction)
        if least > self.budget_s:
            raise SepbenchError(f"{request.spec} at {'×'.join(map(str, self.network.input_shape))} needs a budget "
                                f"of at least {minutes_up(least)} min for its {len(self.targets)} cases at these "
                                f"settings; give --budget {minutes_up(least)} or more; nothing was written")

    def _greeted(self, w: Worker, answer: dict) -> dict:
        if not answer.get("ok"):
            raise SepbenchError(f"worker {w.side} ({w.python.given}) cannot start: {answer.get('error')}")
        return answer

    def open(self) -> Path:
        """Start the workers and open the comparison file (new, or the one to resume): everything that
        can refuse the input speaks here, before anything is timed."""
        if not self.targets and isinstance(self.subject, Grid):
            dropped = sum(self.dropped.values())
            raise SepbenchError("the grid holds no valid case to compare, so nothing was written" + (
                f" ({dropped} invalid combinations dropped)" if dropped else ""))
        if self.resume and isinstance(self.subject, Grid):  # said before any worker imports torch
            self._resumable()
        s = self.settings
        # The sides are started and greeted in turns (A1 B1 A2 B2 …): process age, where each landed in
        # memory and the order of the greetings are then no property of a side.
        for i in range(s.workers):
            for side in ("A", "B"):
                self.workers[side].append(Worker(f"{side}{i + 1}", self._python(side), self.env[side]))
        hello: dict[str, dict[str, Any]] = {}
        for i in range(s.workers):
            for side in ("A", "B"):
                w = self.workers[side][i]
                hello.setdefault(side, self._greeted(w, w.call("hello", START_TIMEOUT_S, **self._hello(w, not i))))
        if isinstance(self.subject, NetworkRequest):
            self._network(self.subject)
        results, done_ids = self._open(hello, self.cores)
        self.results, self.path = results, results.path
        self.todo = [t for t in self.targets if t.id not in done_ids]
        self.done = len(self.targets) - len(self.todo)
        self.generation = self.first_generation = self.done
        return self.path

    def run(self, on_case: Callable[[ABCaseRecord], None] | None = None) -> Path:
        """Measure the cases left, one finished case per line; `open` first."""
        results = self.results
        if results is None:
            raise InternalError("a comparison is measured once it is open (`open()` first)")
        rng = random.Random(self.seed + self.done)
        # The cases left get their share of the budget, less the time spent starting, less 3 %: a case
        # always completes its first `min_pairs` visits, so the last ones may run a little over.
        share = self.budget_s * sum(t.weight for t in self.todo) / max(sum(t.weight for t in self.targets), 1e-12)
        budget = Budget(0.97 * share - (time.monotonic() - self.started), time.monotonic())
        for i, case in enumerate(self.todo):
            if self.settings.recycle and self.pending is None:
                self.pending = self._spawn_replacements()
            control = rng.random() < self.settings.control_fraction
            allowance = budget.share(case.weight, sum(t.weight for t in self.todo[i:]))
            record = self._case(self.workers, case, rng, allowance, control)
            record.replaced = self.generation - self.first_generation
            results.append(record)
            self.done += 1
            self._swap_in_if_ready()
            if on_case:
                on_case(record)
        if self.fail_above is not None:
            results.append(self._gate())
        results.unlock()
        return results.path

    def _gate(self) -> ABGate:
        """The gate's verdict over the whole file (cases resumed from it included)."""
        from sepbench.ab.stats import FDR, comparison, gate

        assert self.fail_above is not None and self.path is not None
        table, _ = comparison(read_ab(self.path).records, PROTOCOL, self.tau)
        over = gate(table, self.fail_above)
        names = [str(n) for n in (over["label"] if self.network is not None else over["case_id"])]
        return ABGate(ab_id=self.ab_id, fail_above=self.fail_above, fdr=FDR, failed=names,
                      ratios=[float(r) for r in over["ratio"]], exit_code=1 if names else 0, finished=now())

    def _spawn_replacements(self) -> dict[str, Worker]:
        """A new A and B worker for one pair, started on the spare cores so that their imports overlap the
        cases being timed, and greeted at once (they answer when torch is imported): a pool's
        process-level speed is then no constant of the whole comparison, since every pair is renewed
        once per `workers` cases or so."""
        k = self.generation % self.settings.workers
        fresh = {side: Worker(f"{side}{k + 1}", self._python(side), self.env[side], cores=self.spare or None)
                 for side in ("A", "B")}
        for w in fresh.values():
            w.send("hello", **self._hello(w, describe=False))
        return fresh

    def _swap_in_if_ready(self) -> None:
        """Between cases: the replacement pair takes its place once both have answered; never waits."""
        if self.pending is None or not all(w.answered() for w in self.pending.values()):
            return
        k = self.generation % self.settings.workers
        for side, w in self.pending.items():
            self._greeted(w, w.receive("hello", START_TIMEOUT_S))
            old, self.workers[side][k] = self.workers[side][k], w
            old.kill()  # nothing to save; a kill spares the timed core torch's teardown
        self.pending = None
        self.generation += 1

    def close(self) -> None:
        for pool in self.workers.values():
            for w in pool:
                w.close()
        for w in (self.pending or {}).values():
            w.kill()

    def _open(self, hello: dict, cores: list[int]) -> tuple[ResultsFile, set[str]]:
        s = self.settings
        digest = self._digest()
        if self.resume:
            path = self._resumable()
            results = reopen(path, ABResultsFile)
            ab = read_ab(path)
            if ab.header is None:  # read_ab refuses a file without one
                raise SepbenchError(f"cannot resume {path}: it has no header")
            self.ab_id = ab.header.ab_id
            self.tau = header_tau(ab.header)
            return results, {r.case_id for r in ab.records}
        self.ab_id = uuid.uuid4().hex[:12]
        sides = {k: ABSide(python=str(self._python(k).given), prefix=self._python(k).prefix,
                           environment=hello[k]["fingerprint"], env=self.env[k]) for k in ("A", "B")}
        grid = self.subject.spec.model_dump(mode="json") if isinstance(self.subject, Grid) else {}
        header = ABHeader(ab_id=self.ab_id, grid_name=self._name(), grid_digest=digest,
                          grid=grid, started=now(), a=sides["A"], b=sides["B"],
                          aa=self.aa, inject=self.inject, seed=self.seed, budget_s=self.budget_s,
                          block_time=s.block_time, threads=s.threads, cores=cores, workers=s.workers,
                          warmup_time=s.warmup_time, rounds_per_visit=s.rounds_per_instance, protocol=PROTOCOL,
                          control_fraction=s.control_fraction, network=self.network, fail_above=self.fail_above)
        tau = between.for_ab(self.out, header)
        header.between_run, self.tau = tau.as_dict(), tau.tau
        env_a, env_b = sides["A"].environment, sides["B"].environment
        kind = "aa" if self.aa else "ab"
        tags = [f"-{env_label(e)}" if e else "" for e in (self.env["A"], self.env["B"])]
        stem = (f"{kind}-{self._name()}-{env_a['device']}-{env_a['machine']}-torch{env_a['torch']}{tags[0]}"
                f"-vs-torch{env_b['torch']}{tags[1]}" + (f"-inject{self.inject * 100:g}pct" if self.inject else ""))
        return ABResultsFile.create(self.out, header, stem=stem), set()

    def _resumable(self) -> Path:
        """The comparison file to resume, or the one-line refusal."""
        digest, envs = self._digest(), (self.env["A"], self.env["B"])
        path = resumable(self.out, "ab", lambda h: h.grid_digest == digest and h.aa == self.aa
                         and h.inject == self.inject and h.protocol == PROTOCOL  # an older protocol's cases differ
                         and (h.a.prefix, h.b.prefix) == (self.a.prefix, self.b.prefix) and (h.a.env, h.b.env) == envs)
        if path is None:
            raise SepbenchError(f"nothing to resume in {self.out}: no comparison of this "
                                f"{'grid' if isinstance(self.subject, Grid) else 'network'} between these "
                                "interpreters (with these --aa/--inject/--env settings)")
        return path

    def _name(self) -> str:
        """The grid's name, or the network's SPEC with its input (what a file name and a header carry)."""
        if isinstance(self.subject, Grid):
            return self.subject.name
        assert self.network is not None
        return f"{self.network.spec.replace(':', '-')}-{'x'.join(map(str, self.network.input_shape))}"

    def _digest(self) -> str:
        """What a comparison resumes by: the grid, or the network's census and how it is run."""
        if isinstance(self.subject, Grid):
            return self.subject.digest()
        assert self.network is not None
        text = json.dumps(self.network.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _visit(self, pair: dict[str, Worker], case: Target, rng: random.Random, number: int | None,
               retaken: dict[str, int]) -> Visit | Refused:
        """Build the case in both workers of a pair (keys: the positions "A" and "B"), settle, then time
        `rounds_per_instance` rounds, half with A first and half with B first, in a drawn order: a
        position effect (the second block of a round reading slower) then cancels within the visit.
        Both positions run the same calls per block (the smaller calibration, on a first visit). Returns
        the rounds, the calls per block, the backends and the compilations; or, when a build is refused, why
        (`Refused`)."""
        s = self.settings
        # Who builds (and warms up) last starts with its data in cache: the order is drawn, and a short
        # settling block on each side after the builds is timed but not kept.
        request = case.request
        if "site" in request:  # both positions build the same random weights, new ones each visit
            request = {"site": {**request["site"], "seed": rng.randrange(2**31)}}
        prepared = {pos: pair[pos].call("prepare", PREPARE_TIMEOUT_S, **request, block_time=s.block_time,
                                        warmup_time=s.warmup_time, pad_bytes=rng.randrange(0, s.max_pad, 64),
                                        number=number)
                    for pos in rng.sample(["A", "B"], 2)}
        failed = {pos: str(p.get("error")) for pos, p in prepared.items() if not p.get("ok")}
        if failed:
            for w in pair.values():
                w.call("drop", BLOCK_TIMEOUT_S)
            return Refused(failed)
        number = number or min(int(p["number"]) for p in prepared.values())
        firsts = ["A", "B"] * (s.rounds_per_instance // 2) + (["A"] if s.rounds_per_instance % 2 else [])
        rng.shuffle(firsts)
        rounds: list[Round] = []
        for r, first in enumerate([rng.choice("AB"), *firsts]):
            for attempt in range(MAX_RETAKES + 1):
                timed, contended = {}, None
                for pos in (first, "B" if first == "A" else "A"):
                    answer = pair[pos].call("block", BLOCK_TIMEOUT_S,
                                            number=number if r else max(1, number // s.settle_fraction))
                    if not answer.get("ok"):
                        raise InternalError(f"worker {pair[pos].side} failed a block of {case.name}: "
                                            f"{answer.get('error')}")
                    timed[pos] = answer["per_call_s"]
                    contended = contended or answer.get("contended")
                # A round in which either block lost the CPU is timed again (bounded), never kept
                # beside the others: one preempted block would move the pair's figure.
                if r == 0 or not contended or attempt == MAX_RETAKES:
                    break
                retaken[contended] = retaken.get(contended, 0) + 1
            if r:  # round 0 settles
                rounds.append((first, timed["A"], timed["B"]))
        for w in pair.values():
            w.call("drop", BLOCK_TIMEOUT_S)
        return Visit(rounds, number, {pos: p.get("backend") for pos, p in prepared.items()},
                     {pos: (float(p["compile_s"]), str(p.get("compile_cache"))) for pos, p in prepared.items()
                      if p.get("compile_s") is not None})

    def _case(self, workers: dict[str, list[Worker]], case: Target, rng: random.Random, allowance: float,
              control: bool = False) -> ABCaseRecord:
        """The case in every worker pair (A k, B k), cycling over the pairs until the interval (over
        pairs) is narrow enough or the time is up. The time is checked pair by pair once the first
        `min_pairs` pairs are done, so a slow spell shortens cases rather than the budget. With
        `control`, each visit is followed by one of the control: two workers of one side (drawn per
        case) in the positions A and B, pairing worker k with worker k + shift."""
        s = self.settings
        started = time.monotonic()
        real: list[Round] = []
        instance: list[int] = []
        ctrl: list[Round] = []
        ctrl_instance: list[int] = []
        ctrl_side = rng.choice("AB")
        shift = rng.randrange(1, s.workers)
        number: int | None = None
        backends: dict[str, str | None] = {"A": None, "B": None}
        retaken: dict[str, int] = {}
        compilations: dict[str, list[tuple[float, str]]] = {"A": [], "B": []}
        for cycle in range(s.max_cycles):
            for k in range(s.workers):
                if (cycle or k >= s.min_pairs) and time.monotonic() - started >= allowance:
                    break
                visit = self._visit({"A": workers["A"][k], "B": workers["B"][k]}, case, rng, number, retaken)
                if isinstance(visit, Refused):
                    if cycle or k:  # built before, refused now: a failure, not a case one side lacks
                        raise InternalError(f"{case.name}: a rebuild failed: {visit.why}")
                    status: Literal["refused", "missing_a", "missing_b"] = (
                        "refused" if len(visit.why) == 2 else ("missing_a" if "A" in visit.why else "missing_b"))
                    reason = "; ".join(f"{side}: {why}" for side, why in visit.why.items())
                    return ABCaseRecord(ab_id=self.ab_id, case_id=case.id, case=case.case, site=case.site,
                                        status=status, reason=reason,
                                        seconds=time.monotonic() - started, finished=now())
                rounds, number, built = visit.rounds, visit.number, visit.backends
                backends = {side: backends[side] or built[side] for side in backends}
                if cycle == 0:  # a worker's first build of the case compiles it; later ones reuse the code
                    for side, got in visit.compiled.items():
                        compilations[side].append(got)
                real += rounds
                instance += [k] * len(rounds)
                if control:
                    pool = workers[ctrl_side]
                    visit = self._visit({"A": pool[k], "B": pool[(k + shift) % s.workers]}, case, rng, number,
                                        retaken)
                    if isinstance(visit, Refused):
                        raise InternalError(f"{case.name}: the control's build failed: {visit.why}")
                    ctrl += visit.rounds
                    ctrl_instance += [k] * len(visit.rounds)
            narrow = half_width([r[1] for r in real], [r[2] for r in real], instance, tau=self.tau) <= s.target
            if narrow or time.monotonic() - started >= allowance:
                break
        return ABCaseRecord(
            ab_id=self.ab_id, case_id=case.id, case=case.case, site=case.site, status="ok",
            a_s=[r[1] for r in real],
            b_s=[r[2] for r in real], order="".join(r[0] for r in real), instance=instance, number_a=number,
            number_b=number, backend_a=backends["A"], backend_b=backends["B"], seconds=time.monotonic() - started,
            retaken=retaken,
            compile_a_s=[c[0] for c in compilations["A"]] or None,
            compile_b_s=[c[0] for c in compilations["B"]] or None,
            compile_cache={side: [c[1] for c in got] for side, got in compilations.items()}
            if compilations["A"] else None,
            control=ABControl(side=ctrl_side, a_s=[r[1] for r in ctrl], b_s=[r[2] for r in ctrl],
                              order="".join(r[0] for r in ctrl), instance=ctrl_instance) if ctrl else None,
            finished=now())


class Visit(NamedTuple):
    """One visit of a case to a worker pair: its kept rounds, calls per block, the backends each position
    ran, and each position's compilation (seconds, cache state) where the case is compiled."""

    rounds: list[Round]
    number: int
    backends: dict[str, str | None]
    compiled: dict[str, tuple[float, str]]


class Refused(NamedTuple):
    """A visit whose build one position (or both) refused: why, by position ("A", "B")."""

    why: dict[str, str]


class ABResultsFile(ResultsFile):
    record_kind = "ab_case"
