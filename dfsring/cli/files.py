"""``dfsring upload|download`` and ``dfsring ls --files``: the files API from the shell.

upload  streams the file in one PUT (Content-Length known): the node cuts it into chunks and
        replicates them, several chunks at a time, while the bytes arrive; a progress bar on
        stderr shows bytes, rate and ETA (redrawn in place on a terminal, a line every few
        seconds otherwise). The new version's JSON goes to stdout.
download asks for the version first (HEAD), then fetches ``--parallel`` byte ranges of it at
        once (``?version=`` pins them all to that version even if a new one is uploaded
        meanwhile), writes them in place into ``PATH.part``, checks the whole file's SHA-256
        against the ETag and renames it to PATH. ``-`` writes to stdout with one stream.

Failover is as for the other commands: a request never sent goes to the next ``--url``; an
upload whose answer was lost is reported as such (it may have been stored: see ``?versions``).
Exit status: 0 done, 1 failure (the node's problem in one line), 2 bad usage, 4 not found.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import mimetypes
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import aiohttp

from dfsring.cli.args import add_ca_option, positive, seconds, tls_context
from dfsring.cli.files_http import BLOCK, FilesHttp, NotFound
from dfsring.cli.http import BadUrl, base_urls
from dfsring.cli.render import ProgressLine, human_bytes, human_eta
from dfsring.client import (
    DEFAULT_URL,
    DfsClientError,
    ProblemError,
    UnexpectedResponse,
)
from dfsring.client.credentials import CredentialsError, auth_headers, discover

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

PROG = "dfsring"
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 4
EXIT_INTERRUPTED = 130
PLAIN_EVERY = 5.0
BAR_WIDTH = 20


class UsageError(ValueError):
    """A bad argument found while running (exit 2)."""


# --- progress (pure) -----------------------------------------------------------------------


@dataclass
class Progress:
    """Bytes moved so far; the rate is the average since the start (steady for big files)."""

    total: int
    started: float
    done: int = 0

    def rate(self, now: float) -> float | None:
        elapsed = now - self.started
        return self.done / elapsed if elapsed > 0 and self.done else None

    def eta(self, now: float) -> float | None:
        rate = self.rate(now)
        return None if rate is None else max(self.total - self.done, 0) / rate

    def line(self, now: float, width: int = BAR_WIDTH) -> str:
        """``[#########...........]  45%  120.0 MB/266.7 MB  85.3 MB/s  ETA 2 s``"""
        fraction = min(self.done / self.total, 1.0) if self.total else 1.0
        filled = math.floor(fraction * width)
        parts = [f"[{'#' * filled}{'.' * (width - filled)}] {math.floor(fraction * 100):3d}%",
                 f"{human_bytes(self.done)}/{human_bytes(self.total)}"]
        rate = self.rate(now)
        if rate is not None:
            parts.append(f"{human_bytes(rate)}/s")
            parts.append(f"ETA {human_eta(self.eta(now))}")
        return "  ".join(parts)


@dataclass
class Meter:
    """Progress drawn on stderr through ProgressLine (quiet: nothing drawn)."""

    progress: Progress
    quiet: bool
    _line: ProgressLine = field(init=False)

    def __post_init__(self) -> None:
        self._line = ProgressLine(tty=sys.stderr.isatty(), every=PLAIN_EVERY)

    @property
    def total(self) -> int:
        return self.progress.total

    def add(self, count: int) -> None:
        self.progress.done += count
        self._draw(self._line.show(self.progress.line(time.monotonic()), time.monotonic()))

    def end(self) -> None:
        """The final state, always shown (a plain log gets it as its last line)."""
        line = self.progress.line(time.monotonic())
        self._draw(f"\r{line}\n" if self._line.tty else f"{line}\n")

    def _draw(self, frame: str) -> None:
        if frame and not self.quiet:
            sys.stderr.write(frame)
            sys.stderr.flush()


def parse_meta(items: list[str]) -> dict[str, str]:
    """--meta KEY=VALUE ... -> {"Dfs-Meta-KEY": VALUE}."""
    headers = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--meta {item!r} is not KEY=VALUE")
        headers[f"Dfs-Meta-{key}"] = value
    return headers


def ranges(size: int, part: int) -> list[tuple[int, int]]:
    """[(start, end inclusive), ...] covering ``size`` bytes in parts of ``part``."""
    return [(start, min(start + part, size) - 1) for start in range(0, size, part)]


# --- commands ------------------------------------------------------------------------------


def _target(raw: str) -> tuple[str, str]:
    bucket, _, path = raw.partition("/")
    if not bucket or not path:
        raise argparse.ArgumentTypeError(f"{raw!r} is not BUCKET/PATH")
    return bucket, path


def _add_upload(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("upload", help="store a file (a new version of BUCKET/PATH)",
                              description="Stream the file at SOURCE to BUCKET/PATH as a new "
                              "version, with a progress bar on stderr; print its JSON.")
    p.add_argument("source", type=Path, metavar="SOURCE")
    p.add_argument("target", type=_target, metavar="BUCKET/PATH")
    p.add_argument("--content-type", help="stored type (default: guessed from SOURCE's name)")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                   help="user metadata (Dfs-Meta-KEY), repeatable")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _node_options(p, timeout=3600.0)
    p.set_defaults(run=lambda args: _main(args, _run_upload))


def _add_download(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("download", help="fetch a file to a local path",
                              description="Fetch BUCKET/PATH (its current version, or "
                              "--version) to DEST, in parallel byte ranges, checking its "
                              "SHA-256; DEST - writes to stdout.")
    p.add_argument("target", type=_target, metavar="BUCKET/PATH")
    p.add_argument("dest", metavar="DEST")
    p.add_argument("--version", help="a version from ?versions (default: the current one)")
    p.add_argument("--parallel", type=positive, default=4, help="ranges fetched at once (4)")
    p.add_argument("--part-mib", type=positive, default=32, help="MiB per range (32)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _node_options(p, timeout=3600.0)
    p.set_defaults(run=lambda args: _main(args, _run_download))


def _node_options(p: argparse.ArgumentParser, timeout: float) -> None:
    p.add_argument("--url", action="append", metavar="URL",
                   help=f"node URL; repeat or comma-separate to fail over (env DFSRING_URL, "
                   f"{DEFAULT_URL})")
    p.add_argument("--timeout", type=seconds, default=timeout,
                   help=f"seconds the whole transfer may take ({timeout:g})")
    add_ca_option(p)


async def _run_upload(args: argparse.Namespace, http: FilesHttp) -> int:
    source: Path = args.source
    bucket, path = args.target
    ctype = args.content_type or mimetypes.guess_type(source.name)[0] or \
        "application/octet-stream"
    size = (await asyncio.to_thread(source.stat)).st_size
    meter = Meter(Progress(size, time.monotonic()), args.quiet)
    try:
        doc = await http.upload(source, bucket, path,
                                {"Content-Type": ctype, **parse_meta(args.meta)}, meter)
    finally:
        meter.end()
    print(_json(doc), flush=True)
    return 0


async def _run_download(args: argparse.Namespace, http: FilesHttp) -> int:
    bucket, path = args.target
    size, version, etag = await http.head(bucket, path, args.version)
    meter = Meter(Progress(size, time.monotonic()), args.quiet or args.dest == "-")
    try:
        if args.dest == "-":
            digest = await _to_stdout(http, bucket, path, version, size, meter)
        else:
            digest = await _to_file(http, args, version, size, meter)
    finally:
        meter.end()
    if etag and digest != etag:
        raise UnexpectedResponse(f"downloaded bytes have SHA-256 {digest}, not {etag}")
    return 0


async def _to_stdout(http: FilesHttp, bucket: str, path: str, version: str, size: int,
                     meter: Meter) -> str:
    sha = hashlib.sha256()
    out = sys.stdout.buffer

    def sink(_: int, data: bytes) -> None:
        sha.update(data)
        out.write(data)

    if size:
        await http.fetch(bucket, path, version, (0, size - 1), sink, meter)
    out.flush()
    return sha.hexdigest()


async def _to_file(http: FilesHttp, args: argparse.Namespace, version: str, size: int,
                   meter: Meter) -> str:
    bucket, path = args.target
    dest = Path(args.dest)
    part_file = dest.with_name(dest.name + ".part")
    with part_file.open("wb") as fh:
        fh.truncate(size)
        limit = asyncio.Semaphore(args.parallel)

        async def one(span: tuple[int, int]) -> None:
            async with limit:
                await http.fetch(bucket, path, version, span, _writer(fh), meter)

        tasks = [asyncio.ensure_future(one(s)) for s in ranges(size, args.part_mib << 20)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
    digest = await asyncio.to_thread(_sha256_of, part_file)
    os.replace(part_file, dest)
    return digest


def _writer(fh: BinaryIO) -> Callable[[int, bytes], None]:
    def sink(offset: int, data: bytes) -> None:
        os.pwrite(fh.fileno(), data, offset)
    return sink


def _sha256_of(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(4 * BLOCK):
            sha.update(block)
    return sha.hexdigest()


def _json(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True)


# --- ls --files ----------------------------------------------------------------------------


def add_ls_options(p: argparse.ArgumentParser) -> None:
    """Called by dfsring.cli.main for its ``ls``: --files lists files instead of keys."""
    p.add_argument("--files", action="store_true", help="list files (the files API), not keys")
    p.add_argument("-l", dest="long", action="store_true",
                   help="with --files: size, modified time and version too")


def run_ls_files(args: argparse.Namespace) -> int:
    return _main(args, _run_ls)


async def _run_ls(args: argparse.Namespace, http: FilesHttp) -> int:
    bucket, prefix = args.target
    async for item in http.list_files(bucket, prefix, args.limit):
        if args.long:
            print(f"{item['size']:>14}  {item['modified']}  {item['version']}  {item['path']}")
        else:
            print(item["path"])
    return 0


# --- running -------------------------------------------------------------------------------

_Run = Callable[[argparse.Namespace, FilesHttp], Any]


def _main(args: argparse.Namespace, run: _Run) -> int:
    try:
        bases = base_urls(args.url or [os.environ.get("DFSRING_URL") or DEFAULT_URL])
        return int(asyncio.run(_session(args, run, bases)))
    except (BadUrl, UsageError) as exc:
        return _fail(args, str(exc), EXIT_USAGE)
    except CredentialsError as exc:
        return _fail(args, f"credentials: {exc}", EXIT_USAGE)
    except NotFound as exc:
        return _fail(args, str(exc), EXIT_NOT_FOUND)
    except ProblemError as exc:
        return _fail(args, str(exc), EXIT_NOT_FOUND if exc.status == 404 else EXIT_FAILURE)
    except DfsClientError as exc:
        return _fail(args, str(exc))
    except (aiohttp.ClientError, TimeoutError) as exc:
        return _fail(args, f"transfer failed: {type(exc).__name__}: {exc}")
    except BrokenPipeError:  # `dfsring download b/f - | head`: the reader has all it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        return _fail(args, f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
    except KeyboardInterrupt:
        return _fail(args, "interrupted", EXIT_INTERRUPTED)


async def _session(args: argparse.Namespace, run: _Run, bases: list[str]) -> int:
    timeout = aiohttp.ClientTimeout(total=args.timeout, connect=min(3.0, args.timeout))
    connector = aiohttp.TCPConnector(ssl=tls_context(args) or True)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False,
                                     connector=connector,
                                     headers=auth_headers(discover())) as session:
        return int(await run(args, FilesHttp(session, bases)))


def _fail(args: argparse.Namespace, message: str, status: int = EXIT_FAILURE) -> int:
    print(f"{PROG} {args.command}: {message}", file=sys.stderr, flush=True)
    return status


FILES_SUBCOMMANDS = (_add_upload, _add_download)
