"""The error tree (dfsring.foundation.errors): every class says how each edge shows it, the public
problems are exactly those the API documents, and every peer code survives the trip
exception -> ErrorReply -> exception."""

from __future__ import annotations

import ast
import inspect
from typing import Any

import orjson
import pytest

from dfsring.foundation import errors
from dfsring.http.problems import PROBLEM_TYPE_BASE, from_error
from dfsring.transport.messages import ErrorReply, decode
from dfsring.transport.rpc import PeerRefused

CLASSES = [c for _, c in inspect.getmembers(errors, inspect.isclass)
           if issubclass(c, errors.DfsError)]

SAMPLES: dict[type[errors.DfsError], errors.DfsError] = {
    errors.DfsError: errors.DfsError("boom"),
    errors.BadRequest: errors.BadRequest("no such knob"),
    errors.InvalidKey: errors.InvalidKey("key too long"),
    errors.InvalidContext: errors.InvalidContext("context truncated"),
    errors.MessageError: errors.MessageError("not msgpack"),
    errors.PayloadTooLarge: errors.PayloadTooLarge(2000, 1000),
    errors.FileTooLarge: errors.FileTooLarge(2000, 1000),
    errors.RequestTimeout: errors.RequestTimeout("body stalled"),
    errors.NotImplementedCoding: errors.NotImplementedCoding("gzip"),
    errors.VersionNotSupported: errors.VersionNotSupported("HTTP/0.9"),
    errors.RangeNotSatisfiable: errors.RangeNotSatisfiable("bytes=10-", 5),
    errors.NotFound: errors.NotFound("no such file"),
    errors.StorageError: errors.StorageError("disk gone"),
    errors.CorruptValue: errors.CorruptValue("kv", b"k"),
    errors.StorageClosed: errors.StorageClosed("closing"),
    errors.HintFormatError: errors.HintFormatError("not a hint"),
    errors.Unauthorized: errors.Unauthorized("no secret"),
    errors.Unauthenticated: errors.Unauthenticated("credentials not accepted"),
    errors.Forbidden: errors.Forbidden("write on bucket photos"),
    errors.TooManyRequests: errors.TooManyRequests("slow down", 1.5),
    errors.NotReady: errors.NotReady("members unknown"),
    errors.Conflict: errors.Conflict("last member"),
    errors.TooManySiblings: errors.TooManySiblings(9, 8),
    errors.StaleRing: errors.StaleRing("epoch 3 < 4"),
    errors.HintsFull: errors.HintsFull("queue full"),
    errors.WrongCluster: errors.WrongCluster("cluster b, we are a"),
    errors.QuorumNotMet: errors.QuorumNotMet(2, 1, {"n2": "timeout"}),
    errors.RpcError: errors.RpcError("n2", "no route"),
    errors.PeerUnavailable: errors.PeerUnavailable("n2", "refused"),
    errors.PeerRefused: errors.PeerRefused("n2", ErrorReply("bad-request", "x", 0, 0)),
}

