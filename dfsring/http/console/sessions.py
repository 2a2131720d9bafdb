"""Console sessions: a random token per login, kept in a bounded in-memory table per node.

Why per node and not a signed token any node verifies: the console talks only to the node that
served it, and a table lets logout and expiry be exact. A node restart logs everyone out, which
is acceptable for an operator's console. Each session keeps the key pair it logged in with, and
every request re-authenticates with it (dfsring.http.auth), so a key disabled, deleted or
rotated ends its sessions at once. Never written anywhere, never logged.

CSRF: the session cookie is HttpOnly and SameSite=Strict; a state-changing request must also
carry the ``X-Csrf-Token`` header equal to the session's CSRF token, which the page reads from
the (not HttpOnly) ``dfs_csrf`` cookie: a double-submit token another site can neither read
nor send.

Bounded: at most MAX_SESSIONS (the oldest is dropped first), each living TTL_S from login.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass

SESSION_COOKIE = "dfs_session"
CSRF_COOKIE = "dfs_csrf"
CSRF_HEADER = "X-Csrf-Token"
MAX_SESSIONS = 10_000
TTL_S = 12 * 3600.0
TOKEN_BYTES = 32
MAX_TOKEN_CHARS = 128


@dataclass(frozen=True)
class Session:
    token: str
    csrf: str
    access_key: str
    secret_key: str
    expires_s: float

    def csrf_ok(self, header: str | None) -> bool:
        return header is not None and hmac.compare_digest(header.encode(), self.csrf.encode())


class SessionTable:
    """token -> Session; time is passed in (monotonic seconds) so tests need no clock."""

    def __init__(self, max_sessions: int = MAX_SESSIONS, ttl_s: float = TTL_S) -> None:
        self.max_sessions, self.ttl_s = max_sessions, ttl_s
        self._by_token: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_token)

    def create(self, access_key: str, secret_key: str, now_s: float) -> Session:
        session = Session(secrets.token_urlsafe(TOKEN_BYTES), secrets.token_urlsafe(TOKEN_BYTES),
                          access_key, secret_key, now_s + self.ttl_s)
        self._by_token[session.token] = session
        while len(self._by_token) > self.max_sessions:
            self._by_token.popitem(last=False)
        return session

    def get(self, token: str | None, now_s: float) -> Session | None:
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        session = self._by_token.get(token)
        if session is None:
            return None
        if session.expires_s <= now_s:
            del self._by_token[token]
            return None
        return session

    def drop(self, token: str | None) -> None:
        if token:
            self._by_token.pop(token, None)
