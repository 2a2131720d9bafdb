"""``dfsring status|ring|join|leave|remove``: cluster administration over the HTTP API.

The imperative shell around dfsring.cli.render: it fetches the API's JSON documents (one aiohttp
session per command, run by ``asyncio.run``), hands them to the pure renderers and wait
conditions there, and prints. dfsring.cli.main registers these commands through ADMIN_SUBCOMMANDS;
this module does not import dfsring.cli.main (that would be circular), so the two small argument
checks it needs are its own.

Options follow the key/value commands: ``--url`` repeated or comma-separated (env DFSRING_URL),
failing over to the next URL only when a request could not be sent; ``--timeout`` per request.
``join`` and ``leave`` act on the node they are sent to, so they take exactly one URL.

Exit status, as for the key/value commands: 0 done; 1 a node refused (one line: the problem's
title and detail, status and request id), no node could be reached, or ``--wait`` ran out of
time; 2 bad usage; 4 the node answered 404 (``remove`` of an unknown node, or a URL that is not
a dfsring API); 130 interrupted. Never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import string
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp

from dfsring.cli import render
from dfsring.cli.args import add_node_options, seconds, tls_context
from dfsring.cli.http import (
    BadUrl,
    Doc,
    Http,
    base_urls,
    gather_all,
    member_url,
    reason,
    shaped,
    transient,
)
from dfsring.cli.render import ProgressLine, WaitState
from dfsring.client import DEFAULT_URL, DfsClientError, ProblemError
from dfsring.client.credentials import CredentialsError, auth_headers, discover

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

PROG = "dfsring"
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 4  # as dfsring.cli.main's get and del
EXIT_INTERRUPTED = 130
POLL_INTERVAL = 0.5
PLAIN_PROGRESS_EVERY = 5.0
CONNECT_TIMEOUT = 3.0
BAR_WIDTH = 20
MEMBERS = "/v1/cluster/members"
RING = "/v1/cluster/ring"
TRANSFERS = "/v1/cluster/transfers"
STATS = "/v1/node/stats"


class AdminError(Exception):
    """A failure of the command itself, printed as one line; ``status`` is the exit status."""

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.status = status


# --- arguments -----------------------------------------------------------------------------------


def _seed(raw: str) -> str:
    """HOST:PORT, checked here so that a typo is a usage error, not a node's 400 or a join
    that hangs trying to reach nowhere. An IPv6 host is bracketed: ``[::1]:7070``."""
    host, _, port = raw.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        valid_host = len(host) > 2 and all(c in string.hexdigits + ":." for c in host[1:-1])
    else:
        valid_host = bool(host) and not any(c.isspace() or c in ":/?#@[]" for c in host)
    if not (valid_host and port.isdigit() and 0 < int(port) < 65536):
        raise argparse.ArgumentTypeError(f"{raw!r} is not HOST:PORT (for example 10.0.0.1:7070)")
    return raw


def _single(bases: Sequence[str]) -> str:
    if len(bases) != 1:
        raise AdminError(f"acts on one node: give one --url, not {len(bases)}", EXIT_USAGE)
    return bases[0]


# --- running -------------------------------------------------------------------------------------

_AdminRun = Callable[[argparse.Namespace, Http, list[str]], Awaitable[int]]


def _add_admin_parser(
    subparsers: Subparsers, name: str, run: _AdminRun, **kwargs: str
) -> argparse.ArgumentParser:
    """A subcommand with the options every admin command shares, run through _admin_main."""
    p = subparsers.add_parser(name, **kwargs)
    add_node_options(p)
    p.add_argument("--json", action="store_true", help="print the API's JSON, not a table")
    p.set_defaults(run=lambda args: _admin_main(args, run))
    return p


def _add_wait(p: argparse.ArgumentParser, until: str) -> None:
    p.add_argument("--wait", action="store_true", help=f"wait until {until}, showing progress")
    p.add_argument(
        "--wait-timeout",
        type=seconds,
        default=600.0,
        metavar="SECONDS",
        help="with --wait, give up (exit 1) after SECONDS (600)",
    )


def _admin_main(args: argparse.Namespace, run: _AdminRun) -> int:
    """Run one admin command; every failure becomes one line on stderr and an exit status."""
    try:
        bases = base_urls(args.url or [os.environ.get("DFSRING_URL") or DEFAULT_URL])
        return asyncio.run(_in_session(args, run, bases))
    except BadUrl as exc:
        return _fail(args, str(exc), EXIT_USAGE)
    except AdminError as exc:
        return _fail(args, str(exc), exc.status)
    except CredentialsError as exc:
        return _fail(args, f"credentials: {exc}", EXIT_USAGE)
    except ProblemError as exc:
        return _fail(args, str(exc), EXIT_NOT_FOUND if exc.status == 404 else EXIT_FAILURE)
    except DfsClientError as exc:
        return _fail(args, str(exc))
    except (KeyError, TypeError, ValueError) as exc:  # a document not in the documented shape
        return _fail(args, f"unexpected answer: {type(exc).__name__}: {exc}")
    except BrokenPipeError:  # `dfsring status | head -1`: the reader has all it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 0
    except KeyboardInterrupt:
        return _fail(args, "interrupted", EXIT_INTERRUPTED)


async def _in_session(args: argparse.Namespace, run: _AdminRun, bases: list[str]) -> int:
    timeout = aiohttp.ClientTimeout(total=args.timeout, connect=min(CONNECT_TIMEOUT, args.timeout))
    connector = aiohttp.TCPConnector(ssl=tls_context(args) or True)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector,
                                     headers=auth_headers(discover())) as session:
        return await run(args, Http(session, args.timeout), bases)


def _fail(args: argparse.Namespace, message: str, status: int = EXIT_FAILURE) -> int:
    print(f"{PROG} {args.command}: {message}", file=sys.stderr, flush=True)
    return status


def _say(args: argparse.Namespace, line: str) -> None:
    """A human line: on stdout, unless --json reserves stdout for the JSON."""
    print(line, file=sys.stderr if args.json else sys.stdout, flush=True)


def _print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=2, sort_keys=True), flush=True)


# --- waiting -------------------------------------------------------------------------------------


def _draw(frame: str) -> None:
    if frame:
        sys.stderr.write(frame)
        sys.stderr.flush()


def _still_pending(state: WaitState | None, trouble: str) -> str:
    parts = [state.pending] if state is not None and state.pending else []
    if trouble:
        parts.append(f"last poll: {trouble}")
    return ", ".join(parts) or "no answer yet"


async def _wait(
    args: argparse.Namespace, poll: Callable[[], Awaitable[WaitState]], goal: str
) -> None:
    """Poll every POLL_INTERVAL until ``poll`` says done, drawing progress on stderr.

    A poll that gets no answer or a 5xx (a node busy or restarting its listener) is repeated:
    only --wait-timeout ends the wait, with what was still awaited. A 4xx ends it at once.
    """
    progress = ProgressLine(tty=sys.stderr.isatty(), every=PLAIN_PROGRESS_EVERY)
    state: WaitState | None = None
    trouble = ""
    try:
        async with asyncio.timeout(args.wait_timeout):
            while True:
                try:
                    state, trouble = await poll(), ""
                except DfsClientError as exc:
                    if not transient(exc):
                        raise
                    trouble = reason(exc)
                if state is not None and state.done:
                    break
                bar = (state.progress if state else render.Progress()).bar(BAR_WIDTH)
                _draw(progress.show(f"{bar}  {_still_pending(state, trouble)}", time.monotonic()))
                await asyncio.sleep(POLL_INTERVAL)
    except TimeoutError:
        limit = f"{args.wait_timeout:g} s"
        why = _still_pending(state, trouble)
        raise AdminError(f"gave up after {limit} waiting until {goal}: {why}") from None
    finally:
        _draw(progress.end())
    _say(args, goal)


# --- the commands --------------------------------------------------------------------------------


async def _transfers_of(http: Http, members: Sequence[Doc]) -> dict[str, Doc | None]:
    """node id -> its transfers document, None for a member that did not answer."""
    found = await asyncio.gather(*(http.try_object(member_url(m, http.scheme), TRANSFERS)
                                   for m in members))
    return {str(m.get("node_id")): doc for m, (doc, _) in zip(members, found, strict=True)}


async def _member_docs(http: Http, member: Doc) -> tuple[Doc | None, Doc | None, str]:
    """A member's stats and transfers, and why any is missing ("" if none is)."""
    url = member_url(member, http.scheme)
    (stats, no_stats), (transfers, no_transfers) = await asyncio.gather(
        http.try_object(url, STATS), http.try_object(url, TRANSFERS)
    )
    return stats, transfers, "; ".join(dict.fromkeys(w for w in (no_stats, no_transfers) if w))


