"""The cost of checking a request's credentials: SigV4 against a Bearer secret, same run.

    python -m benchmarks.sigv4_bench --iterations 5000

Times, in CPU µs per request (process time, best of --repeats runs of --iterations calls, so
that other processes sharing the cores inflate the figures as little as possible):

- sigv4 header: `sigv4.verify` of a header-signed GET with 5 signed headers (host,
  x-amz-content-sha256, x-amz-date, range, x-amz-meta-client) among 9 received;
- sigv4 presigned: `sigv4.verify` of a presigned GET with a 2-parameter query;
- "+ parse": the same with `authparse.parse_credentials` of the request first, as the node
  does for each request;
- bearer: `hmac.compare_digest` of the secret sent against the stored one, the whole cost of
  checking a Bearer or X-Api-Key credential once the key is looked up.

The difference is the latency SigV4 adds per request (issue 18 asks for it). Prints a table,
then the figures as one JSON document. Pure CPU, no I/O; bounded by --iterations.
"""

from __future__ import annotations

import argparse
import hmac
import json
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

from multidict import CIMultiDict

from dfsring.core import sigv4
from dfsring.core.authparse import SigV4Credential, parse_credentials

ACCESS, SECRET, REGION = "DKbench0000000000001", "s" * 40, "us-east-1"
NOW = 1_790_000_000.0
URL = "http://node1.example:9000/v1/kv/photos/2026/holiday%20pics/img_0001.jpg"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if not 1 <= args.iterations <= 1_000_000 or not 1 <= args.repeats <= 20:
        parser.error("--iterations must be 1..1000000 and --repeats 1..20")
    return args


def header_signed() -> tuple[str, str, list[tuple[str, str]]]:
    signed = {"Range": "bytes=0-1023", "X-Amz-Meta-Client": "bench"}
    added = sigv4.sign_headers("GET", URL, signed, access_key=ACCESS, secret_key=SECRET,
                               region=REGION, now_s=NOW)
    headers = [("Host", "node1.example:9000"), ("User-Agent", "bench/1.0"), ("Accept", "*/*"),
               ("Accept-Encoding", "gzip, deflate"), *signed.items(), *added.items()]
    parts = urlsplit(URL)
    return parts.path, parts.query, headers


def presigned() -> tuple[str, str, list[tuple[str, str]]]:
    url = sigv4.presign("GET", URL + "?versionId=3&partNumber=1", access_key=ACCESS,
                        secret_key=SECRET, region=REGION, now_s=NOW, expires_s=3600)
    parts = urlsplit(url)
    return parts.path, parts.query, [("Host", "node1.example:9000"), ("Accept", "*/*")]


def verifier(request: tuple[str, str, list[tuple[str, str]]],
             parse: bool) -> Callable[[], object]:
    path, query, headers = request
    multi = CIMultiDict(headers)
    pairs = parse_qsl(query, keep_blank_values=True)
    parsed = parse_credentials(multi, pairs)
    assert isinstance(parsed, SigV4Credential)

    def once() -> object:
        cred = parse_credentials(multi, pairs) if parse else parsed
        assert isinstance(cred, SigV4Credential)
        return sigv4.verify(cred, method="GET", raw_path=path, raw_query=query,
                            headers=headers, secret_key=SECRET, region=REGION, now_s=NOW)
    return once


def bearer() -> Callable[[], object]:
    stored, sent = SECRET.encode(), SECRET.encode()
    return lambda: hmac.compare_digest(sent, stored)


def best_us(call: Callable[[], object], iterations: int, repeats: int) -> float:
    call()  # a first call outside the timing (imports, caches)
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time_ns()
        for _ in range(iterations):
            call()
        best = min(best, (time.process_time_ns() - start) / iterations / 1000)
    return best


def run(args: argparse.Namespace) -> dict[str, float]:
    cases = {
        "sigv4 header (5 signed headers)": verifier(header_signed(), parse=False),
        "sigv4 header + parse": verifier(header_signed(), parse=True),
        "sigv4 presigned": verifier(presigned(), parse=False),
        "sigv4 presigned + parse": verifier(presigned(), parse=True),
        "bearer compare_digest": bearer(),
    }
    return {name: round(best_us(call, args.iterations, args.repeats), 2)
            for name, call in cases.items()}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    figures = run(args)
    width = max(map(len, figures))
    print(f"{'case':<{width}}  CPU µs/request")
    for name, us in figures.items():
        print(f"{name:<{width}}  {us:>14.2f}")
    print(json.dumps({"iterations": args.iterations, "repeats": args.repeats,
                      "us_per_request": figures}))


if __name__ == "__main__":
    main()
