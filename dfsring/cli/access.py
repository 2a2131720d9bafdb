"""``dfsring key ...`` and ``dfsring bucket ...``: keys, grants and buckets over the admin API
(docs/API.md "Access").

Runs through the admin commands' plumbing (dfsring.cli.admin: options, credentials
discovery, failover, one-line failures and exit statuses). A secret is printed exactly when
the node returns it, on ``key create`` and ``key rotate``, with a warning on stderr to store
it: no command can show it again.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from yarl import URL

from dfsring.cli.admin import _add_admin_parser, _print_json
from dfsring.cli.args import seconds
from dfsring.cli.http import Doc, Http, shaped
from dfsring.client.errors import REQUEST_ID, problem_error
from dfsring.client.failover import Lost, describe, first_answer

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

ROLES = ("read", "write", "owner")
KEYS = "/v1/admin/keys"
SECRET_WARNING = ("store the secret now: it is shown only this once (rotate the key if it "
                  "is lost)")


async def send(http: Http, bases: Sequence[str], method: str, path: str,
               body: Doc | None = None) -> Any:
    """One admin call with a JSON body; its JSON answer (None for 204). Fails over like the
    other admin commands; a problem answer raises ProblemError."""

    async def one(base: str) -> tuple[int, bytes, str | None]:
        async with http.session.request(method, URL(base + path, encoded=True), json=body,
                                        allow_redirects=False) as resp:
            return resp.status, await resp.read(), resp.headers.get(REQUEST_ID)

    lost = Lost(method, path, resend=("GET",), note="; it may have been applied")
    _, (status, raw, rid) = await first_answer(
        list(bases), one, lost=lost, describe=lambda exc: describe(exc, http.timeout))
    if status >= 400:
        raise problem_error(status, raw, rid)
    return json.loads(raw) if raw else None


def _q(text: str) -> str:
    return quote(text, safe="")


def _grants(doc: Doc) -> str:
    grants = shaped(doc.get("grants") or {}, dict, "grants")
    return ",".join(f"{k}={v}" for k, v in sorted(grants.items())) or "-"


def key_line(doc: Doc) -> str:
    flags = [f for f in ("admin", "disabled") if doc.get(f)]
    return (f"{doc.get('access_key')}  {doc.get('name') or '-'}  "
            f"{','.join(flags) or 'active'}  expires={doc.get('expires') or 'never'}  "
            f"grants={_grants(doc)}")


def _show(args: argparse.Namespace, doc: Any, line: str) -> int:
    if args.json:
        _print_json(doc)
    else:
        print(line, flush=True)
    return 0


def _show_secret(args: argparse.Namespace, doc: Doc) -> int:
    if args.json:
        _print_json(doc)
    else:
        print(f"access_key: {doc['access_key']}\nsecret_key: {doc['secret_key']}", flush=True)
    print(f"dfsring {args.command}: {SECRET_WARNING}", file=sys.stderr, flush=True)
    return 0


# --- dfsring key -----------------------------------------------------------------------------


async def _key_create(args: argparse.Namespace, http: Http, bases: list[str]) -> int:
    body: Doc = {"name": args.name, "admin": args.admin}
    if args.expires_in is not None:
        body["expires_in_s"] = max(1, int(args.expires_in))
    return _show_secret(args, shaped(await send(http, bases, "POST", KEYS, body), dict, KEYS))


async def _key_list(args: argparse.Namespace, http: Http, bases: list[str]) -> int:
    doc = shaped(await send(http, bases, "GET", KEYS), dict, KEYS)
    keys = [shaped(k, dict, KEYS) for k in shaped(doc.get("keys"), list, KEYS)]
    return _show(args, doc, "\n".join(key_line(k) for k in keys) or "(no keys)")


async def _key_show(args: argparse.Namespace, http: Http, bases: list[str]) -> int:
    doc = shaped(await send(http, bases, "GET", f"{KEYS}/{_q(args.key)}"), dict, KEYS)
    return _show(args, doc, key_line(doc))


def _key_action(action: str) -> Callable[[argparse.Namespace, Http, list[str]], Any]:
    async def run(args: argparse.Namespace, http: Http, bases: list[str]) -> int:
        doc = shaped(await send(http, bases, "POST", f"{KEYS}/{_q(args.key)}/{action}"), dict,
                     KEYS)
        if action == "rotate":
            return _show_secret(args, doc)
        return _show(args, doc, key_line(doc))
    return run


def _limit(text: str) -> str:
    """A limit option, checked by argparse: a number >= 0 (0: none), or "node" for the
    node's own option."""
    if text == "node":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'node'") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError("a limit is >= 0 (0: none)")
    return text