async def _run_status(args: argparse.Namespace, http: Http, bases: list[str]) -> int:
    base, members = await http.call(bases, "GET", MEMBERS)
    members = [shaped(m, dict, MEMBERS) for m in shaped(members, list, MEMBERS)]
    ring, *answers = await gather_all(
        http.object(base, RING), *(_member_docs(http, m) for m in members)
    )
    ids = [str(m.get("node_id")) for m in members]
    if args.json:
        nodes = {
            node: {"stats": stats, "transfers": transfers, "error": why or None}
            for node, (stats, transfers, why) in zip(ids, answers, strict=True)
        }
        _print_json({"members": members, "ring": ring, "nodes": nodes})
    else:
        stats = {node: answer[0] for node, answer in zip(ids, answers, strict=True)}
        transfers = {node: answer[1] for node, answer in zip(ids, answers, strict=True)}
        print(render.render_status(members, ring, stats, transfers), flush=True)
    for member, (_, _, why) in zip(members, answers, strict=True):
        if why:
            at = member.get("api_address") or member.get("address")
            where = f"{member.get('node_id')} at {at}"
            print(f"{PROG} status: {where}: {why}", file=sys.stderr, flush=True)
    return 0


async def _run_ring(args: argparse.Namespace, http: Http, bases: list[str]) -> int:
    _, ring = await http.call(bases, "GET", RING)
    ring = shaped(ring, dict, RING)
    if args.json:
        _print_json(ring)
    else:
        print(render.render_ring(ring), flush=True)
    return 0


