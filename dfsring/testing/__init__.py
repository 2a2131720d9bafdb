"""Helpers for dfsring's own tests (and anyone testing against dfsring nodes).

Waiting on a condition is always a deadline poll (:mod:`dfsring.testing.wait`), never a fixed
sleep; starting and stopping nodes lives in :mod:`dfsring.cli.launcher`.
"""

from dfsring.testing.wait import async_wait_until, wait_until

__all__ = ["async_wait_until", "wait_until"]