# (status, problem type, title, extra members, headers): what clients have always been shown
# (docs/API.md); a change here is a change of the public contract.
PUBLIC: dict[type[errors.DfsError], tuple[int, str, str, dict[str, Any], dict[str, str]]] = {
    errors.DfsError: (500, "internal", "Internal error", {}, {}),
    errors.BadRequest: (400, "bad-request", "Bad request", {}, {}),
    errors.InvalidKey: (400, "invalid-key", "Invalid bucket or key", {}, {}),
    errors.InvalidContext: (400, "invalid-context", "Invalid Dfs-Context", {}, {}),
    errors.MessageError: (400, "bad-request", "Bad request", {}, {}),
    errors.PayloadTooLarge: (413, "payload-too-large", "Value too large", {"limit": 1000}, {}),
    errors.FileTooLarge: (413, "payload-too-large", "Value too large", {"limit": 1000}, {}),
    errors.RequestTimeout: (408, "request-timeout", "Request body timed out", {}, {}),
    errors.NotImplementedCoding: (501, "unsupported-transfer-coding",
                                  "Transfer coding not implemented", {}, {}),
    errors.VersionNotSupported: (505, "http-version-not-supported",
                                 "HTTP version not supported", {}, {}),
    errors.RangeNotSatisfiable: (416, "range-not-satisfiable", "Range not satisfiable", {},
                                 {"Content-Range": "bytes */5"}),
    errors.NotFound: (404, "not-found", "Not found", {}, {}),
    errors.StorageError: (500, "internal", "Internal error", {}, {}),
    errors.CorruptValue: (500, "corrupt-value", "Stored value is corrupt", {}, {}),
    errors.StorageClosed: (503, "unavailable", "Node is stopping", {}, {}),
    errors.HintFormatError: (500, "internal", "Internal error", {}, {}),
    errors.Unauthorized: (401, "unauthorized", "Unauthorized", {}, {}),
    errors.Unauthenticated: (401, "unauthenticated", "Authentication required", {},
                             {"WWW-Authenticate": 'Bearer realm="dfsring"'}),
    errors.Forbidden: (403, "forbidden", "Forbidden", {"missing_grant": "write on bucket photos"},
                       {}),
    errors.TooManyRequests: (429, "too-many-requests", "Too many requests",
                             {"retry_after_s": 1.5}, {"Retry-After": "2"}),
    errors.NotReady: (503, "not-ready", "Node not ready", {}, {}),
    errors.Conflict: (409, "conflict", "Conflict with the cluster's state", {}, {}),
    errors.TooManySiblings: (409, "too-many-siblings", "Too many siblings",
                             {"siblings": 9, "limit": 8}, {}),
    errors.StaleRing: (500, "internal", "Internal error", {}, {}),
    errors.HintsFull: (500, "internal", "Internal error", {}, {}),
    errors.WrongCluster: (500, "internal", "Internal error", {}, {}),
    errors.QuorumNotMet: (503, "quorum-not-met", "Quorum not met",
                          {"needed": 2, "acked": 1, "replicas": {"n2": "timeout"}}, {}),
    errors.RpcError: (500, "internal", "Internal error", {}, {}),
    errors.PeerUnavailable: (500, "internal", "Internal error", {}, {}),
    errors.PeerRefused: (500, "internal", "Internal error", {}, {}),
}

# peer code -> the HTTP status of the reply that carries it
PEER: dict[str, int] = {
    "internal": 500, "bad-request": 400, "invalid-key": 400, "invalid-context": 400,
    "payload-too-large": 413, "corrupt-value": 500, "too-many-siblings": 409,
    "stale-ring": 409, "hints-full": 507, "wrong-cluster": 409, "quorum-not-met": 503,
}


def test_every_class_is_sampled_and_in_the_public_table() -> None:
    assert set(SAMPLES) == set(CLASSES) == set(PUBLIC)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_class_has_a_status_a_problem_and_a_peer_code(cls: type[errors.DfsError]) -> None:
    assert 400 <= cls.status < 600
    assert cls.problem and cls.title and cls.peer_code
    assert errors.peer_class(cls.peer_code) is not None
    assert cls.__doc__ and cls.__name__ in (errors.__doc__ or "")


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_public_problems_stay_what_they_were(cls: type[errors.DfsError]) -> None:
    exc = SAMPLES[cls]
    status, slug, title, extra, headers = PUBLIC[cls]
    resp = from_error(exc, "rid")
    assert resp.status == status
    assert resp.body is not None
    doc = orjson.loads(resp.body)  # type: ignore[arg-type]
    detail = ("the stored value failed its checksum and was not served"
              if cls is errors.CorruptValue else str(exc))
    assert doc == {"type": PROBLEM_TYPE_BASE + slug, "title": title, "status": status,
                   "detail": detail, "request_id": "rid", **extra}
    assert list(doc)[:5] == ["type", "title", "status", "detail", "request_id"]
    assert resp.content_type == "application/problem+json"
    for name, value in headers.items():
        assert resp.headers[name] == value


