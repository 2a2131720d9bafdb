"""One exception hierarchy for the whole node; errors become HTTP codes only at the edge.

Every class carries how each edge shows it, as class attributes, so that an edge translates
an error with one lookup instead of a table of its own (dfsring.http.problems for clients,
dfsring.transport.messages.ErrorReply for peers):

- ``status``, ``problem``, ``title``: the public HTTP status and RFC 9457 problem (type slug
  and title). A class marked ``public = False`` exists only between nodes: if one ever
  reaches a client it is shown as its nearest public ancestor's problem (500 internal).
- ``peer_code``: the ``code`` of the ErrorReply a replica answers with, which the caller turns
  back into the same class (`from_peer`). ``peer_status`` is the HTTP status of that reply:
  the ``status`` of the class that names the code, so a subclass that keeps its parent's code
  (Conflict keeps "internal") keeps its parent's status on the wire too.
- `extra_fields`, `public_detail`, `headers` and `peer_figures` add what a class carries
  beyond its message (limits, counts, Content-Range), and `from_peer` rebuilds it.

Figures in brackets are (status, problem); "peer code" is named where it differs from the
problem, "peer-only" marks classes never shown to clients:

    DfsError                      (500 internal)
    ├── BadRequest                client input is malformed or out of bounds (400 bad-request)
    │   ├── InvalidKey            bucket or key name not allowed (400 invalid-key)
    │   ├── InvalidContext        a Dfs-Context token that does not decode (400 invalid-context)
    │   └── MessageError          a peer message that does not decode (400 bad-request)
    ├── PayloadTooLarge           value above the inline limit (413 payload-too-large)
    │   └── FileTooLarge          a file above the largest a manifest can describe (413)
    ├── RequestTimeout            the client stopped sending its request body (408)
    ├── NotImplementedCoding      a request Transfer-Encoding other than chunked (501)
    ├── VersionNotSupported       an HTTP version we do not serve, such as 0.9 (505)
    ├── RangeNotSatisfiable       a Range that selects no byte of the file (416)
    ├── NotFound                  nothing stored under that name (404 not-found)
    ├── StorageError              the local engine failed (500 internal)
    │   ├── CorruptValue          a stored value failed its checksum; never served (500)
    │   ├── StorageClosed         the engine is shutting down (503 unavailable)
    │   └── HintFormatError       a stored or sent hint that does not decode (500 internal)
    ├── Unauthorized              internal endpoint called without the cluster secret (401)
    ├── Unauthenticated           no credentials, or credentials not accepted (401)
    ├── Forbidden                 credentials lack the grant the request needs (403)
    ├── TooManyRequests           past a rate limit (429 too-many-requests, Retry-After)
    ├── NotReady                  the node has not yet learned its cluster's members (503)
    ├── Conflict                  a cluster change that cannot be made now (409 conflict)
    │   └── TooManySiblings       a write that would keep more siblings than --max-siblings
    ├── StaleRing                 a replica on a newer ring no longer holds that key (peer-only)
    ├── HintsFull                 a fallback's hint queue for that owner is full (peer-only)
    ├── WrongCluster              a peer, or a ring, of another cluster (peer-only)
    ├── QuorumNotMet              too few replicas answered in time (503 quorum-not-met)
    └── RpcError                  a call to a peer failed (500 internal)
        ├── PeerUnavailable       could not reach the peer, or no answer before the deadline
        └── PeerRefused           the peer answered with an ErrorReply (code, detail, ...)

MessageError, WrongCluster and HintFormatError are ValueErrors too, as they were before they
joined the tree. Their old homes (dfsring.transport.messages, dfsring.gossip, dfsring.core.hints)
and that
of the RpcError family (dfsring.transport.rpc) re-export them. This module imports nothing from
dfsring,
so every layer may import it.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, TypeVar

E = TypeVar("E", bound="DfsError")


class DfsError(Exception):
    """Base of every error the node raises on purpose."""

    status: ClassVar[int] = 500
    problem: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"
    public: ClassVar[bool] = True
    peer_code: ClassVar[str] = "internal"
    peer_status: ClassVar[int] = 500

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "peer_code" in cls.__dict__:
            cls.peer_status = cls.status
            _BY_PEER_CODE.setdefault(cls.peer_code, cls)

    def public_detail(self) -> str:
        """The problem's ``detail``: the message, unless it must not leave the node."""
        return str(self)

    def extra_fields(self) -> dict[str, Any]:
        """Members of the problem document beyond type, title, status and detail."""
        return {}

    def headers(self) -> dict[str, str]:
        """Response headers the public answer needs (Content-Range of a 416)."""
        return {}

    def peer_figures(self) -> tuple[int, int]:
        """The ErrorReply's (needed, acked): the numbers `from_peer` rebuilds the error from."""
        return (0, 0)

    @classmethod
    def from_peer(cls, detail: str, needed: int, acked: int, peer: str) -> DfsError:
        """This error as a peer's ErrorReply described it (inverse of the peer_* members)."""
        return cls(detail)


