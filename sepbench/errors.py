"""The one exception type that means "the user asked for something impossible".

The CLI turns it into a single line on stderr and exit code 2; anything else is a bug and keeps
its traceback.
"""


class SepbenchError(Exception):
    """Bad input: an impossible case, an unknown name, a damaged file, a missing device."""
