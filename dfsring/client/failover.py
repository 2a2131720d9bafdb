"""The one failover loop of the client and the CLI: try each base URL once until one answers.

Moving on to the next node is safe only where it cannot apply a request twice:

- a connection that could not be opened never carried the request, so any request moves on;
- a request that was sent and then lost its answer (timeout, reset) may have been applied.
  The caller's `Lost` policy decides: a read moves on (asking again changes nothing), a
  write raises OutcomeUnknown, because a blind retry of a PUT would store a second,
  concurrent version of the value (a sibling) if the first one landed.

The loop is bounded: every URL is tried at most once per call, starting at ``start`` (the
client sticks to the node that last answered) and wrapping around. When none answers,
ConnectionFailed names why each one failed. An error *answer* (4xx/5xx) is an answer: it
ends the loop, and what it means is the caller's business.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import aiohttp

from dfsring.client.errors import ConnectionFailed, OutcomeUnknown

T = TypeVar("T")

NOT_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
"""Failures before the request left: no node saw it."""

LOST = (aiohttp.ClientError, TimeoutError)
"""Failures after the request may have left (the ones not in NOT_SENT)."""


def describe(exc: BaseException, timeout: float | None = None) -> str:
    """One short line for ConnectionFailed's list (aiohttp's own texts are long); with
    ``timeout``, a lost answer says how long it was waited for."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_error = exc.certificate_error
        why = getattr(cert_error, "verify_message", None) or cert_error
        return f"cannot connect: TLS certificate not trusted: {why} (see --ca)"
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return f"cannot connect: TLS handshake failed: {exc.os_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        errno = exc.os_error.errno
        return f"cannot connect: {os.strerror(errno) if errno else exc.os_error}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "cannot connect: timed out"
    if isinstance(exc, TimeoutError):
        return "no answer in time" if timeout is None else f"no answer within {timeout:g} s"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@dataclass(frozen=True, slots=True)
class Lost:
    """What a lost answer to ``method path`` means: reads (``resend``) move on to the next
    URL; anything else raises OutcomeUnknown, whose message ends with ``note``."""

    method: str
    path: str
    resend: tuple[str, ...] = ("GET", "HEAD")
    note: str = ""

    def outcome(self, base: str, why: str) -> OutcomeUnknown | None:
        if self.method in self.resend:
            return None
        return OutcomeUnknown(f"{self.method} {base}{self.path}: {why}{self.note}")


async def first_answer(
    bases: Sequence[str],
    send: Callable[[str], Awaitable[T]],
    *,
    lost: Lost | None,
    start: int = 0,
    describe: Callable[[BaseException], str] = describe,
) -> tuple[int, T]:
    """The index of the first base URL whose ``send(base)`` got an answer, and the answer.

    ``lost=None`` leaves a lost answer's aiohttp error to the caller, who may know better
    what it means (an upload whose body was streamed); ``describe`` words each failure.
    """
    failures: dict[str, str] = {}
    for step in range(len(bases)):
        index = (start + step) % len(bases)
        base = bases[index]
        try:
            return index, await send(base)
        except NOT_SENT as exc:
            failures[base] = describe(exc)
        except LOST as exc:
            if lost is None:
                raise
            unknown = lost.outcome(base, describe(exc))
            if unknown is not None:
                raise unknown from exc
            failures[base] = describe(exc)
    raise ConnectionFailed(failures)