def test_the_peer_codes_and_their_statuses() -> None:
    assert {code: cls.peer_status for code, cls in errors.peer_codes().items()} == PEER


@pytest.mark.parametrize("code", sorted(PEER))
def test_every_peer_code_round_trips(code: str) -> None:
    cls = errors.peer_codes()[code]
    sent = SAMPLES[cls]
    reply = decode(ErrorReply.of(sent).encode(), ErrorReply)
    assert reply.code == code
    back = PeerRefused("n2", reply).error()
    if cls is errors.DfsError:  # a peer's internal failure names the peer
        assert type(back) is errors.StorageError
        assert str(back) == f"coordinating replica n2 failed: {sent}"
        return
    assert type(back) is cls
    assert str(back) == str(sent)
    assert back.peer_figures() == sent.peer_figures()
    assert back.extra_fields() == {**sent.extra_fields(), **(
        {"replicas": {"n2": str(sent)}} if cls is errors.QuorumNotMet else {})}


@pytest.mark.parametrize("code", ["unauthorized", "no-such-route", "request-timeout", "?"])
def test_a_transport_refusal_is_a_storage_error_naming_the_peer(code: str) -> None:
    back = PeerRefused("n2", ErrorReply(code, "why", 0, 0)).error()
    assert type(back) is errors.StorageError
    assert str(back) == "coordinating replica n2 failed: why"


def test_the_old_homes_still_export_the_errors() -> None:
    from dfsring import gossip
    from dfsring.core import hints
    from dfsring.transport import messages, rpc
    assert messages.MessageError is errors.MessageError
    assert gossip.WrongCluster is errors.WrongCluster
    assert hints.HintFormatError is errors.HintFormatError
    assert (rpc.RpcError, rpc.PeerUnavailable, rpc.PeerRefused) == (
        errors.RpcError, errors.PeerUnavailable, errors.PeerRefused)
    for cls in (errors.MessageError, errors.WrongCluster, errors.HintFormatError):
        assert issubclass(cls, ValueError)


def test_errors_imports_nothing_from_dfsring() -> None:
    tree = ast.parse(inspect.getsource(errors))
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)] + [
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [name for name in imported if name.split(".")[0] == "dfsring"]


CLIENT_ANSWERS = [  # (status, problem type slug) -> the client error it becomes
    (400, "invalid-key", "BadRequestError"),
    (404, "no-such-route", "NotFoundError"),
    (413, "payload-too-large", "PayloadTooLargeError"),
    (503, "quorum-not-met", "QuorumNotMetError"),
    (503, "unavailable", "UnavailableError"),
    (503, "not-ready", "UnavailableError"),
    (409, "too-many-siblings", "ProblemError"),
    (500, "internal", "ProblemError"),
]


@pytest.mark.parametrize(("status", "slug", "name"), CLIENT_ANSWERS)
def test_the_client_picks_its_error_by_status_and_problem(status: int, slug: str,
                                                          name: str) -> None:
    from dfsring.client.errors import problem_error
    body = orjson.dumps({"type": PROBLEM_TYPE_BASE + slug, "title": "t", "status": status,
                         "detail": "d", "needed": 2, "acked": 1})
    exc = problem_error(status, body, "rid")
    assert (type(exc).__name__, exc.status, exc.slug, exc.request_id) == (
        name, status, slug, "rid")


def test_the_client_keeps_what_a_non_dfsring_error_body_says() -> None:
    from dfsring.client.errors import UnavailableError, problem_error
    exc = problem_error(503, b"<html>busy</html>", None)
    assert type(exc) is UnavailableError and exc.detail == "<html>busy</html>"
