"""``dfsring tls reload``: make one node load its certificate files again (POST
/v1/admin/tls/reload), for when its process cannot be sent SIGHUP (another host, a
container). Prints the certificate it serves now; a file that does not load is the node's
400 problem on stderr (exit 1), the node keeping the certificates in use.

One node per call (``--url``, exactly one): certificates are files of one node, so renewing
a cluster's is one call per node after its files are replaced.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from dfsring.cli.admin import _add_admin_parser, _print_json, _single
from dfsring.cli.http import Http, shaped

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

RELOAD = "/v1/admin/tls/reload"


async def _reload(args: argparse.Namespace, http: Http, bases: list[str]) -> int:
    base = _single(bases)
    _, answer = await http.call([base], "POST", RELOAD)
    doc = shaped(answer, dict, RELOAD)
    if args.json:
        _print_json(doc)
    else:
        print(f"{base}: serving {doc['subject']}  serial {doc['serial']}  "
              f"not after {doc['not_after']}", flush=True)
    return 0


def _add_tls(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("tls", help="TLS of a running node: reload its certificates")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    _add_admin_parser(sub, "reload", _reload,
                      help="reload the certificate files of the node at --url (admin)",
                      description="Ask the node at --url (one node) to load its --tls-cert, "
                      "--tls-key and --tls-ca files again, as SIGHUP does; prints the "
                      "certificate it serves now. A file that does not load changes nothing.")


TLS_SUBCOMMANDS: tuple[Callable[[Subparsers], None], ...] = (_add_tls,)
