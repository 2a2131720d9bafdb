"""Siblings and their resolution, with the dfsring client.

    python examples/siblings.py [URL ...]        (default http://127.0.0.1:7070)

Two writers read the same shopping cart, each adds an item and writes back with the context it
read. Neither write saw the other, so the store keeps both as siblings (Dynamo §4.4: the
client, not the store, knows how to merge a cart). The next reader gets both, merges them with
a callback (the union of the items) and writes the merge back with the context that saw both,
which replaces them. With several URLs the two writers go through different nodes.
Exits 0 when the merged cart holds both items, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dfsring.client import DEFAULT_URL, DfsClient, DfsClientError, GetResult

BUCKET = "examples"


def cart(items: list[str]) -> bytes:
    return json.dumps(sorted(items)).encode()


def items(value: bytes) -> list[str]:
    return list(json.loads(value))


def merge_carts(siblings: list[bytes]) -> bytes:
    """The resolver: a cart holds every item any sibling holds (an add always survives)."""
    return cart(sorted({item for value in siblings for item in items(value)}))


async def add_item(client: DfsClient, name: str, key: str, seen: GetResult, item: str) -> None:
    """One writer: add ``item`` to the cart it read (``seen``) and write it back with that
    read's context, unaware of any other writer."""
    new = cart([*items(seen.value), item])
    result = await client.put(
        BUCKET, key, new, context=seen.context, content_type="application/json"
    )
    print(
        f"{name} via {client.url}: wrote {new.decode()} with the context it read "
        f"(acks {result.acks}/{result.n})"
    )


async def demo(urls: list[str]) -> bool:
    key = f"cart-{secrets.token_hex(4)}"
    # Writer B prefers the second node (if any): its client lists the URLs rotated by one.
    async with DfsClient(urls) as a, DfsClient(urls[1:] + urls[:1]) as b:
        await a.put(BUCKET, key, cart(["milk"]), content_type="application/json")
        print(f"1. seeded {BUCKET}/{key} = {cart(['milk']).decode()} via {a.url}")
        seen = await a.get(BUCKET, key)
        assert seen is not None
        print(f"2. both writers read it; context {seen.context}")
        await add_item(a, "3. writer A", key, seen, "apple")
        await add_item(b, "4. writer B", key, seen, "bread")
        after = await a.get(BUCKET, key)
        assert after is not None
        shown = ", ".join(v.value.decode() for v in after.values)
        print(f"5. reader sees {len(after.values)} sibling(s): {shown}")
        if not after.has_siblings:
            print("   expected two siblings: the second write should not replace the first")
            return False
        result = await a.update(BUCKET, key, lambda values: values[0], resolve=merge_carts)
        print(f"6. merged with merge_carts and wrote back (new context {result.context})")
        final = await a.get(BUCKET, key)
        assert final is not None
        print(f"7. reader sees {final.value.decode()} (siblings: {final.has_siblings})")
        return items(final.value) == ["apple", "bread", "milk"]


def main(argv: list[str]) -> int:
    try:
        ok = asyncio.run(demo(argv or [DEFAULT_URL]))
    except DfsClientError as exc:
        print(f"siblings: {exc}", file=sys.stderr)
        return 1
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
