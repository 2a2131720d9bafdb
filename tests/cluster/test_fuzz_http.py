"""Fuzz every public route of a real 3-node cluster with raw HTTP (issue 23, part 7).

Each case is one request written byte by byte on its own socket: odd methods and versions,
paths with broken percent-encoding and control characters, hostile query values (limit,
cursor, r, w, n with odd digits), header names and values with non-ASCII bytes, bodies whose
framing lies (Content-Length off, chunked encodings broken, both at once). No answer may be a
5xx, and after each batch the cluster invariants hold (tests/cluster/fuzzkit.py).

Known findings fixed on other branches are steered around here and pinned by the named
tests at the end of this file (fuzzkit.KNOWN).
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dfsring.cli.launcher import LocalCluster
from tests.cluster import fuzzkit, rawhttp
from tests.cluster.fuzzkit import ClusterGuard, exchange, fuzz_settings, seeded, xfail_known

pytestmark = pytest.mark.fuzz

# Route templates of node.build_app: {b} bucket, {k} key or path, {id} node id, {kind} a
# peer message kind. POST /v1/cluster/leave is left out: from anyone it is a legitimate
# request that changes the ring, so it would break the invariant the fuzzing checks.
ROUTES = (
    "/health", "/metrics", "/v1/node/stats", "/v1/node/chunks", "/v1/node/gc",
    "/v1/node/local/kv/{b}/{k}", "/v1/node/local/kv/{b}",
    "/v1/kv/{b}/{k}", "/v1/kv/{b}", "/v1/kv/{b}/",
    "/v1/files/{b}/{k}", "/v1/files/{b}", "/v1/files/{b}/",
    "/v1/cluster/members", "/v1/cluster/ring", "/v1/cluster/transfers",
    "/v1/cluster/remove/{id}", "/v1/cluster/join", "/internal/v1/{kind}",
    "/v1/admin/keys", "/v1/admin/keys/{id}", "/v1/admin/keys/{id}/rotate",
    "/v1/buckets/{b}", "/v1/buckets/{b}/settings", "/v1/buckets/{b}/grants/{id}",
    "/", "/v1", "/v1/", "/v2/kv/{b}/{k}", "*",
)
METHODS = ("GET", "HEAD", "PUT", "DELETE", "POST", "OPTIONS", "PATCH", "TRACE", "CONNECT",
           "get", "PRI", "PROPFIND")
VERSIONS = ("HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.2",
            "HTTP/1.01", "http/1.1", "HTTP/11", "")
ODD_VERSIONS = ("", "HTTP/2.0")  # parsed, then echoed in the answer (KNOWN)
QUERY_NAMES = ("limit", "cursor", "r", "w", "n", "sloppy", "prefix", "seed", "version",
               "W", "x", "", "limit[]")
ODD_DIGITS = ("", "0", "1", "2", "3", "-1", "+1", " 1", "1 ", "01", "1e3", "1.0", "0x10",
              "²", "①", "٣", "१", "\uff11", "99999999999999999999", "10001", "all", "one",
              "quorum", "true", "false", "AAAA", "***", "%", "%zz", "%ff%fe", "%00", "%C2%B2")
# Content-Length, Transfer-Encoding and Connection come from `requests` only, so a case knows
# whether its framing is complete, and that the node closes after answering (fuzzkit.exchange).
FRAMING = ("content-length", "transfer-encoding", "connection")
HEADER_NAMES = ("Content-Type", "TE", "Dfs-Context",
                "Dfs-Consistency", "Dfs-Cluster-Secret", "Expect", "Range",
                "If-None-Match", "If-Match", "Host", "Content-Encoding", "Accept",
                "X-Forwarded-For", "Upgrade", "Cookie", "Authorization", "X-Api-Key")
SEGMENT_ATOMS = ("%", "%2", "%zz", "%ff%fe", "%00", "%2F", "%2f", "%25", "%C3%A9", "%c3",
                 "%E2%80%A8", "..", ".", "//", "\t", "\x01", "\x7f", " ", "é", "☃", "\U0001f600",
                 "?", "#", ";", "+", "&", "=", "%0A", "%0D%0A")
PLAIN = st.text(alphabet="abcxyz019-_.~", min_size=1, max_size=12)


def _fuzz_bucket(text: str) -> bool:
    """Never the canary bucket, however it is spelled: the fuzzer may write and delete."""
    return "canary" not in unquote(text, errors="replace").lower()


segment = st.lists(st.one_of(PLAIN, st.sampled_from(SEGMENT_ATOMS),
                             st.text(max_size=6)), min_size=0, max_size=6).map("".join)
buckets = st.one_of(st.sampled_from(("fz", "fz-b", "a", "b..c", "Fz", "x" * 64, "..", "%66z")),
                    segment).filter(_fuzz_bucket)
keys = st.one_of(segment, st.just("k" * 1025), st.sampled_from(("k", "a/b", "%E2%91%A0")))


@st.composite
def paths(draw: st.DrawFn) -> str:
    route = draw(st.sampled_from(ROUTES))
    path = (route.replace("{b}", draw(buckets)).replace("{k}", draw(keys))
            .replace("{id}", draw(segment)).replace("{kind}", draw(st.sampled_from(
                ("gossip-syn", "replica-write", "files/chunk-get", "nope", "")))))
    if draw(st.booleans()):
        pairs = draw(st.lists(st.tuples(st.sampled_from(QUERY_NAMES), st.one_of(
            st.sampled_from(ODD_DIGITS), segment)), max_size=4))
        if known("nonascii_digit_limit_500"):
            pairs = [(k, v) for k, v in pairs if not (k == "limit" and _odd_digit(v))]
        path += "?" + "&".join(f"{k}={v}" if draw(st.booleans()) or v else k for k, v in pairs)
    return path


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


header_values = st.one_of(
    st.sampled_from(("", "0", "-1", "chunked", "gzip, chunked", "chunked, gzip", "identity",
                     "text/plain", "text/plain\x01", "a/b; charset=\"x", "100-continue",
                     "close", "keep-alive", "bytes=0-", "bytes=-1", "bytes=5-1", "h2c",
                     "all", "one", "quorum", "%%%", "aGVsbG8", " x ", "\t", "é", "☃")),
    segment, st.text(max_size=40))


@st.composite
def headers(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    names = st.one_of(st.sampled_from(HEADER_NAMES), st.text(min_size=1, max_size=12))
    pairs = draw(st.lists(st.tuples(names, header_values), max_size=5))
    out = []
    for name, value in pairs:
        if name.strip().lower() in FRAMING:
            continue
        if name.lower() == "dfs-cluster-secret" and known("nonascii_secret_header_500"):
            value = value.encode("ascii", "ignore").decode()
        raw = _encode(value)
        if draw(st.booleans()):  # latin-1 bytes, as many clients send them
            raw = value.encode("latin-1", "replace")
        out.append((_encode(name), raw))
    return out


def known(name: str) -> bool:
    return fuzzkit.known(name)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[list[tuple[bytes, bytes]], bytes, bool]:
    """The body with the headers that frame it (honest, lying or contradictory), and whether
    the bytes sent complete the request."""
    data = draw(st.binary(max_size=300))
    mode = draw(st.sampled_from(("none", "length", "short", "long", "chunked", "bad-chunk",
                                 "both", "odd-length")))
    if mode == "none":
        return [], b"", True
    if mode == "length":
        return [(b"Content-Length", str(len(data)).encode())], data, True
    if mode in ("short", "long"):
        delta = draw(st.integers(1, 100))
        declared = len(data) + (delta if mode == "long" else -delta)
        return [(b"Content-Length", str(declared).encode())], data, mode == "short"
    if mode == "odd-length":
        declared = draw(st.sampled_from(("1e2", "+5", " 5", "5,5", "\uff10", "٣", "-0",
                                         "18446744073709551616", "0x10")))
        return [(b"Content-Length", declared.encode())], data, False
    sizes = draw(st.lists(st.integers(0, 64), max_size=4))
    chunks = b"".join(b"%x\r\n" % n + data[:n].ljust(n, b"x") + b"\r\n" for n in sizes if n)
    chunked = [(b"Transfer-Encoding", b"chunked")]
    if mode == "chunked":
        return chunked, chunks + b"0\r\n\r\n", True
    if mode == "both":
        return [*chunked, (b"Content-Length", b"3")], chunks + b"0\r\n\r\n", True
    broken = draw(st.sampled_from((b"zz\r\nab\r\n0\r\n\r\n", b"5\r\nab\r\n", b"5;x=\"\r\nabcde",
                                   b"-1\r\n\r\n", b"ffffffffffffffffff\r\n", chunks)))
    return chunked, broken, False


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, bool]:
    method = draw(st.one_of(st.sampled_from(METHODS), st.text(min_size=1, max_size=8)))
    path = draw(paths())
    if path.startswith("/v1/cluster/leave"):
        path = "/v1/cluster/ring"
    version = draw(st.sampled_from(VERSIONS))
    if version in ODD_VERSIONS and known("http_version_echoed"):
        version = "HTTP/1.0"
    framing, body, complete = draw(bodies())
    hdrs = [(b"Host", b"localhost"), *draw(headers()), *framing, (b"Connection", b"close")]
    line = _encode(f"{method} {path} {version}".rstrip())
    head = b"".join(name + b": " + value + b"\r\n" for name, value in hdrs)
    return line + b"\r\n" + head + b"\r\n" + body, complete


# --- the batches ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def armed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterGuard]:
    cluster = LocalCluster(3, tmp_path_factory.mktemp("fuzz-http"))
    with cluster:
        yield ClusterGuard(cluster).arm()


@pytest.fixture
def guard(armed: ClusterGuard) -> Iterator[ClusterGuard]:
    """One batch: the full invariants after it, whatever the batch's examples did."""
    yield armed
    armed.check()


