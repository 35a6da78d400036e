"""Fresh processes for what must not inherit this one's state: a memory probe (no allocator history)
and a timing sitting (no oneDNN primitives, no tensors of its own yet).

Children fork from a forkserver that has imported torch but run nothing, so a child costs
milliseconds, not a torch import, and starts with no OpenMP pool to break on fork. The server and
its children ignore Ctrl-C: only this process handles an interrupt, and it kills the child in flight.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any


class FreshFailed(RuntimeError):
    """The child could not do its work (out of memory, crash, time-out)."""


_context: Any = None


def _probe_context() -> Any:
    global _context
    if _context is None:
        if "forkserver" in mp.get_all_start_methods():
            _context = mp.get_context("forkserver")
            # The CLI too: children then import nothing from disk (the entry script re-imports it).
            _context.set_forkserver_preload(["torch", "sepbench.measure.workload", "sepbench.cli"])
            _start_forkserver_deaf_to_ctrl_c()
        else:
            _context = mp.get_context("spawn")
    return _context


def _start_forkserver_deaf_to_ctrl_c() -> None:
    """Start the server with SIGINT ignored: it preloads torch before it ignores Ctrl-C itself, and
    its children inherit the disposition. Only this process handles an interrupt, and it kills the
    child in flight."""
    if threading.current_thread() is not threading.main_thread():
        return
    from multiprocessing import forkserver

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block is done, then deliver them. Starting a child through
    the forkserver is a handshake; an interrupt in its middle leaves the server with half a message,
    and it prints a traceback to the terminal the user just interrupted. (Python-level handlers, not
    a signal mask: the mask is per thread, and any other thread could still take the signal.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    before = {s: signal.signal(s, lambda signum, _: held.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
        if held:
            signal.raise_signal(held[0])  # now, to the handler the caller had


def call(target: Callable[..., None], args: tuple, timeout: float, what: str) -> Any:
    """Run `target(*args, conn)` in a fresh child and return what it sends on `conn`; the child is
    killed on a time-out, an interrupt or any error here, and never outlives the call."""
    ctx = _probe_context()
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=target, args=(*args, send), daemon=True)
    try:  # from before start(): an interrupt at any point still kills the child
        with _interrupts_held():
            child.start()
        send.close()
        if not receive.poll(timeout):
            raise FreshFailed(f"{what} timed out after {timeout:.0f} s")
        try:
            return receive.recv()
        except EOFError:
            raise FreshFailed(f"{what} died (exit code {child.exitcode}); likely out of memory") from None
    finally:
        if child.pid is not None:
            if child.is_alive():
                child.kill()
            child.join()
        send.close()
        receive.close()
