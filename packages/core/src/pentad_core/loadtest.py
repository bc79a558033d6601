"""A bounded load test of a local ``serve`` endpoint: latency percentiles and requests per second.

Each of ``concurrency`` client threads keeps one HTTP/1.1 connection open and sends the same request
until ``requests`` have been sent in all, or ``max_seconds`` have passed. Only 127.0.0.1/localhost
addresses are accepted: this measures the server, never someone else's::

    python -m pentad_core.loadtest --url http://127.0.0.1:8000/v1/classify --body-file digit.png \\
        --content-type image/png --concurrency 1,8,32 --requests 400
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from pentad_core.errors import ConfigError


@dataclass
class LoadResult:
    """One load level: latency percentiles (ms), throughput and failures."""

    concurrency: int
    requests: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` by the nearest-rank method (``nan`` when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-fraction * len(ordered) // 1))))
    return ordered[rank - 1]


def load_test(
    url: str,
    body: bytes | None = None,
    content_type: str = "application/json",
    method: str | None = None,
    concurrency: int = 1,
    requests: int = 100,
    max_seconds: float = 60.0,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """Send ``requests`` requests from ``concurrency`` threads; a non-2xx answer counts as an error.

    Raises:
        ConfigError: If ``url`` is not an http address on this machine.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost"):
        raise ConfigError(f"--url {url}: load tests run against this machine only (http://127.0.0.1:PORT/...).")
    method = method or ("POST" if body is not None else "GET")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    send_headers = {"Content-Type": content_type, **(headers or {})} if body is not None else dict(headers or {})
    latencies: list[float] = []
    errors = 0
    remaining = [requests]
    lock = threading.Lock()
    deadline = time.perf_counter() + max_seconds

    def client() -> None:
        nonlocal errors
        connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=60)
        while True:
            with lock:
                if remaining[0] <= 0 or time.perf_counter() > deadline:
                    break
                remaining[0] -= 1
            start = time.perf_counter()
            try:
                connection.request(method, path, body=body, headers=send_headers)
                response = connection.getresponse()
                response.read()
                ok = 200 <= response.status < 300
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=60)
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                errors += 0 if ok else 1
        connection.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    done = len(latencies)
    return LoadResult(
        concurrency=concurrency,
        requests=done,
        seconds=seconds,
        requests_per_s=done / seconds if seconds else 0.0,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p95_ms=percentile(latencies, 0.95) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        errors=errors,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pentad_core.loadtest``: print one JSON line per concurrency level."""
    parser = argparse.ArgumentParser(prog="python -m pentad_core.loadtest", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="http://127.0.0.1:PORT/route")
    parser.add_argument("--body-file", help="request body (POST); none: GET")
    parser.add_argument("--body", help="request body as text (POST)")
    parser.add_argument("--content-type", default="application/json")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts")
    parser.add_argument("--requests", type=int, default=200, help="requests per concurrency level")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time limit per level")
    parser.add_argument("--header", action="append", default=[], metavar="NAME:VALUE")
    args = parser.parse_args(argv)
    body = Path(args.body_file).read_bytes() if args.body_file else (args.body.encode() if args.body else None)
    headers = dict(item.split(":", 1) for item in args.header)
    for level in (int(part) for part in args.concurrency.split(",")):
        result = load_test(args.url, body, args.content_type, None, level, args.requests, args.max_seconds, headers)
        print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