def _one(guard: ClusterGuard, payload: bytes, node: int = 0, complete: bool = True, *,
         peer: bool = False) -> int | None:
    """One case, with the cluster's credentials added after the request line so that the
    request reaches the handlers (unless its own bytes break it first)."""
    target = guard.cluster.nodes[node]
    payload = rawhttp.with_headers(payload, guard.cluster.auth_headers)
    reply = exchange(target, payload, complete=complete, peer=peer)
    guard.count(reply.status)
    return reply.status


@seeded()
@fuzz_settings(1700)
@given(case=requests(), node=st.integers(0, 2))
def test_fuzz_raw_requests_get_no_5xx(guard: ClusterGuard, case: tuple[bytes, bool],
                                      node: int) -> None:
    payload, complete = case
    _one(guard, payload, node, complete)


@seeded()
@fuzz_settings(500)
@given(data=st.binary(max_size=400))
def test_fuzz_random_bytes_get_no_5xx(guard: ClusterGuard, data: bytes) -> None:
    """Random bytes, and random bytes after a valid request line; the head always ends, so
    the node has all it will get (a framing header in random bytes is too rare to matter)."""
    head = data if data[:1] != b"G" else b"GET /health HTTP/1.1\r\n" + data
    payload = head.replace(b"\r\n\r\n", b"\r\n") + b"\r\n\r\n"
    # Empty lines before a request line are skipped (RFC 9112 2.2): nothing more to answer.
    _one(guard, payload, complete=bool(payload.lstrip(b"\r\n")))


