"""A/B across interpreters: the same cases timed under two PyTorch installs, block by block.

One long-lived worker process per interpreter (`worker`) builds each case and times blocks when the
parent (`driver`) asks; the parent alternates the two, one block at a time in random order, so that
the machine's drift hits both sides of every pair alike. `stats` turns the paired rounds into a
ratio per case with its interval, flags at a false discovery rate, and the smallest change each
case could have shown.
"""
