"""A Toxiproxy-compatible fault proxy in asyncio, for dfsring's fault-injection tests.

It speaks the Toxiproxy 2.x HTTP API (routes, JSON shapes, errors, check order; see
/work/shared/TOXIPROXY.md, the spec this follows) so the toxiproxy-python client drives it
unchanged, and a real ``toxiproxy-server`` can replace it in the same tests.

Modules, from the wire inwards::

    server      FaultProxyServer (async), ThreadedFaultProxy (sync), ``python -m`` entry
    api         HTTP routes, statuses and bodies (aiohttp low-level server)
    collection  the API operations on all proxies, serialised, in Toxiproxy's check order
    proxy       one proxy: listener, connections (accept, dial upstream, two links)
    chain       one proxy's toxic lists and the live links they are applied to
    link        one direction of one connection: reader -> toxic stubs -> writer; re-chaining
    toxics      what each toxic type does to the bytes
    stub        the per-toxic, per-connection channel endpoints and the no-data-loss contract
    spec, wire  pure: toxic types and attributes, JSON decoding, errors, addresses
"""

from dfsring.testing.faultproxy.server import FaultProxyServer, ThreadedFaultProxy

__all__ = ["FaultProxyServer", "ThreadedFaultProxy"]
