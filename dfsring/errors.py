"""One exception hierarchy for the whole node; errors become HTTP codes only at the edge.

    DfsError
    ├── BadRequest            client input is malformed or out of bounds (-> 400)
    │   ├── InvalidKey        bucket or key name not allowed (-> 400)
    │   └── InvalidContext    a Dfs-Context token that does not decode (-> 400)
    ├── PayloadTooLarge       value above the inline limit (-> 413)
    │   └── FileTooLarge      a file above the largest a manifest can describe (-> 413)
    ├── RequestTimeout        the client stopped sending its request body (-> 408)
    ├── RangeNotSatisfiable   a Range that selects no byte of the file (-> 416)
    ├── NotFound              nothing stored under that name (-> 404)
    ├── StorageError          the local engine failed
    │   ├── CorruptValue      a stored value failed its checksum; never served (-> 500)
    │   └── StorageClosed     the engine is shutting down (-> 503)
    ├── Unauthorized          internal endpoint called without the cluster secret (-> 401)
    ├── NotReady              the node has not yet learned its cluster's members (-> 503)
    ├── Conflict              a cluster change that cannot be made now (-> 409)
    │   └── TooManySiblings   a write that would keep more siblings than --max-siblings (-> 409)
    ├── StaleRing             a replica on a newer ring no longer holds that key (peer-only)
    ├── HintsFull             a fallback's hint queue for that owner is at its bound (peer-only)
    └── QuorumNotMet          too few replicas answered in time (-> 503)
"""

from __future__ import annotations


class DfsError(Exception):
    """Base of every error the node raises on purpose."""


class BadRequest(DfsError):
    """The caller sent something we refuse; the message is safe to show to the client."""


class InvalidKey(BadRequest):
    """A bucket or key name outside the documented rules."""


class InvalidContext(BadRequest):
    """A causal context token that is not one we issued (or was truncated)."""


class PayloadTooLarge(DfsError):
    """A value above the inline limit; large data belongs to the files API."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"value of {size} bytes exceeds the inline limit of {limit} bytes")
        self.size = size
        self.limit = limit


class FileTooLarge(PayloadTooLarge):
    """A file longer than the largest one a manifest can describe (dfsring.manifest)."""

    def __init__(self, size: int, limit: int) -> None:
        DfsError.__init__(self, f"file of at least {size} bytes exceeds the limit of {limit} "
                          "bytes")
        self.size = size
        self.limit = limit


class RequestTimeout(DfsError):
    """The client sent nothing more of its request body for too long."""


class RangeNotSatisfiable(DfsError):
    """A valid Range that selects no byte of the representation (-> 416).

    ``size`` is the representation length the response's ``Content-Range: bytes */size``
    reports (dfsring.byterange).
    """

    def __init__(self, spec: str, size: int) -> None:
        super().__init__(f"range {spec!r:.80} is not satisfiable for {size} bytes")
        self.size = size


class NotFound(DfsError):
    """Nothing stored under the requested name."""


class StorageError(DfsError):
    """The local storage engine could not complete an operation."""


class CorruptValue(StorageError):
    """A stored value whose checksum does not match: reported, never returned as data."""

    def __init__(self, table: str, key: bytes) -> None:
        super().__init__(f"stored value in table {table!r} failed its checksum (key {key!r})")
        self.table = table
        self.key = key


class StorageClosed(StorageError):
    """The engine is closed or closing; the request may be retried on another node."""


class Unauthorized(DfsError):
    """An internal endpoint was called without the right cluster secret."""


class NotReady(DfsError):
    """This node does not know all its members yet, so it cannot place data safely."""


class Conflict(DfsError):
    """A cluster operation that contradicts the cluster's state (leave the last member,
    remove a live node, join while holding data)."""


class TooManySiblings(Conflict):
    """A write that would leave a key more concurrent versions than the limit: the client
    must read the key and write back with the context it got, which replaces the siblings
    it saw (dfsring.vclock "Bounds"; Riak refuses past max_siblings too)."""

    def __init__(self, siblings: int, limit: int) -> None:
        super().__init__(f"the write would leave {siblings} siblings, more than the limit "
                         f"of {limit}: read the key and write back with its Dfs-Context to "
                         "resolve them")
        self.siblings = siblings
        self.limit = limit


class StaleRing(DfsError):
    """A coordinator on an older ring sent a key this replica no longer holds: its ack must
    not count, or a lagging coordinator could acknowledge a write only old owners keep."""


class HintsFull(DfsError):
    """A fallback refused a hint: its queue for that owner is at --hint-max-bytes. The
    coordinator tries the next fallback; the write is never acknowledged on a dropped hint."""


class QuorumNotMet(DfsError):
    """Fewer than the required replicas acknowledged in time.

    Carries every replica's outcome so the edge can report needed/acked and operators can see
    which replica failed how.
    """

    def __init__(self, needed: int, acked: int, outcomes: dict[str, str] | None = None) -> None:
        super().__init__(f"quorum not met: needed {needed}, acked {acked}")
        self.needed = needed
        self.acked = acked
        self.outcomes = dict(outcomes or {})
