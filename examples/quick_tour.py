"""A quick tour of the key/value API against a running node.

    python examples/quick_tour.py [http://127.0.0.1:7070]

Start a cluster first (README quick start), and run this from the same directory: the root
credentials `dfsring cluster` wrote are found as the CLI finds them (dfsring.client.credentials)
and sent as `Authorization: Bearer ACCESS:SECRET`. Shows a write, a read with its causal context,
a conflicting write that becomes a sibling, its resolution, listing and a delete.
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp

from dfsring.client.credentials import auth_headers, discover


async def tour(base: str) -> None:
    url = f"{base}/v1/kv/tour/greeting"
    async with aiohttp.ClientSession(headers=auth_headers(discover())) as http:
        async with http.put(url, data=b"hello", headers={"Content-Type": "text/plain"}) as r:
            print("PUT  ->", r.status, "acks", r.headers["Dfs-Acks"])
        async with http.get(url) as r:
            ctx = r.headers["Dfs-Context"]
            print("GET  ->", r.status, await r.text())
        # Two writers that both read `ctx` and write without seeing each other: siblings.
        for value in (b"hello from A", b"hello from B"):
            async with http.put(url, data=value, headers={"Dfs-Context": ctx}) as r:
                print("PUT  ->", r.status, value.decode())
        async with http.get(url) as r:
            doc = await r.json()
            print("GET  ->", r.status, f"{len(doc['siblings'])} siblings")
        # Resolve: write once with the context that saw both.
        async with http.put(url, data=b"hello from A and B",
                            headers={"Dfs-Context": doc["context"]}) as r:
            print("PUT  ->", r.status, "(resolved)")
        async with http.get(url) as r:
            ctx = r.headers["Dfs-Context"]
            print("GET  ->", r.status, await r.text())
        async with http.get(f"{base}/v1/kv/tour", params={"prefix": "greet"}) as r:
            print("LIST ->", r.status, await r.json())
        async with http.delete(url, headers={"Dfs-Context": ctx}) as r:
            print("DEL  ->", r.status)
        async with http.get(url) as r:
            print("GET  ->", r.status, "(deleted)")


if __name__ == "__main__":
    asyncio.run(tour(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:7070"))
