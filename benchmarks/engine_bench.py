"""LmdbEngine throughput: group-committed durable puts and single-thread gets.

    python benchmarks/engine_bench.py --seconds 5 --concurrency 16 --value-size 1024

Phase 1: ``--concurrency`` tasks each loop ``apply(put)`` for ``--seconds`` against a durable
engine in a temp dir (every commit fsync'd), so puts/s shows what group commit buys: mean group
size = mutations / commits. Phase 2: random ``get()`` of the written keys for ``--seconds`` on
the event loop thread. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dfsring.storage import LmdbEngine


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each phase")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent apply() tasks")
    parser.add_argument("--value-size", type=int, default=1024, help="bytes per value")
    parser.add_argument("--dir", default=None, help="parent dir for the temp env (default: TMP)")
    parser.add_argument("--no-durable", action="store_true", help="skip fsync (durable=False)")
    return parser.parse_args(argv)


async def _writer(engine: LmdbEngine, worker: int, value: bytes, deadline: float) -> int:
    done = 0
    while time.perf_counter() < deadline:
        key = b"w%03d-%09d" % (worker, done)
        await engine.apply(lambda txn, k=key: txn.put("kv", k, value))
        done += 1
    return done


async def bench_puts(engine: LmdbEngine, args: argparse.Namespace) -> tuple[int, float]:
    value = os.urandom(args.value_size)
    started = time.perf_counter()
    deadline = started + args.seconds
    counts = await asyncio.gather(
        *(_writer(engine, w, value, deadline) for w in range(args.concurrency))
    )
    return sum(counts), time.perf_counter() - started


def bench_gets(engine: LmdbEngine, keys: list[bytes], seconds: float) -> tuple[int, float]:
    rng = random.Random(1)
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for key in rng.choices(keys, k=256):
            if engine.get("kv", key) is None:
                raise AssertionError(f"written key {key!r} missing")
        done += 256
    return done, time.perf_counter() - started


async def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="engine-bench-", dir=args.dir) as tmp:
        engine = LmdbEngine(Path(tmp) / "db", ["kv"], durable=not args.no_durable, map_size=8 << 30)
        try:
            puts, put_secs = await bench_puts(engine, args)
            info = engine.info()
            gets, get_secs = bench_gets(engine, engine.scan_keys("kv"), args.seconds)
        finally:
            await engine.close()
    commits = int(info["commits"])  # type: ignore[call-overload]
    return {
        "puts": puts,
        "puts_per_s": round(puts / put_secs),
        "gets_per_s": round(gets / get_secs),
        "commits": commits,
        "commits_per_s": round(commits / put_secs),
        "mean_group_size": round(puts / commits, 2) if commits else None,
        "largest_group": info["largest_group"],
        "concurrency": args.concurrency,
        "value_size": args.value_size,
        "seconds": args.seconds,
        "durable": not args.no_durable,
        "used_bytes": info["used_bytes"],
    }


def main(argv: list[str] | None = None) -> None:
    print(json.dumps(asyncio.run(run(parse_args(argv)))))


if __name__ == "__main__":
    main()
