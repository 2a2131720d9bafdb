"""``Expect: 100-continue`` on the node's own listeners, answered without echoing the value.

aiohttp's default expect handler answers any other Expect value with a 417 whose text echoes
the value. aiohttp decodes header bytes with surrogateescape, so a value that is not UTF-8
made that text unencodable: a 500 with a traceback in the log, before any middleware could
turn it into a problem document (the HTTP fuzz suite found it). This handler behaves the
same for 100-continue and refuses anything else with a fixed ASCII text.
"""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11

REFUSED = "only Expect: 100-continue is supported"


async def expect_continue(request: web.Request) -> None:
    expect = request.headers.get(hdrs.EXPECT, "")
    if request.version != HttpVersion11:
        return
    if expect.lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=REFUSED)
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the body has not started


def install(app: web.Application) -> None:
    """Give every route of ``app`` this handler. aiohttp takes an expect handler per route
    at registration only; setting it afterwards reaches every route wherever it was added."""
    for route in app.router.routes():
        if isinstance(route, web.ResourceRoute):
            route._expect_handler = expect_continue