@seeded()
@fuzz_settings(300)
@given(method=st.sampled_from(("GET", "HEAD")), bucket=buckets, key=keys,
       query=st.lists(st.tuples(st.sampled_from(("limit", "cursor", "r", "prefix")),
                                st.sampled_from(ODD_DIGITS)), max_size=3))
def test_fuzz_listing_and_read_queries_get_no_5xx(guard: ClusterGuard, method: str,
                                                  bucket: str, key: str,
                                                  query: list[tuple[str, str]]) -> None:
    """The query parsers of reads and listings, with odd digits in every parameter."""
    if known("nonascii_digit_limit_500"):
        query = [(k, v) for k, v in query if not (k == "limit" and _odd_digit(v))]
    qs = "&".join(f"{k}={v}" for k, v in query)
    for path in (f"/v1/kv/{bucket}", f"/v1/kv/{bucket}/{key}", f"/v1/files/{bucket}",
                 f"/v1/node/local/kv/{bucket}"):
        payload = _encode(f"{method} {path}?{qs} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        _one(guard, payload)


def _odd_digit(value: str) -> bool:
    return any(ch.isdigit() and not ch.isascii() for ch in unquote(value))


def test_fuzz_http_batch_leaves_cluster_intact(armed: ClusterGuard,
                                               record_property: pytest.RecordProperty) -> None:
    """Runs last in this module: the full invariants once more, and the figures."""
    armed.check()
    summary = armed.report("http fuzz")
    record_property("fuzz_http", summary)
    print(summary)
    assert armed.cases >= 3000 * fuzzkit.SCALE, summary


# --- known findings, each a named test (fuzzkit.KNOWN) --------------------------------------


@pytest.fixture
def lone(cluster_factory: object) -> ClusterGuard:
    return ClusterGuard(cluster_factory(1, n=1, r=1, w=1), canaries=2).arm()  # type: ignore[operator]


@xfail_known("http_version_echoed")
@pytest.mark.parametrize("version", ODD_VERSIONS, ids=["0.9", "2.0"])
def test_odd_http_version_is_refused_not_echoed(lone: ClusterGuard, version: str) -> None:
    for path in ("/health", "/v1/kv/b/k", "/nope"):
        _one(lone, f"GET {path} {version}".rstrip().encode() + b"\r\nHost: x\r\n\r\n")
    lone.check()


@xfail_known("nonascii_secret_header_500")
@seeded()
@fuzz_settings(30)
@given(secret=st.binary(min_size=1, max_size=8).map(lambda b: bytes(c | 0x80 for c in b)),
       route=st.sampled_from(("/internal/v1/gossip-syn", "/internal/v1/files/chunk-get")))
def test_nonascii_cluster_secret_header_is_no_500(lone: ClusterGuard, secret: bytes,
                                                  route: str) -> None:
    """Bytes past ASCII, as a latin-1 client sends them (aiohttp keeps them as surrogates)."""
    payload = (f"POST {route} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               "Content-Length: 0\r\n".encode()
               + b"Dfs-Cluster-Secret: " + secret + b"\r\n\r\n")
    _one(lone, payload, peer=True)  # peer messages: the peer listener (--peer-port)


@xfail_known("nonascii_digit_limit_500")
@seeded()
@fuzz_settings(30)
@given(digit=st.sampled_from(("²", "①", "٣", "१", "\uff11", "%C2%B2", "%E2%91%A0")),
       route=st.sampled_from(("/v1/kv/b", "/v1/files/b", "/v1/node/local/kv/b")))
def test_nonascii_digit_limit_is_no_500(lone: ClusterGuard, digit: str, route: str) -> None:
    _one(lone, _encode(f"GET {route}?limit={digit} HTTP/1.1\r\nHost: x\r\n"
                       "Connection: close\r\n\r\n"))
