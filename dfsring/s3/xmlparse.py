"""S3 request bodies in XML: CreateBucket, PutBucketVersioning, PutBucketCors, DeleteObjects,
CompleteMultipartUpload. Pure; re-exported by dfsring.s3.xml.

Every body comes from outside, so every failure is an S3Error with S3's code, never another
exception (tests/unit/test_s3_xml_fuzz.py feeds random bytes and random XML-ish text):

- bodies over MAX_BODY (1 MiB): MaxMessageLengthExceeded, before any parsing;
- not well-formed, a DTD, an entity or an external reference (defusedxml refuses them, so
  no billion laughs and no XXE), the wrong root element or a required element missing or
  repeated: MalformedXML;
- a well-formed value S3 refuses: S3's code for it (InvalidArgument for a part number
  outside 1..10000, InvalidRequest for an unknown CORS method, ...).

Elements are accepted in S3's namespace or in none (clients send both); an element in any
other namespace is not the element asked for. Unknown elements are ignored, as S3 does for
ones it added later. Text is taken as written for keys (spaces are part of a key) and
stripped for every other value (pretty-printed bodies indent them).
"""

from __future__ import annotations

import re
from xml.etree.ElementTree import Element, ParseError

import orjson
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from dfsring.core import cors
from dfsring.s3.errors import S3Error
from dfsring.s3.model import Versioning

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_BODY = 1 << 20
MAX_DELETE = 1000  # objects in one DeleteObjects (S3's limit)
MAX_PARTS = 10_000  # parts in one upload (S3's limit)
MAX_CORS_RULES = 100  # S3's limit; cors.MAX_RULES is the same
MAX_ETAG = 128
MAX_RULE_ID = 255
_REGION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}")
_DIGITS_RE = re.compile(r"[0-9]{1,10}")
PART_RANGE = "Part number must be an integer between 1 and 10000, inclusive"


def _malformed(why: str) -> S3Error:
    return S3Error("MalformedXML", "The XML you provided was not well-formed or did not "
                   f"validate against our published schema: {why}")


def _root(body: bytes, name: str) -> Element:
    if len(body) > MAX_BODY:
        raise S3Error("MaxMessageLengthExceeded",
                      f"Your request was too big: XML bodies are at most {MAX_BODY} bytes")
    try:
        root: Element = fromstring(body, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError, LookupError, UnicodeError) as exc:
        raise _malformed(type(exc).__name__) from None
    if _name(root) != name:
        raise _malformed(f"the root element must be {name}")
    return root


def _name(el: Element) -> str | None:
    """The local name of an element in S3's namespace or none; None for any other."""
    tag = el.tag
    if not isinstance(tag, str):
        return None
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return local if ns == NS else None
    return tag


def _all(parent: Element, name: str) -> list[Element]:
    return [child for child in parent if _name(child) == name]


def _text(el: Element, name: str, *, strip: bool = True) -> str:
    if len(el):
        raise _malformed(f"{name} holds elements, not text")
    text = el.text or ""
    return text.strip() if strip else text


def _texts(parent: Element, name: str) -> list[str]:
    return [_text(el, name) for el in _all(parent, name)]


def _one(parent: Element, name: str, *, required: bool = True,
         strip: bool = True) -> str | None:
    found = _all(parent, name)
    if len(found) > 1:
        raise _malformed(f"{name} given {len(found)} times")
    if not found:
        if required:
            raise _malformed(f"{name} is missing")
        return None
    return _text(found[0], name, strip=strip)


# --- buckets -------------------------------------------------------------------------------


def parse_create_bucket(body: bytes) -> str | None:
    """The LocationConstraint of a CreateBucket body; None for no body or no constraint
    (the edge compares it with the node's region)."""
    if not body.strip():
        return None
    root = _root(body, "CreateBucketConfiguration")
    region = _one(root, "LocationConstraint", required=False)
    if not region:
        return None
    if not _REGION_RE.fullmatch(region):
        raise S3Error("InvalidLocationConstraint",
                      "The specified location-constraint is not valid")
    return region


def parse_versioning(body: bytes) -> Versioning:
    """Enabled or Suspended. MFA delete is not supported: asking for it is NotImplemented
    rather than silently ignored."""
    root = _root(body, "VersioningConfiguration")
    status = _one(root, "Status")
    mfa = _one(root, "MfaDelete", required=False)
    if mfa == "Enabled":
        raise S3Error("NotImplemented", "MFA delete is not supported")
    if mfa not in (None, "Disabled"):
        raise _malformed("MfaDelete must be Enabled or Disabled")
    if status == "Enabled":
        return "Enabled"
    if status == "Suspended":
        return "Suspended"
    raise _malformed("Status must be Enabled or Suspended")


