"""The errors of dfsring's HTTP client (dfsring.client) and CLI, and the one place that
turns a node's error answer into one of them.

They are the *client's* view of the wire, separate from the node's dfsring.foundation.errors (which
become
HTTP statuses at the node's edge and come back as problem documents). Every one carries
``status``, ``problem_type``, ``title``, ``detail`` and ``request_id`` (None where the node never
answered); the tree is drawn in dfsring.client's docstring, which re-exports them all.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

REQUEST_ID = "Dfs-Request-Id"
PROBLEM_BASE = "https://dfsring.dev/problems/"


class DfsClientError(Exception):
    """Base of the client's errors; the fields are None where the node never answered."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        problem_type: str | None = None,
        title: str | None = None,
        detail: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.problem_type = problem_type
        self.title = title
        self.detail = detail
        self.request_id = request_id


class TransportError(DfsClientError):
    """No (complete) HTTP answer arrived."""


class ConnectionFailed(TransportError):
    """Every base URL was tried and none answered; ``failures`` maps each URL to its error."""

    def __init__(self, failures: dict[str, str]) -> None:
        shown = "; ".join(f"{url}: {why}" for url, why in failures.items())
        super().__init__(f"no dfsring node answered ({shown})")
        self.failures = failures


class OutcomeUnknown(TransportError):
    """A write reached a node but its answer was lost (timeout, reset): it may have been
    applied. Not retried automatically; read the key to find out."""


class SiblingsError(DfsClientError):
    """A single value was asked for, but the key holds concurrent versions (siblings)."""


class UnexpectedResponse(DfsClientError):
    """A success status or body the API does not document: probably not a dfsring node."""


class ProblemError(DfsClientError):
    """The node answered with an error status (and, from dfsring, a problem document).

    ``answers`` and ``answers_problem`` name the status (and problem type slug) a subclass
    stands for; `problem_error` picks the subclass by them.
    """

    answers: ClassVar[int | None] = None
    answers_problem: ClassVar[str | None] = None

    def __init__(self, status: int, doc: dict[str, Any], request_id: str | None) -> None:
        title = str(doc.get("title") or f"HTTP {status}")
        detail = str(doc.get("detail") or "")
        rid = str(doc.get("request_id") or request_id or "") or None
        text = f"{title}: {detail}" if detail else title
        super().__init__(
            f"{text} (status {status}, request_id {rid or 'none'})",
            status=status,
            problem_type=doc.get("type"),
            title=title,
            detail=detail,
            request_id=rid,
        )
        self.document = doc

    @property
    def slug(self) -> str:
        """The problem type without its URL prefix, e.g. ``"invalid-key"``."""
        return (self.problem_type or "").removeprefix(PROBLEM_BASE)


class BadRequestError(ProblemError):
    """400: the node refused the request's names, knobs or context."""

    answers = 400


class NotFoundError(ProblemError):
    """404 where absence is an error: an unknown route (wrong base URL), not a missing key."""

    answers = 404


class PayloadTooLargeError(ProblemError):
    """413: the value exceeds the node's inline limit (the files API is for large data)."""

    answers = 413


class QuorumNotMetError(ProblemError):
    """503 quorum-not-met: fewer than ``needed`` replicas acknowledged (``acked`` did)."""

    answers = 503
    answers_problem = "quorum-not-met"

    def __init__(self, status: int, doc: dict[str, Any], request_id: str | None) -> None:
        super().__init__(status, doc, request_id)
        self.needed = int(doc.get("needed", 0))
        self.acked = int(doc.get("acked", 0))
        self.replicas: dict[str, Any] = dict(doc.get("replicas") or {})


class UnavailableError(ProblemError):
    """503 other than quorum-not-met: the node is stopping; another node may serve."""

    answers = 503


def problem_error(status: int, body: bytes, request_id: str | None) -> ProblemError:
    """The error for a 4xx/5xx answer: the ProblemError subclass that answers its status and
    problem type (one that names the problem first), its document kept as the node sent it."""
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict):  # not from dfsring (a proxy?): keep what there is
        doc = {"detail": body[:200].decode("utf-8", "replace").strip()}
    kind = str(doc.get("type", ""))
    slug = kind.rpartition("/")[2] if "/" in kind else ""
    kinds = [c for c in _problem_classes() if c.answers == status
             and c.answers_problem in (None, slug)]
    kinds.sort(key=lambda c: c.answers_problem is None)
    return (kinds[0] if kinds else ProblemError)(status, doc, request_id)


def _problem_classes() -> list[type[ProblemError]]:
    found, todo = [], list(ProblemError.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found
