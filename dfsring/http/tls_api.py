"""POST /v1/admin/tls/reload: reload this node's certificates without a restart (issue 18).

The same reload as SIGHUP (dfsring.transport.tls.TlsReloader), for operators who reach the
node over its API but not its process (a container, another host), and who want to know
what it serves now: the answer names the new certificate's subject, serial and expiry.
Established connections keep the certificate they were made with; new ones get the new
one. A file that does not load changes nothing, so a failed reload is always safe to retry.

Answers (admin only, dfsring.http.auth.ROUTE_NEEDS): 200 with the certificate now served;
409 conflict when the node runs without TLS (nothing to reload); 400 bad-request naming the
file and why it does not load, the certificates in use being kept.
"""

from __future__ import annotations

import logging

from aiohttp import web

from dfsring.foundation import errors
from dfsring.http.problems import json_doc
from dfsring.transport.tls import TlsFileError, TlsReloader

TLS_RELOADER = web.AppKey("tls_reloader", TlsReloader)
ROUTE = "/v1/admin/tls/reload"
log = logging.getLogger("dfsring.tls")


def setup(app: web.Application, reloader: TlsReloader) -> None:
    app[TLS_RELOADER] = reloader
    app.router.add_post(ROUTE, reload_tls)


async def reload_tls(request: web.Request) -> web.Response:
    """Reload in the event loop, as the SIGHUP handler does: the contexts are only ever
    touched from the loop, and a few small PEM files load in milliseconds."""
    reloader = request.app[TLS_RELOADER]
    if not reloader.enabled:
        raise errors.Conflict("TLS is not configured on this node (no --tls-cert); "
                              "there is nothing to reload")
    try:
        info = reloader.reload()
    except TlsFileError as exc:
        log.error("TLS reload failed; the certificates in use are kept",
                  extra={"fields": {"error": str(exc), "via": "api"}})
        raise errors.BadRequest(f"{exc}; the certificates in use are kept") from exc
    log.info("TLS certificates reloaded", extra={"fields": {
        "subject": info.subject, "serial": f"{info.serial:x}",
        "not_after": info.not_after.isoformat(), "via": "api"}})
    return json_doc({"reloaded": True, "subject": info.subject, "serial": f"{info.serial:x}",
                     "not_after": info.not_after.isoformat().replace("+00:00", "Z")})