async def _key_limit(args: argparse.Namespace, http: Http, bases: list[str]) -> int:
    body: Doc = {}
    if args.rate is not None:
        body["rate"] = None if args.rate == "node" else float(args.rate)
    if args.bandwidth is not None:
        body["bandwidth"] = None if args.bandwidth == "node" else int(float(args.bandwidth))
    if not body:
        print("dfsring key limit: give --rate and/or --bandwidth", file=sys.stderr)
        return 2
    doc = shaped(await send(http, bases, "POST", f"{KEYS}/{_q(args.key)}/limits", body),
                 dict, KEYS)
    line = (f"{key_line(doc)}  rate={doc.get('rate') if doc.get('rate') is not None else 'node'}"
            f"  bandwidth={doc.get('bandwidth') if doc.get('bandwidth') is not None else 'node'}")
    return _show(args, doc, line)


async def _key_delete(args: argparse.Namespace, http: Http, bases: list[str]) -> int:
    await send(http, bases, "DELETE", f"{KEYS}/{_q(args.key)}")
    return _show(args, {"deleted": args.key}, f"{args.key}: deleted")


async def _grant(args: argparse.Namespace, http: Http, bases: list[str]) -> int:
    path = f"/v1/buckets/{_q(args.bucket)}/grants/{_q(args.key)}"
    doc = await send(http, bases, "PUT", path, {"role": args.role})
    return _show(args, doc, f"{args.key}: {args.role} on bucket {args.bucket}")


async def _revoke(args: argparse.Namespace, http: Http, bases: list[str]) -> int:
    await send(http, bases, "DELETE", f"/v1/buckets/{_q(args.bucket)}/grants/{_q(args.key)}")
    return _show(args, {"bucket": args.bucket, "access_key": args.key, "role": None},
                 f"{args.key}: no grant on bucket {args.bucket}")