def parse_cors(body: bytes) -> tuple[cors.CorsRule, ...]:
    """The rules of a PutBucketCors body in dfsring's canonical form (sorted, duplicates
    dropped; the rule ID is not kept). Origins are compared lower case, as browsers send
    them; MaxAgeSeconds above cors.MAX_AGE_S is kept as cors.MAX_AGE_S."""
    root = _root(body, "CORSConfiguration")
    rules = _all(root, "CORSRule")
    if not 0 < len(rules) <= MAX_CORS_RULES:
        raise _malformed(f"a CORS configuration holds 1 to {MAX_CORS_RULES} CORSRule")
    out = cors.canonical(_cors_rule(rule) for rule in rules)
    if len(orjson.dumps(cors.rules_doc(out))) > cors.MAX_ENCODED:
        raise S3Error("InvalidRequest", f"the CORS rules take more than {cors.MAX_ENCODED} "
                      "bytes stored; use fewer or shorter origins")
    return out


def _cors_rule(rule: Element) -> cors.CorsRule:
    methods = _texts(rule, "AllowedMethod")
    origins = [o.lower() for o in _texts(rule, "AllowedOrigin")]
    headers = _texts(rule, "AllowedHeader")
    if not methods or not origins:
        raise _malformed("a CORSRule needs AllowedMethod and AllowedOrigin")
    for method in methods:
        if method not in cors.METHODS:
            raise S3Error("InvalidRequest", "Found unsupported HTTP method in CORS config. "
                          f"Unsupported method is {method[:32]}")
    if any("*" in h and h != "*" for h in headers):
        raise S3Error("InvalidRequest", "AllowedHeader: only '*' alone is supported as a "
                      "wildcard, not a partial name")
    rule_id = _one(rule, "ID", required=False)
    if rule_id is not None and len(rule_id) > MAX_RULE_ID:
        raise S3Error("InvalidRequest", f"a CORSRule ID is at most {MAX_RULE_ID} characters")
    age = _one(rule, "MaxAgeSeconds", required=False)
    if age is not None and not _DIGITS_RE.fullmatch(age):
        raise _malformed("MaxAgeSeconds must be a non-negative integer")
    try:
        return cors.make_rule(origins, methods, headers,
                              min(int(age or 0), cors.MAX_AGE_S), _texts(rule, "ExposeHeader"))
    except ValueError as exc:
        raise S3Error("InvalidRequest", f"CORSRule: {exc}") from None


# --- objects -------------------------------------------------------------------------------


def parse_delete(body: bytes) -> tuple[list[tuple[str, str | None]], bool]:
    """The (key, version id or None) of a DeleteObjects body, in order, and Quiet."""
    root = _root(body, "Delete")
    quiet = (_one(root, "Quiet", required=False) or "false").lower()
    if quiet not in ("true", "false"):
        raise _malformed("Quiet must be true or false")
    objects = _all(root, "Object")
    if not 0 < len(objects) <= MAX_DELETE:
        raise _malformed(f"Delete holds 1 to {MAX_DELETE} Object")
    out: list[tuple[str, str | None]] = []
    for obj in objects:
        key = _one(obj, "Key", strip=False)
        if not key:
            raise _malformed("an Object has an empty Key")
        out.append((key, _one(obj, "VersionId", required=False) or None))
    return out, quiet == "true"


def parse_complete(body: bytes) -> list[tuple[int, str]]:
    """The (part number, ETag without quotes) of a CompleteMultipartUpload body, in the
    order given (the object layer refuses a wrong order with InvalidPartOrder)."""
    root = _root(body, "CompleteMultipartUpload")
    parts = _all(root, "Part")
    if not 0 < len(parts) <= MAX_PARTS:
        raise _malformed(f"CompleteMultipartUpload holds 1 to {MAX_PARTS} Part")
    out: list[tuple[int, str]] = []
    for part in parts:
        number = _one(part, "PartNumber") or ""
        if not _DIGITS_RE.fullmatch(number) or not 1 <= int(number) <= MAX_PARTS:
            raise S3Error("InvalidArgument", PART_RANGE)
        etag = _unquote(_one(part, "ETag") or "")
        if not etag or len(etag) > MAX_ETAG:
            raise S3Error("InvalidPart", "One or more of the specified parts could not be "
                          f"found: part {int(number)} has no usable ETag")
        out.append((int(number), etag))
    return out


def _unquote(etag: str) -> str:
    if len(etag) >= 2 and etag[0] == etag[-1] == '"':
        return etag[1:-1]
    return etag
