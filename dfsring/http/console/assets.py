"""The console's static files, shipped inside the package (dfsring/http/console/static/).

Read with importlib.resources so a regular, non-editable install serves them too
(pyproject.toml declares them as package data). Each is read once and kept: a handful of
small files. Served with a strict Content-Security-Policy: only this node's own scripts,
styles and API (no inline script, nothing from elsewhere).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

ASSETS = {"index.html": "text/html", "app.js": "text/javascript", "app.css": "text/css",
          "docs.html": "text/html", "docs.js": "text/javascript"}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
       "base-uri 'none'; form-action 'self'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


@cache
def read_asset(name: str) -> bytes:
    """One of ASSETS' bytes (KeyError for any other name: the caller answers 404)."""
    if name not in ASSETS:
        raise KeyError(name)
    return (resources.files("dfsring.http.console") / "static" / name).read_bytes()