def _add_key(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("key", help="API keys: create, list, show, disable, enable, "
                              "rotate, limit, delete, allow, deny (admin)")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = _add_admin_parser(sub, "create", _key_create, help="create a key; prints its secret "
                          "once")
    c.add_argument("--name", default="", help="a label for people")
    c.add_argument("--expires-in", type=seconds, default=None, metavar="SECONDS",
                   help="the key stops working after SECONDS")
    c.add_argument("--admin", action="store_true", help="a cluster admin key")
    _add_admin_parser(sub, "list", _key_list, help="list the keys (never their secrets)")
    for name, run, text in (("show", _key_show, "show one key"),
                            ("disable", _key_action("disable"), "stop a key from working"),
                            ("enable", _key_action("enable"), "let a disabled key work again"),
                            ("rotate", _key_action("rotate"), "give a key a new secret "
                             "(printed once); the old one stops working"),
                            ("delete", _key_delete, "delete a key for good")):
        _add_admin_parser(sub, name, run, help=text).add_argument("key", metavar="ACCESS_KEY")
    lim = _add_admin_parser(sub, "limit", _key_limit, help="a key's own request rate and "
                            "bandwidth on each node ('node': the node's options, 0: none)")
    lim.add_argument("key", metavar="ACCESS_KEY")
    lim.add_argument("--rate", type=_limit, metavar="REQUESTS_PER_S",
                     help="requests/s, 0 or 'node'")
    lim.add_argument("--bandwidth", type=_limit, metavar="BYTES_PER_S",
                     help="bytes/s, 0 or 'node'")
    a = _add_admin_parser(sub, "allow", _grant, help="grant a key a role on a bucket")
    a.add_argument("key", metavar="ACCESS_KEY")
    a.add_argument("bucket", metavar="BUCKET")
    a.add_argument("role", choices=ROLES)
    d = _add_admin_parser(sub, "deny", _revoke, help="remove a key's grant on a bucket")
    d.add_argument("key", metavar="ACCESS_KEY")
    d.add_argument("bucket", metavar="BUCKET")


# --- dfsring bucket --------------------------------------------------------------------------


def bucket_line(doc: Doc) -> str:
    return (f"{doc.get('bucket')}  owner={doc.get('owner') or '-'}  "
            f"public_read={str(bool(doc.get('public_read'))).lower()}  grants={_grants(doc)}")


async def _bucket_create(args: argparse.Namespace, http: Http, bases: list[str]) -> int:
    body: Doc = {"public_read": args.public_read}
    if args.owner:
        body["owner"] = args.owner
    doc = shaped(await send(http, bases, "PUT", f"/v1/buckets/{_q(args.bucket)}", body), dict,
                 "bucket")
    return _show(args, doc, bucket_line(doc))


async def _bucket_info(args: argparse.Namespace, http: Http, bases: list[str]) -> int:
    doc = shaped(await send(http, bases, "GET", f"/v1/buckets/{_q(args.bucket)}"), dict,
                 "bucket")
    return _show(args, doc, bucket_line(doc))


async def _bucket_public(args: argparse.Namespace, http: Http, bases: list[str]) -> int:
    body = {"public_read": args.state == "on"}
    doc = shaped(await send(http, bases, "PUT", f"/v1/buckets/{_q(args.bucket)}/settings",
                            body), dict, "bucket")
    return _show(args, doc, bucket_line(doc))


def cors_lines(doc: Doc) -> str:
    rules = doc.get("rules")
    if rules is None:
        return f"{doc.get('bucket')}: no rules of its own (the nodes' --cors-* apply)"
    out = [f"{doc.get('bucket')}: {len(shaped(rules, list, 'rules'))} rule(s)"]
    for rule in shaped(rules, list, "rules"):
        r = shaped(rule, dict, "rule")
        out.append(f"  origins={','.join(r.get('origins') or [])}  "
                   f"methods={','.join(r.get('methods') or [])}  "
                   f"headers={','.join(r.get('headers') or []) or '-'}  "
                   f"max_age_s={r.get('max_age_s', 0)}")
    return "\n".join(out)


async def _bucket_cors(args: argparse.Namespace, http: Http, bases: list[str]) -> int:
    """Show the rules (no option), replace them by one rule (--origin/--method...), or
    drop them (--clear: the nodes' options apply again)."""
    path = f"/v1/buckets/{_q(args.bucket)}/cors"
    if args.clear:
        await send(http, bases, "DELETE", path)
        return _show(args, {"bucket": args.bucket, "rules": None},
                     f"{args.bucket}: no rules of its own (the nodes' --cors-* apply)")
    if not args.origin and not args.method:
        doc = shaped(await send(http, bases, "GET", path), dict, "cors")
        return _show(args, doc, cors_lines(doc))
    rule: Doc = {"origins": args.origin or [], "methods": args.method or ["GET", "HEAD"],
                 "headers": args.header or [], "max_age_s": args.max_age}
    doc = shaped(await send(http, bases, "PUT", path, {"rules": [rule]}), dict, "cors")
    return _show(args, doc, cors_lines(doc))


def _add_bucket(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("bucket", help="buckets: create, info, allow, deny, public, cors")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = _add_admin_parser(sub, "create", _bucket_create, help="create a bucket (admin)")
    c.add_argument("bucket", metavar="BUCKET")
    c.add_argument("--public-read", action="store_true", help="anyone may read it")
    c.add_argument("--owner", default="", metavar="ACCESS_KEY",
                   help="the key that owns it (default: the caller)")
    _add_admin_parser(sub, "info", _bucket_info, help="owner, settings and grants (owner)"
                      ).add_argument("bucket", metavar="BUCKET")
    a = _add_admin_parser(sub, "allow", _grant, help="grant a key a role (owner)")
    a.add_argument("bucket", metavar="BUCKET")
    a.add_argument("key", metavar="ACCESS_KEY")
    a.add_argument("role", choices=ROLES)
    d = _add_admin_parser(sub, "deny", _revoke, help="remove a key's grant (owner)")
    d.add_argument("bucket", metavar="BUCKET")
    d.add_argument("key", metavar="ACCESS_KEY")
    pub = _add_admin_parser(sub, "public", _bucket_public,
                            help="make a bucket publicly readable, or not (owner)")
    pub.add_argument("bucket", metavar="BUCKET")
    pub.add_argument("state", choices=("on", "off"))
    cr = _add_admin_parser(sub, "cors", _bucket_cors, help="a bucket's CORS rules: show "
                           "them, set one rule, or --clear them (owner)")
    cr.add_argument("bucket", metavar="BUCKET")
    cr.add_argument("--origin", action="append", metavar="ORIGIN",
                    help="an allowed origin: '*', https://host[:port] or https://*.domain "
                         "(repeat for more)")
    cr.add_argument("--method", action="append", metavar="METHOD", type=str.upper,
                    help="an allowed method (repeat; default GET and HEAD)")
    cr.add_argument("--header", action="append", metavar="HEADER",
                    help="a request header the origin may send, e.g. authorization (repeat)")
    cr.add_argument("--max-age", type=int, default=600, metavar="SECONDS",
                    help="seconds a browser may cache a preflight answer (default 600)")
    cr.add_argument("--clear", action="store_true",
                    help="drop the bucket's rules: the nodes' --cors-* apply again")


ACCESS_SUBCOMMANDS: tuple[Callable[[Subparsers], None], ...] = (_add_key, _add_bucket)
