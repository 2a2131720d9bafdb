"""Argument types and options shared by every `dfsring` subcommand (cli.py, cli_admin.py).

Kept apart so the key/value and admin command modules parse numbers and node URLs the same
way without importing each other.
"""

from __future__ import annotations

import argparse
import os
import ssl
from pathlib import Path

from dfsring.client import DEFAULT_URL
from dfsring.client.credentials import discovered_ca_context
from dfsring.transport.tls import TlsFileError, client_context_for


def number(raw: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number") from None


def positive(raw: str) -> int:
    value = int(number(raw, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def port(raw: str) -> int:
    value = int(number(raw, int))
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port")
    return value


def seconds(raw: str) -> float:
    value = number(raw, float)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {raw}")
    return value


def add_node_options(p: argparse.ArgumentParser) -> None:
    """--url (repeatable, fail-over order) and --timeout, as every client command has them."""
    p.add_argument(
        "--url",
        action="append",
        metavar="URL",
        help=f"node URL; repeat or comma-separate to fail over (env DFSRING_URL, {DEFAULT_URL})",
    )
    p.add_argument("--timeout", type=seconds, default=10.0, help="seconds per request (10)")
    add_ca_option(p)


def add_ca_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ca", type=ca_file, default=os.environ.get("DFSRING_CA") or None,
                   metavar="FILE", help="verify https:// nodes against this CA certificate "
                   "(env DFSRING_CA; default: ./dfsring-data/pki/ca/ca.pem, then "
                   "~/.config/dfsring/ca.pem if there, else the system's trust store)")


def ca_file(raw: str) -> Path:
    """A CA file that loads, checked while parsing so a bad one is a usage error (exit 2)."""
    try:
        client_context_for(raw)
    except TlsFileError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("--tls-ca", "--ca")) from None
    return Path(raw)


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The context that verifies https:// nodes: --ca's (or DFSRING_CA's), else the CA found
    as credentials are (dfsring.client.credentials.discover_ca) when a URL is https://, or
    None for the system store. CredentialsError for a found CA file that does not load."""
    ca: Path | None = getattr(args, "ca", None)
    if ca is not None:
        return client_context_for(ca)
    urls = getattr(args, "url", None) or [os.environ.get("DFSRING_URL") or DEFAULT_URL]
    return discovered_ca_context([u for raw in urls for u in raw.split(",")])
