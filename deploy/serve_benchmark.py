"""Serve a trained run and measure it: latency and throughput at concurrency 1, 8 and 32, batch-1
serving beside dynamic batching, and the in-process limit (the service's own batch function on
ONNX Runtime, no HTTP) at the same batch size. Localhost only, bounded in requests and time.

    uv run python deploy/serve_benchmark.py vision --run runs/serve-bench/vision --body digit.png \\
        --content-type image/png --route /v1/classify
    uv run python deploy/serve_benchmark.py recsys --run runs/serve-bench/recsys --route "/v1/recommend?user=196&k=10"

Prints one JSON object; docs/benchmarks.md records the numbers with the command, machine and date.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from pentad_core.loadtest import load_test


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(app: str, run: str, *extra: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    command = [sys.executable, f"apps/{app}", "serve", "--run", run, "--port", str(port), *extra]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(process.stderr.read().decode())
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                if response.status == 200:
                    return process, port
        except OSError:
            time.sleep(0.5)
    raise SystemExit("the server never became ready")


def measure(app: str, run: str, route: str, body: bytes | None, content_type: str, requests: int, extra=()) -> list:
    process, port = start(app, run, *extra)
    try:
        url = f"http://127.0.0.1:{port}{route}"
        load_test(url, body, content_type, concurrency=4, requests=20)  # warm the connections and the model
        levels = []
        for concurrency in (1, 8, 32):
            result = load_test(url, body, content_type, concurrency=concurrency, requests=requests, max_seconds=90)
            levels.append(result.__dict__)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        values = {line.split()[0]: float(line.split()[-1]) for line in metrics.splitlines() if line[:1] != "#"}
        calls, answered = values["pentad_batch_size_count"], values["pentad_batch_size_sum"]
        return [levels, answered / calls if calls else 0.0]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def in_process_limit(app: str, run: str, body: bytes | None, route: str, batch: int, seconds: float = 10.0) -> float:
    """Items per second of the service's batch function on ONNX Runtime, ``batch`` items per call."""
    from pentad_core.serving import ServeOptions

    options = ServeOptions(backend="onnx")
    if app == "vision":
        from pentad_vision.serving import build_service, decode_upload

        service = build_service(run, options, log=lambda _: None)
        card = service.model_card["inputs"]
        item = decode_upload("x", body, card["image_size"], card["channels"])
        function, items = service.batchers["classify"], [item] * batch
    elif app == "medseg":
        from pentad_medseg.serving import build_service, decode_upload

        service = build_service(run, options, log=lambda _: None)
        item = decode_upload(body, None, service.model_card["inputs"]["channels"], False).image
        function, items = service.batchers["segment"], [item] * batch
    elif app == "recsys":
        from urllib.parse import parse_qs, urlsplit

        from pentad_recsys.predictor import Predictor
        from pentad_recsys.serving import build_service

        service = build_service(run, options, log=lambda _: None)
        query = parse_qs(urlsplit(route).query)
        index = Predictor.from_run(run).recommender.user_map.index(query["user"][0], "user")
        function, items = service.batchers["recommend"], [(index, int(query.get("k", ["10"])[0]), True)] * batch
    else:
        raise SystemExit(f"no in-process limit for {app}")
    function(items)  # warm-up
    done, start_time = 0, time.perf_counter()
    while time.perf_counter() - start_time < seconds:
        function(items)
        done += batch
    return done / (time.perf_counter() - start_time)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("app", choices=("vision", "medseg", "recsys"))
    parser.add_argument("--run", required=True)
    parser.add_argument("--route", required=True)
    parser.add_argument("--body", help="request body file (POST)")
    parser.add_argument("--content-type", default="application/json")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--image", help="the raw image inside --body, for the in-process limit (default: --body)")
    args = parser.parse_args()
    body = Path(args.body).read_bytes() if args.body else None
    dynamic, mean_batch = measure(args.app, args.run, args.route, body, args.content_type, args.requests)
    single, _ = measure(args.app, args.run, args.route, body, args.content_type, args.requests,
                        ("--max-batch-size", "1"))  # fmt: skip
    raw = Path(args.image).read_bytes() if args.image else body
    limit = in_process_limit(args.app, args.run, raw, args.route, batch=32)
    print(json.dumps({"app": args.app, "dynamic": dynamic, "mean_batch": mean_batch, "batch_1": single,
                      "in_process_items_per_s_batch_32": limit}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
