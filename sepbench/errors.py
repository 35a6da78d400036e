"""The two exception types a caller of sepbench meets, one per whose fault it is.

`SepbenchError` means "the user asked for something impossible" (an impossible case, an unknown name, a
damaged file, a missing device): the CLI prints it as one line and exits 2. `InternalError` means the
input was fine and something at run time failed (a worker process died, a side stopped answering): one
line and exit 3. Anything else is a bug: one line, its traceback in a file, exit 3.
"""


class SepbenchError(Exception):
    """Bad input: an impossible case, an unknown name, a damaged file, a missing device."""


class InternalError(Exception):
    """A fault at run time that the input did not cause: a worker that died or hung, a side that broke."""


def os_reason(exc: OSError) -> str:
    """An OS error's reason in words, never "None" (some raise with a message and no strerror)."""
    return exc.strerror or str(exc) or type(exc).__name__