def _report(args: argparse.Namespace, answer: Any, line: str) -> None:
    if args.json:
        _print_json(answer)
    else:
        _say(args, line)


async def _run_join(args: argparse.Namespace, http: Http, bases: list[str]) -> int:
    base = _single(bases)
    _, answer = await http.call([base], "POST", "/v1/cluster/join", {"seed": args.seed})
    node = str(shaped(answer, dict, "join").get("node_id") or base)
    _report(args, answer, f"{node}: joining the cluster of {args.seed}")
    if args.wait:

        async def poll() -> WaitState:
            members, ring, transfers = await gather_all(
                http.objects(base, MEMBERS), http.object(base, RING), http.object(base, TRANSFERS)
            )
            return render.join_state(members, ring, transfers)

        await _wait(args, poll, f"{node} is up, in the ring and done receiving its data")
    return 0


async def _run_leave(args: argparse.Namespace, http: Http, bases: list[str]) -> int:
    base = _single(bases)
    _, answer = await http.call([base], "POST", "/v1/cluster/leave")
    node = str(shaped(answer, dict, "leave").get("node_id") or base)
    _report(args, answer, f"{node}: leaving the cluster")
    if args.wait:

        async def poll() -> WaitState:
            members = await http.objects(base, MEMBERS)
            others = [m for m in members if not m.get("self") and m.get("status") != "left"]
            return render.leave_state(members, await _transfers_of(http, others))

        await _wait(args, poll, f"{node} has left the cluster")
    return 0


async def _run_remove(args: argparse.Namespace, http: Http, bases: list[str]) -> int:
    node = args.node
    path = f"/v1/cluster/remove/{quote(node, safe='')}"
    base, answer = await http.call(bases, "POST", path)
    _report(args, answer, f"{node}: removed; its partitions move to the remaining members")
    if args.wait:

        async def poll() -> WaitState:
            ring, members = await gather_all(http.object(base, RING), http.objects(base, MEMBERS))
            remaining = set(render.ring_ids(ring)) - {node}
            known = [m for m in members if m.get("node_id") in remaining]
            transfers = dict.fromkeys(remaining) | await _transfers_of(http, known)
            return render.remove_state(node, ring, transfers)

        await _wait(args, poll, f"{node} is out of the ring and the transfers are done")
    return 0


# --- parsers -------------------------------------------------------------------------------------


def _add_status(subparsers: Subparsers) -> None:
    _add_admin_parser(
        subparsers,
        "status",
        _run_status,
        help="show every member: state, data, hints and transfers",
        description="Ask one node for the members, then every member for its stats and "
        "transfers (in parallel). A member that does not answer shows '-' and a note on "
        "stderr; the exit status stays 0.",
    )


def _add_ring(subparsers: Subparsers) -> None:
    _add_admin_parser(
        subparsers,
        "ring",
        _run_ring,
        help="show the ring: epoch, hash and each node's share of partitions",
        description="Print the ring's epoch, hash, partitions, replicas and members, and per "
        "node the partitions it replicates and those it is the primary of.",
    )


def _add_join(subparsers: Subparsers) -> None:
    p = _add_admin_parser(
        subparsers,
        "join",
        _run_join,
        help="make the node at --url join the cluster of SEED",
        description="Ask the node at --url (one node) to join the cluster that SEED, a member "
        "of it, belongs to. The node must be alone and empty.",
    )
    p.add_argument("seed", type=_seed, metavar="SEED",
                   help="HOST:PORT of a cluster member's peer listener (its --peer-port)")
    _add_wait(p, "the node is up, in the ring and has received its data")


def _add_leave(subparsers: Subparsers) -> None:
    p = _add_admin_parser(
        subparsers,
        "leave",
        _run_leave,
        help="make the node at --url hand off its data and leave the cluster",
        description="Ask the node at --url (one node) to leave: its partitions move to the "
        "other members, then it is marked left. The last member cannot leave.",
    )
    _add_wait(p, "the node reports itself left")


def _add_remove(subparsers: Subparsers) -> None:
    p = _add_admin_parser(
        subparsers,
        "remove",
        _run_remove,
        help="remove a dead member from the ring",
        description="Remove NODE, a member that is down for good, from the ring; its "
        "partitions are rebuilt on the remaining members from the other replicas. Refused "
        "for a live node (use leave on it) and for the node asked.",
    )
    p.add_argument("node", metavar="NODE", help="node id, as `dfsring status` shows it")
    _add_wait(p, "NODE is out of the ring and every remaining member's transfers are done")


ADMIN_SUBCOMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    _add_status,
    _add_ring,
    _add_join,
    _add_leave,
    _add_remove,
)
