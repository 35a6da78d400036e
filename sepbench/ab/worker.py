"""The worker side of `sepbench ab`: JSON lines in on stdin, JSON lines out on a private copy of
stdout. Run by the parent as `python -m sepbench.ab.worker` under each interpreter compared.

Requests (one object per line, answered by one line, `{"ok": false, "error": …}` on failure):
  hello    device, threads, core, inject[, describe, compile_cache] → this interpreter's environment
           fingerprint (skipped, {}, with describe false: a replacement worker, whose side is described
           already); compiled cases keep inductor's cache in `compile_cache`, the side's own folder
  census   spec, input, dtype, device, block_time → the network's convs as this install runs them, its
           input and a forward's time (`sepbench ab --model`)
  prepare  case or site, block_time, warmup_time → the case (a grid's) or the site (a network's, or the
           whole network) built, compiled if it is a compiled case (its first call timed, outside every
           block), warmed up and calibrated: calls per block, and the compilation's seconds and cache
  block    number → seconds per call over one block of `number` back-to-back steps, and why the
           block was contended (it lost the CPU: `sepbench.measure.machine`), or null
  drop     → the case freed
  bye      → exit

`inject` (a fraction, 0 unless the parent is calibrating) stretches every timed block by that
fraction of its own measured length with a busy-wait inside the timed span: a known slowdown, to
learn what a comparison can see. Only the parent's `--inject` sets it, and it is echoed in `hello`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, BinaryIO

PROTOCOL = 1
OPS = ("hello", "census", "prepare", "block", "drop", "bye")


class _Session:
    def __init__(self) -> None:
        self.work: Any = None
        self.sync: Any = None
        self.inject = 0.0
        self.threads = 1
        self.cpu_bound = True
        self.networks: Any = None  # `ab.network.Built`, once a network is asked for

    def hello(self, device: str, threads: int, core: list[int] | None, inject: float, describe: bool = True,
              compile_cache: str | None = None) -> dict:
        import torch

        if compile_cache:  # before anything compiles: inductor reads the variable at each use
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = compile_cache
            os.environ["TRITON_CACHE_DIR"] = os.path.join(compile_cache, "triton")

        from sepbench.measure.environment import fingerprint
        from sepbench.measure.workload import require_device, steady_heap

        if core:
            os.sched_setaffinity(0, set(core))
        torch.set_num_threads(threads)
        steady_heap()
        require_device(device)
        self.inject = float(inject)
        self.threads, self.cpu_bound = threads, device != "cuda"
        described = fingerprint(device, threads) if describe else {}
        if describe and compile_cache:
            from sepbench.measure.compiled import settings

            described["inductor"] = settings()
        return {"fingerprint": described, "inject": self.inject,
                "pid": os.getpid(),
                "protocol": PROTOCOL, "python": sys.executable, "prefix": sys.prefix}

    def _built(self) -> Any:
        if self.networks is None:
            from sepbench.ab.network import Built

            self.networks = Built()
        return self.networks

    def census(self, spec: str, input: list[int] | None, dtype: str, device: str, block_time: float) -> dict:
        return self._built().census(spec, input, dtype, device, self.threads, block_time)

    def prepare(self, case: dict | None = None, block_time: float = 0.04, warmup_time: float = 0.02,
                site: dict | None = None, pad_bytes: int = 0, number: int | None = None) -> dict:
        import contextlib

        from sepbench.case import Case, check
        from sepbench.measure.timer import calibrate, synchronizer, warm_up
        from sepbench.measure.workload import Workload, backend_flags

        self.drop()
        compilation: dict[str, Any] = {}
        # A fresh build lands where the allocator puts it, and where it lands moves its speed (cache sets,
        # huge pages): a pad of random size, held while the instance lives, puts each instance elsewhere.
        self.pad = bytearray(pad_bytes)
        if case is not None:
            c = Case(**case)
            check(c)
            self.flags = backend_flags(c)
            self.flags.__enter__()
            self.work = Workload(c)
            try:
                first = self.work.compile()
            except Exception as exc:  # one line for the parent: what kept it from compiling
                from sepbench.measure.compiled import failure

                raise RuntimeError(failure(exc)) from None
            if first is not None:
                compilation = {"compile_s": first.seconds, "compile_cache": first.cache}
            self.step, backend, device, name = self.work.step, self.work.conv_backends(), c.device, c.id
        elif site is not None:
            self.flags = contextlib.nullcontext()
            self.work = self._built().step(site, self.threads)
            self.step, backend, device, name = self.work, None, site["device"], site["site"]
        else:
            raise ValueError("prepare needs a case or a site")
        self.sync = synchronizer(device)
        calls = warm_up(self.step, self.sync, warmup_time)
        number = number or calibrate(self.step, self.sync, block_time)
        return {"number": number, "warmup_calls": calls, "backend": backend, "case_id": name, **compilation}

    def block(self, number: int) -> dict:
        from sepbench.measure import machine

        if self.work is None:
            raise RuntimeError("block before prepare")
        step, sync = self.step, self.sync

        def timed() -> float:
            sync()
            start = time.perf_counter()
            for _ in range(number):
                step()
            sync()
            if self.inject:
                deadline = start + (time.perf_counter() - start) * (1 + self.inject)
                while time.perf_counter() < deadline:
                    pass
            return (time.perf_counter() - start) / number

        per_call, check = machine.checked(timed, self.threads)
        return {"per_call_s": per_call, "contended": check.reason(self.threads, cpu_bound=self.cpu_bound)}

    def drop(self) -> dict:
        if self.work is not None:
            self.work = None
            self.pad = bytearray()
            self.flags.__exit__(None, None, None)
        return {}


def _answer(out: BinaryIO, message: dict) -> None:
    out.write((json.dumps(message) + "\n").encode())
    out.flush()


def serve(inp: BinaryIO, out: BinaryIO) -> None:
    session = _Session()
    for line in inp:
        request = json.loads(line)
        op = request.pop("op", None)
        if op not in OPS:
            _answer(out, {"ok": False, "error": f"unknown request {op!r}", "type": "ProtocolError"})
            continue
        if op == "bye":
            _answer(out, {"ok": True})
            return
        try:
            result = getattr(session, op)(**request)
        except Exception as exc:  # every failure goes back to the parent as one line
            text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            _answer(out, {"ok": False, "error": text, "type": type(exc).__name__})
            continue
        _answer(out, {"ok": True, **result})


def main() -> None:
    # The protocol gets a private copy of stdout; fd 1 then points at stderr, so nothing a library
    # prints can corrupt it.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(sys.stdin.buffer, out)


if __name__ == "__main__":
    main()
