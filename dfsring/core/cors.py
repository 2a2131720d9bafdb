"""Cross-origin resource sharing: which browser origins may call the API. Pure.

A browser running a page of origin O sends ``Origin: O`` on a cross-origin request and, for
anything but a simple request, first a preflight (``OPTIONS`` with
``Access-Control-Request-Method`` and ``-Headers``). The server answers with
``Access-Control-Allow-*`` headers; the browser, not the server, enforces them. CORS is
therefore no access control of its own: credentials are still checked on the actual request.
What CORS decides is whether a page of another origin may *read* the answer.

Rules (``CorsRule``) come from the bucket's record when it has some, else from the node's
options (``--cors-*``); none at all means no CORS (no headers, every preflight refused).
Rules are kept in a canonical form (each list sorted and without duplicates, the rules
sorted), so the first rule that matches is the same on every node whatever order they were
written in.

Invariants (tests/unit/test_cors.py):
- An origin no rule allows is never reflected: ``Access-Control-Allow-Origin`` is either
  ``*`` (a rule with origin ``*``) or exactly the request's Origin, which a rule matched.
- A preflight is allowed only if one rule allows the origin, the method and every requested
  header. The answer lists that rule's methods and echoes the requested headers.
- Every answer that depends on Origin says ``Vary: Origin``.
- No ``Access-Control-Allow-Credentials``: clients send their key in a header they list in
  the preflight (``authorization``, ``x-api-key``), never cookies.

Origin patterns: ``*``, an exact origin ``https://app.example.com[:port]``, or one wildcard
label ``https://*.example.com[:port]`` (any one or more labels before ``.example.com``, never
the bare ``example.com``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_RULES = 100  # S3's own limit (PutBucketCors), so any S3 configuration fits
MAX_ORIGINS = 64  # per rule
MAX_HEADERS = 32  # per rule
MAX_EXPOSE = 32  # per rule: response headers a page may read (S3's ExposeHeader)
MAX_ORIGIN_LEN = 200
MAX_HEADER_LEN = 64
MAX_AGE_S = 86_400
MAX_ENCODED = 32 * 1024  # the rules of one bucket as stored (see accessrecords)
METHODS = ("DELETE", "GET", "HEAD", "POST", "PUT")
EXPOSED = ("Dfs-Acks", "Dfs-Context", "Dfs-Request-Id", "Dfs-Siblings", "ETag",
           "Content-Length", "Content-Range", "Last-Modified", "Retry-After")
_ORIGIN_RE = re.compile(r"https?://(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?")
_HEADER_RE = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_LABELS_RE = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?")


@dataclass(frozen=True, order=True)
class CorsRule:
    origins: tuple[str, ...]
    methods: tuple[str, ...]
    headers: tuple[str, ...] = ()  # lower case; "*": any header
    max_age_s: int = 0
    expose: tuple[str, ...] = ()  # response headers exposed besides EXPOSED (as written)


def origin_matches(pattern: str, origin: str) -> bool:
    """Does the rule origin ``pattern`` allow the request's ``origin``? Exact comparison
    (browsers send origins in lower case); a ``*.`` label matches one or more labels."""
    if pattern == "*":
        return True
    scheme, sep, rest = pattern.partition("://*.")
    if not sep:
        return pattern == origin
    prefix = scheme + "://"
    suffix = "." + rest
    if not origin.startswith(prefix) or not origin.endswith(suffix):
        return False
    labels = origin[len(prefix):len(origin) - len(suffix)]
    return bool(_LABELS_RE.fullmatch(labels)) and ".." not in labels


def _allows_headers(rule: CorsRule, requested: Sequence[str]) -> bool:
    return "*" in rule.headers or all(h in rule.headers for h in requested)


def parse_header_list(value: str | None) -> tuple[str, ...] | None:
    """The header names of ``Access-Control-Request-Headers`` (lower case), or None when the
    value is malformed or too long (the preflight is refused)."""
    if not value:
        return ()
    names = [n.strip().lower() for n in value.split(",")]
    names = [n for n in names if n]
    if len(names) > MAX_HEADERS or not all(
            len(n) <= MAX_HEADER_LEN and _HEADER_RE.fullmatch(n) for n in names):
        return None
    return tuple(names)


def _allow_origin(rule: CorsRule, origin: str) -> str:
    return "*" if "*" in rule.origins else origin


def _usable_origin(origin: str | None) -> bool:
    return origin is not None and 0 < len(origin) <= MAX_ORIGIN_LEN


def preflight(rules: Sequence[CorsRule], origin: str | None, method: str | None,
              request_headers: str | None) -> dict[str, str] | None:
    """The headers of a 204 answer to a preflight, or None: refused (403)."""
    if not _usable_origin(origin) or method is None or origin is None:
        return None
    requested = parse_header_list(request_headers)
    if requested is None:
        return None
    for rule in rules:
        if (method in rule.methods and _allows_headers(rule, requested)
                and any(origin_matches(p, origin) for p in rule.origins)):
            out = {"Access-Control-Allow-Origin": _allow_origin(rule, origin),
                   "Access-Control-Allow-Methods": ", ".join(rule.methods),
                   "Vary": "Origin, Access-Control-Request-Method, "
                           "Access-Control-Request-Headers"}
            if requested:
                out["Access-Control-Allow-Headers"] = ", ".join(requested)
            if rule.max_age_s:
                out["Access-Control-Max-Age"] = str(rule.max_age_s)
            return out
    return None


def _exposed(rule: CorsRule) -> list[str]:
    """EXPOSED, then the rule's own ExposeHeaders not already in it (names compared without
    case, as HTTP does): the native API's headers stay readable whatever a rule adds."""
    seen = {h.lower() for h in EXPOSED}
    extra = [h for h in rule.expose if h.lower() not in seen]
    return [*EXPOSED, *extra]