_BY_PEER_CODE: dict[str, type[DfsError]] = {"internal": DfsError}


def public_class(exc: DfsError) -> type[DfsError]:
    """The class whose status, problem and title a client sees for `exc`."""
    return next(c for c in type(exc).__mro__ if issubclass(c, DfsError) and c.public)


def peer_class(code: str) -> type[DfsError] | None:
    """The class that answers peers with `code`, or None for a code no error carries (the
    transport's own refusals: unauthorized, no-such-route, request-timeout)."""
    return _BY_PEER_CODE.get(code)


def peer_codes() -> dict[str, type[DfsError]]:
    """Every peer code an error carries, and its class (for tests and documentation)."""
    return dict(_BY_PEER_CODE)


def _bare(cls: type[E], message: str, **fields: Any) -> E:
    """An instance of `cls` with this message and fields, bypassing its constructor: for
    rebuilding an error whose constructor composes its message from fields we do not have."""
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.__dict__.update(fields)
    return exc


class BadRequest(DfsError):
    """The caller sent something we refuse; the message is safe to show to the client."""

    status = 400
    problem = "bad-request"
    title = "Bad request"
    peer_code = "bad-request"


class InvalidKey(BadRequest):
    """A bucket or key name outside the documented rules."""

    problem = "invalid-key"
    title = "Invalid bucket or key"
    peer_code = "invalid-key"


class InvalidContext(BadRequest):
    """A causal context token that is not one we issued (or was truncated)."""

    problem = "invalid-context"
    title = "Invalid Dfs-Context"
    peer_code = "invalid-context"


class MessageError(BadRequest, ValueError):
    """A message that does not decode to a known, well-typed catalogue entry
    (dfsring.transport.messages)."""


class PayloadTooLarge(DfsError):
    """A value above the inline limit; large data belongs to the files API."""

    status = 413
    problem = "payload-too-large"
    title = "Value too large"
    peer_code = "payload-too-large"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"value of {size} bytes exceeds the inline limit of {limit} bytes")
        self.size = size
        self.limit = limit

    def extra_fields(self) -> dict[str, Any]:
        return {"limit": self.limit}

    def peer_figures(self) -> tuple[int, int]:
        return (self.limit, self.size)

    @classmethod
    def from_peer(cls, detail: str, needed: int, acked: int, peer: str) -> DfsError:
        return _bare(cls, detail, size=acked, limit=needed)


class FileTooLarge(PayloadTooLarge):
    """A file longer than the largest one a manifest can describe (dfsring.core.manifest)."""

    def __init__(self, size: int, limit: int) -> None:
        DfsError.__init__(self, f"file of at least {size} bytes exceeds the limit of {limit} "
                          "bytes")
        self.size = size
        self.limit = limit


class RequestTimeout(DfsError):
    """The client sent nothing more of its request body for too long."""

    status = 408
    problem = "request-timeout"
    title = "Request body timed out"


class NotImplementedCoding(DfsError):
    """A request body in a transfer coding we do not decode (RFC 9112 §6.1: 501). Storing
    it undecoded would keep bytes the client never meant as the value."""

    status = 501
    problem = "unsupported-transfer-coding"
    title = "Transfer coding not implemented"


class VersionNotSupported(DfsError):
    """A request in an HTTP version this node does not serve (HTTP/0.9: no headers, so no
    status line, no length and no error could be told apart from data)."""

    status = 505
    problem = "http-version-not-supported"
    title = "HTTP version not supported"