def actual(rules: Sequence[CorsRule], origin: str | None, method: str) -> dict[str, str]:
    """The headers to add to the answer of an actual request (its status whatever it is):
    ``Vary: Origin`` whenever there are rules, and the allow headers when one rule allows
    this origin and method."""
    if not rules:
        return {}
    out = {"Vary": "Origin"}
    if not _usable_origin(origin) or origin is None:
        return out
    for rule in rules:
        if method in rule.methods and any(origin_matches(p, origin) for p in rule.origins):
            out["Access-Control-Allow-Origin"] = _allow_origin(rule, origin)
            out["Access-Control-Expose-Headers"] = ", ".join(_exposed(rule))
            return out
    return out


# --- building and checking rules -----------------------------------------------------------


def _strings(value: object, what: str, limit: int) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} must be a list of strings")
    if len(value) > limit:
        raise ValueError(f"{what}: at most {limit} entries")
    return value


def check_origin(text: str) -> str:
    if text == "*":
        return text
    if len(text) > MAX_ORIGIN_LEN or not _ORIGIN_RE.fullmatch(text):
        raise ValueError(f"origin {text[:60]!r} is not '*', scheme://host[:port] or "
                         "scheme://*.domain[:port] (lower case, no path)")
    return text


def make_rule(origins: Iterable[str], methods: Iterable[str], headers: Iterable[str] = (),
              max_age_s: int = 0, expose: Iterable[str] = ()) -> CorsRule:
    """A rule in canonical form, every part checked (ValueError naming the part)."""
    o = sorted({check_origin(x) for x in origins})
    m = sorted({x.upper() for x in methods})
    h = sorted({x.lower() for x in headers})
    e = sorted(set(expose))
    if not o:
        raise ValueError("a rule needs at least one origin")
    if len(o) > MAX_ORIGINS:
        raise ValueError(f"a rule has at most {MAX_ORIGINS} origins")
    if not m or not set(m) <= set(METHODS):
        raise ValueError(f"methods must be some of {', '.join(METHODS)}")
    if len(h) > MAX_HEADERS or not all(
            x == "*" or (len(x) <= MAX_HEADER_LEN and _HEADER_RE.fullmatch(x)) for x in h):
        raise ValueError(f"headers: at most {MAX_HEADERS} header names (or '*')")
    if type(max_age_s) is not int or not 0 <= max_age_s <= MAX_AGE_S:
        raise ValueError(f"max_age_s must be an integer from 0 to {MAX_AGE_S}")
    if len(e) > MAX_EXPOSE or not all(
            len(x) <= MAX_HEADER_LEN and _HEADER_RE.fullmatch(x.lower()) for x in e):
        raise ValueError(f"expose: at most {MAX_EXPOSE} header names")
    return CorsRule(tuple(o), tuple(m), tuple(h), max_age_s, tuple(e))


def canonical(rules: Iterable[CorsRule]) -> tuple[CorsRule, ...]:
    return tuple(sorted(set(rules)))


def parse_rules(doc: object) -> tuple[CorsRule, ...]:
    """Rules from their JSON form (a list of objects with ``origins``, ``methods``, and
    optionally ``headers``, ``max_age_s`` and ``expose``); ValueError with the rule and
    field named."""
    if isinstance(doc, Mapping):
        if set(doc) != {"rules"}:
            raise ValueError('CORS rules: a JSON list, or an object {"rules": [...]}')
        doc = doc["rules"]
    if not isinstance(doc, list):
        raise ValueError("CORS rules must be a JSON list of rules")
    if len(doc) > MAX_RULES:
        raise ValueError(f"at most {MAX_RULES} CORS rules")
    out = []
    allowed = {"origins", "methods", "headers", "max_age_s", "expose"}
    for i, item in enumerate(doc):
        try:
            if not isinstance(item, dict):
                raise ValueError("must be an object")
            unknown = sorted(set(item) - allowed)
            if unknown:
                raise ValueError(f"unknown field(s) {', '.join(unknown)[:100]}; allowed: "
                                 f"{', '.join(sorted(allowed))}")
            out.append(make_rule(
                _strings(item.get("origins"), "origins", MAX_ORIGINS),
                _strings(item.get("methods"), "methods", len(METHODS) * 2),
                _strings(item.get("headers", []), "headers", MAX_HEADERS),
                item.get("max_age_s", 0),
                _strings(item.get("expose", []), "expose", MAX_EXPOSE)))
        except ValueError as exc:
            raise ValueError(f"rule {i}: {exc}") from None
    return canonical(out)


def rules_doc(rules: Iterable[CorsRule]) -> list[dict[str, Any]]:
    """The JSON form parse_rules reads. ``expose`` only when a rule has some, so a record
    without it is byte for byte what nodes that predate the field wrote and can read."""
    return [{"origins": list(r.origins), "methods": list(r.methods), "headers": list(r.headers),
             "max_age_s": r.max_age_s, **({"expose": list(r.expose)} if r.expose else {})}
            for r in rules]


def merge_rules(siblings: Sequence[tuple[CorsRule, ...] | None]) -> tuple[CorsRule, ...] | None:
    """The rules of concurrent versions of one bucket record: None (the node's rules) if no
    version has rules of its own, else the rules every version holds, a version without
    rules holding none. Never wider than any one version's own rules; commutative,
    associative and idempotent."""
    if all(s is None for s in siblings):
        return None
    common = set.intersection(*(set(s or ()) for s in siblings))
    return canonical(common)