class RangeNotSatisfiable(DfsError):
    """A valid Range that selects no byte of the representation (-> 416).

    ``size`` is the representation length the response's ``Content-Range: bytes */size``
    reports (dfsring.core.byterange).
    """

    status = 416
    problem = "range-not-satisfiable"
    title = "Range not satisfiable"

    def __init__(self, spec: str, size: int) -> None:
        super().__init__(f"range {spec!r:.80} is not satisfiable for {size} bytes")
        self.size = size

    def headers(self) -> dict[str, str]:
        return {"Content-Range": f"bytes */{self.size}"}


class NotFound(DfsError):
    """Nothing stored under the requested name."""

    status = 404
    problem = "not-found"
    title = "Not found"


class StorageError(DfsError):
    """The local storage engine could not complete an operation."""


class CorruptValue(StorageError):
    """A stored value whose checksum does not match: reported, never returned as data."""

    problem = "corrupt-value"
    title = "Stored value is corrupt"
    peer_code = "corrupt-value"

    def __init__(self, table: str, key: bytes) -> None:
        super().__init__(f"stored value in table {table!r} failed its checksum (key {key!r})")
        self.table = table
        self.key = key

    def public_detail(self) -> str:
        return "the stored value failed its checksum and was not served"

    @classmethod
    def from_peer(cls, detail: str, needed: int, acked: int, peer: str) -> DfsError:
        return _bare(cls, detail, table="", key=b"")


class StorageClosed(StorageError):
    """The engine is closed or closing; the request may be retried on another node."""

    status = 503
    problem = "unavailable"
    title = "Node is stopping"


class HintFormatError(StorageError, ValueError):
    """A stored or transmitted hint that does not decode (dfsring.core.hints)."""


class Unauthorized(DfsError):
    """An internal endpoint was called without the right cluster secret."""

    status = 401
    problem = "unauthorized"
    title = "Unauthorized"


class Unauthenticated(DfsError):
    """A client request without credentials, or with credentials that are not accepted.

    One answer for an unknown key, a wrong secret and a bad signature, so that a stranger
    cannot learn which keys exist (the detail names only what the caller can already see:
    missing credentials, an expired presigned URL, a skewed clock, a replay)."""

    status = 401
    problem = "unauthenticated"
    title = "Authentication required"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="dfsring"'}


class Forbidden(DfsError):
    """Accepted credentials without the grant the request needs.

    `missing` names the grant ("write on bucket photos", "admin"); it is only ever shown to
    a caller whose key was accepted, and says nothing about whether the bucket exists."""

    status = 403
    problem = "forbidden"
    title = "Forbidden"

    def __init__(self, missing: str, detail: str | None = None) -> None:
        super().__init__(detail or f"this key lacks the grant: {missing}")
        self.missing = missing

    def extra_fields(self) -> dict[str, Any]:
        return {"missing_grant": self.missing}


class TooManyRequests(DfsError):
    """A caller past its request, bandwidth or failed-authentication rate."""

    status = 429
    problem = "too-many-requests"
    title = "Too many requests"

    def __init__(self, detail: str, retry_after_s: float) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s

    def extra_fields(self) -> dict[str, Any]:
        return {"retry_after_s": round(self.retry_after_s, 3)}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, int(-(-self.retry_after_s // 1))))}


class NotReady(DfsError):
    """This node does not know all its members yet, so it cannot place data safely."""

    status = 503
    problem = "not-ready"
    title = "Node not ready"


class Conflict(DfsError):
    """A cluster operation that contradicts the cluster's state (leave the last member,
    remove a live node, join while holding data)."""

    status = 409
    problem = "conflict"
    title = "Conflict with the cluster's state"


class TooManySiblings(Conflict):
    """A write that would leave a key more concurrent versions than the limit: the client
    must read the key and write back with the context it got, which replaces the siblings
    it saw (dfsring.core.vclock "Bounds"; Riak refuses past max_siblings too)."""

    problem = "too-many-siblings"
    title = "Too many siblings"
    peer_code = "too-many-siblings"

    def __init__(self, siblings: int, limit: int) -> None:
        super().__init__(f"the write would leave {siblings} siblings, more than the limit "
                         f"of {limit}: read the key and write back with its Dfs-Context to "
                         "resolve them")
        self.siblings = siblings
        self.limit = limit

    def extra_fields(self) -> dict[str, Any]:
        return {"siblings": self.siblings, "limit": self.limit}

    def peer_figures(self) -> tuple[int, int]:
        return (self.limit, self.siblings)

    @classmethod
    def from_peer(cls, detail: str, needed: int, acked: int, peer: str) -> DfsError:
        return cls(acked, needed)


class StaleRing(DfsError):
    """A coordinator on an older ring sent a key this replica no longer holds: its ack must
    not count, or a lagging coordinator could acknowledge a write only old owners keep."""

    status = 409
    problem = "stale-ring"
    title = "Stale ring"
    public = False
    peer_code = "stale-ring"


class HintsFull(DfsError):
    """A fallback refused a hint: its queue for that owner is at --hint-max-bytes. The
    coordinator tries the next fallback; the write is never acknowledged on a dropped hint."""

    status = 507
    problem = "hints-full"
    title = "Hint queue full"
    public = False
    peer_code = "hints-full"


class WrongCluster(DfsError, ValueError):
    """A peer of another cluster (another founder): never merge two rings' views."""

    status = 409
    problem = "wrong-cluster"
    title = "Wrong cluster"
    public = False
    peer_code = "wrong-cluster"


class QuorumNotMet(DfsError):
    """Fewer than the required replicas acknowledged in time.

    Carries every replica's outcome so the edge can report needed/acked and operators can see
    which replica failed how.
    """

    status = 503
    problem = "quorum-not-met"
    title = "Quorum not met"
    peer_code = "quorum-not-met"

    def __init__(self, needed: int, acked: int, outcomes: dict[str, str] | None = None) -> None:
        super().__init__(f"quorum not met: needed {needed}, acked {acked}")
        self.needed = needed
        self.acked = acked
        self.outcomes = dict(outcomes or {})

    def extra_fields(self) -> dict[str, Any]:
        return {"needed": self.needed, "acked": self.acked, "replicas": self.outcomes}

    def peer_figures(self) -> tuple[int, int]:
        return (self.needed, self.acked)

    @classmethod
    def from_peer(cls, detail: str, needed: int, acked: int, peer: str) -> DfsError:
        return cls(needed=needed, acked=acked, outcomes={peer: detail})


class RpcError(DfsError):
    """A call to a peer failed; ``peer`` is the address (or node id) called."""

    def __init__(self, peer: str, detail: str) -> None:
        super().__init__(f"{peer}: {detail}")
        self.peer = peer
        self.detail = detail


def describe(exc: BaseException | None) -> str:
    """One short line for a failed call in a log field or a QuorumNotMet outcome: a peer
    error's detail as the peer gave it, else the class and message; None, a cancelled call."""
    if exc is None:
        return "cancelled"
    if isinstance(exc, RpcError):
        return exc.detail
    return f"{type(exc).__name__}: {exc}"


class PeerUnavailable(RpcError):
    """Connection refused or reset, or no reply in time: the peer may be down."""


class Refusal(Protocol):
    """What a peer's refusal says (dfsring.transport.messages.ErrorReply, kept abstract here so that
    this module stays at the bottom of the imports)."""

    @property
    def code(self) -> str: ...

    @property
    def detail(self) -> str: ...

    @property
    def needed(self) -> int: ...

    @property
    def acked(self) -> int: ...


class PeerRefused(RpcError):
    """The peer answered with an ErrorReply; `error` is the domain error it stands for."""

    def __init__(self, peer: str, reply: Refusal) -> None:
        super().__init__(peer, f"{reply.code}: {reply.detail}")
        self.reply = reply

    def error(self) -> DfsError:
        """The peer's refusal as the error it raised there (a StorageError naming the peer
        for an internal failure or a code no error carries)."""
        reply = self.reply
        cls = peer_class(reply.code)
        if cls is None or cls is DfsError:
            return StorageError(f"coordinating replica {self.peer} failed: {reply.detail}")
        return cls.from_peer(reply.detail, reply.needed, reply.acked, self.peer)
