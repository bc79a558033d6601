"""Serving a trained run over HTTP: what every app's ``serve`` verb shares (needs ``pentad-core[serve]``).

A domain describes its service (:class:`Service`: the model card, the routes, the page) and core
wraps it in one FastAPI application with the same behaviour for all five apps:

- ``GET /healthz`` (the process is up), ``GET /readyz`` (the model is loaded and warmed up),
  ``GET /v1/model`` (name, dataset, metrics of the run, input spec, labels), ``GET /metrics``
  (Prometheus text: requests by route and status, latency and batch-size histograms, queue length),
  ``GET /`` the app's page, OpenAPI at ``/docs``.
- ``--api-key`` / ``PENTAD_API_KEY``: every route but the health checks needs
  ``Authorization: Bearer <key>`` (401 otherwise).
- Client errors are one-line JSON ``{"error": "..."}`` with 400/401/404/413/415/422/503, never a 500:
  a body over ``--max-body-mb`` is 413 before it is read, a full queue is 503.
- :class:`Batcher` gathers concurrent requests up to ``--max-batch-size`` or ``--max-wait-ms`` into one
  call of the model and answers each request separately; its queue is bounded.
- uvicorn serves it; SIGTERM stops accepting connections and lets requests in flight finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pentad_core.errors import ConfigError

#: Environment variable holding the API key when ``--api-key`` is not given.
API_KEY_ENV = "PENTAD_API_KEY"
#: Routes answered without the API key (container and load-balancer probes).
OPEN_ROUTES = ("/healthz", "/readyz")
#: Latency histogram buckets, seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class ServeOptions:
    """How ``serve`` runs: the options every app's ``serve`` verb takes."""

    #: Interface to bind; 127.0.0.1 keeps the server local (use 0.0.0.0 in a container).
    host: str = "127.0.0.1"
    #: TCP port.
    port: int = 8000
    #: Bearer token required on every route but /healthz and /readyz (empty: no authentication).
    api_key: str = ""
    #: "onnx" (ONNX Runtime on the run's exported model, exported when missing) or "torch".
    backend: str = "onnx"
    #: "cpu", or "cuda" when a GPU is present and asked for.
    device: str = "cpu"
    #: Most requests run as one batch.
    max_batch_size: int = 32
    #: Longest a request waits for others to join its batch, milliseconds.
    max_wait_ms: float = 5.0
    #: Requests waiting beyond this are answered 503 (the queue never grows without bound).
    max_queue: int = 256
    #: Largest request body accepted, megabytes (413 above).
    max_body_mb: float = 16.0

    def __post_init__(self) -> None:
        if self.backend not in ("onnx", "torch"):
            raise ConfigError(f"--backend must be onnx or torch, got {self.backend!r}.")
        for name in ("max_batch_size", "max_queue"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}.")
        if self.max_wait_ms < 0 or self.max_body_mb <= 0:
            raise ConfigError("--max-wait-ms must be >= 0 and --max-body-mb > 0.")
        if not 0 < self.port < 65536:
            raise ConfigError(f"--port must be 1-65535, got {self.port}.")


def add_serve_arguments(parser: Any) -> None:
    """Add the ``serve`` options to an argparse parser (an app's ``serve`` verb)."""
    defaults = ServeOptions()
    parser.add_argument("--run", metavar="DIR", help="trained run folder to serve (or --checkpoint)")
    parser.add_argument("--host", default=defaults.host, help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=defaults.port, help="TCP port (default 8000)")
    parser.add_argument("--api-key", default=None, help=f"require Authorization: Bearer KEY (or ${API_KEY_ENV})")
    parser.add_argument("--backend", default=defaults.backend, choices=("onnx", "torch"), help="inference backend")
    parser.add_argument("--device", default=defaults.device, help="cpu or cuda")
    parser.add_argument("--max-batch-size", type=int, default=defaults.max_batch_size, help="dynamic batch limit")
    parser.add_argument("--max-wait-ms", type=float, default=defaults.max_wait_ms, help="batching wait (ms)")
    parser.add_argument("--max-queue", type=int, default=defaults.max_queue, help="waiting requests before 503")
    parser.add_argument("--max-body-mb", type=float, default=defaults.max_body_mb, help="largest request body (MB)")


def serve_options(args: Any) -> ServeOptions:
    """The :class:`ServeOptions` of parsed ``serve`` arguments (the API key falls back to the environment)."""
    return ServeOptions(
        host=args.host,
        port=args.port,
        api_key=args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV, ""),
        backend=args.backend,
        device=args.device,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_body_mb=args.max_body_mb,
    )


class ClientError(Exception):
    """A request the service cannot answer: becomes ``{"error": message}`` with ``status``."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class QueueFull(ClientError):
    """The batcher's queue is full: 503, the client may retry."""

    def __init__(self) -> None:
        super().__init__("the server is busy: too many requests are waiting; retry shortly", 503)


class Histogram:
    """A Prometheus histogram: cumulative bucket counts, sum and count."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Record one observation."""
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[index] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        """The exposition lines of this histogram."""
        prefix = f"{labels}," if labels else ""
        out = [f'{name}_bucket{{{prefix}le="{bound:g}"}} {count}' for bound, count in zip(self.buckets, self.counts)]
        out.append(f'{name}_bucket{{{prefix}le="+Inf"}} {self.count}')
        suffix = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{suffix} {self.total:.6f}", f"{name}_count{suffix} {self.count}"]
        return out


class Metrics:
    """The server's counters in Prometheus text format (``GET /metrics``)."""

    def __init__(self, max_batch_size: int) -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.latency: dict[str, Histogram] = {}
        batch_buckets = sorted({1, 2, 4, 8, 16, 32, 64, 128, 256, max_batch_size})
        self.batch_size = Histogram([b for b in batch_buckets if b <= max(max_batch_size, 1)])
        self.queue_length: Callable[[], int] = lambda: 0

    def record(self, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        with self.lock:
            self.requests[(route, status)] = self.requests.get((route, status), 0) + 1
            self.latency.setdefault(route, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def text(self) -> str:
        """The exposition text."""
        with self.lock:
            lines = ["# HELP pentad_requests_total Requests answered, by route and status.",
                     "# TYPE pentad_requests_total counter"]  # fmt: skip
            for (route, status), count in sorted(self.requests.items()):
                lines.append(f'pentad_requests_total{{route="{route}",status="{status}"}} {count}')
            lines += ["# HELP pentad_request_seconds Request latency.", "# TYPE pentad_request_seconds histogram"]
            for route, histogram in sorted(self.latency.items()):
                lines += histogram.lines("pentad_request_seconds", f'route="{route}"')
            lines += ["# HELP pentad_batch_size Requests per model call.", "# TYPE pentad_batch_size histogram"]
            lines += self.batch_size.lines("pentad_batch_size")
            lines += ["# HELP pentad_queue_length Requests waiting for a batch.", "# TYPE pentad_queue_length gauge"]
            lines.append(f"pentad_queue_length {self.queue_length()}")
        return "\n".join(lines) + "\n"


@dataclass
class _Pending:
    item: Any
    future: asyncio.Future


class Batcher:
    """Runs ``predict_batch`` on batches of concurrent requests (dynamic batching).

    A request waits at most ``max_wait_ms`` for others; a batch never exceeds ``max_batch_size``;
    more than ``max_queue`` waiting requests are refused with :class:`QueueFull` (503). The model
    runs in a worker thread, one batch at a time, so the event loop keeps accepting requests.

    Args:
        predict_batch: ``list of items -> list of results`` (same length, same order); a
            :class:`ClientError` raised for the batch is retried item by item, so one bad request
            does not fail the others.
        max_batch_size: Items per call at most.
        max_wait_ms: How long the first item of a batch waits for more.
        max_queue: Waiting items before :class:`QueueFull`.
        metrics: Where batch sizes and the queue length are recorded.
    """

    def __init__(
        self,
        predict_batch: Callable[[list[Any]], list[Any]],
        max_batch_size: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 256,
        metrics: Metrics | None = None,
    ) -> None:
        self.predict_batch = predict_batch
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.metrics = metrics
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task | None = None

    @property
    def waiting(self) -> int:
        """Requests in the queue now."""
        return self._queue.qsize() if self._queue is not None else 0

    async def start(self) -> None:
        """Start the batching loop on the running event loop."""
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Stop the loop (requests in flight have been answered by then: uvicorn drains first)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, item: Any) -> Any:
        """Queue one item and wait for its result.

        Raises:
            QueueFull: When ``max_queue`` requests are already waiting.
            ClientError: When the item itself is bad.
        """
        if self._queue is None:
            await self.start()
        assert self._queue is not None
        if self._queue.qsize() >= self.max_queue:
            raise QueueFull()
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(item, future))
        return await future

    async def _loop(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            deadline = time.perf_counter() + self.max_wait
            while len(batch) < self.max_batch_size:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            if self.metrics is not None:
                with self.metrics.lock:
                    self.metrics.batch_size.observe(len(batch))
            await self._run(batch)

    async def _run(self, batch: list[_Pending]) -> None:
        items = [pending.item for pending in batch]
        try:
            results = await asyncio.to_thread(self.predict_batch, items)
        except ClientError:
            if len(batch) > 1:  # find the bad one: every other request still gets its answer
                for pending in batch:
                    await self._run([pending])
                return
            results = None
            error: BaseException = _current_error()
        except Exception as failure:  # a server fault: every request of the batch gets a 500
            results, error = None, failure
        for index, pending in enumerate(batch):
            if pending.future.done():
                continue
            if results is None:
                pending.future.set_exception(error)
            else:
                pending.future.set_result(results[index])


def _current_error() -> BaseException:
    import sys

    error = sys.exc_info()[1]
    return error if error is not None else RuntimeError("unknown error")


@dataclass
class Service:
    """What a domain serves: its model card, its routes and its page.

    Attributes:
        name: The app (``"vision"``); the page title and metrics use it.
        model_card: ``GET /v1/model``: name, dataset, metrics of the run, input spec, labels.
        add_routes: ``(router, context) -> None``: adds the domain's ``/v1/...`` routes to a FastAPI
            router; ``context`` is the :class:`ServeContext` (batchers, options).
        batchers: Named batch functions, each wrapped in a :class:`Batcher` (``context.batchers[name]``).
        page: HTML of ``GET /`` (self-contained: no external assets).
        warmup: Called once before ``/readyz`` turns ready (e.g. one prediction).
    """

    name: str
    model_card: dict[str, Any]
    add_routes: Callable[[Any, ServeContext], None]
    batchers: dict[str, Callable[[list[Any]], list[Any]]] = field(default_factory=dict)
    page: str = ""
    warmup: Callable[[], None] | None = None


@dataclass
class ServeContext:
    """What a domain's routes use: the options, the batchers, the metrics."""

    options: ServeOptions
    batchers: dict[str, Batcher]
    metrics: Metrics
    ready: threading.Event


def create_app(service: Service, options: ServeOptions) -> Any:
    """The FastAPI application serving ``service`` with ``options``."""
    from fastapi import APIRouter, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    metrics = Metrics(options.max_batch_size)
    batchers = {
        name: Batcher(function, options.max_batch_size, options.max_wait_ms, options.max_queue, metrics)
        for name, function in service.batchers.items()
    }
    metrics.queue_length = lambda: sum(batcher.waiting for batcher in batchers.values())
    ready = threading.Event()
    context = ServeContext(options, batchers, metrics, ready)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any):
        for batcher in batchers.values():
            await batcher.start()
        if service.warmup is not None:
            await asyncio.to_thread(service.warmup)
        ready.set()
        yield
        ready.clear()
        for batcher in batchers.values():
            await batcher.stop()

    from importlib.metadata import version

    app = FastAPI(title=f"pentad {service.name}", version=version("pentad-core"), lifespan=lifespan)
    limit = int(options.max_body_mb * 1024 * 1024)

    def error(message: str, status: int) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable) -> Any:
        start = time.perf_counter()
        route = request.url.path
        if options.api_key and route not in OPEN_ROUTES:
            expected = f"Bearer {options.api_key}"
            if request.headers.get("authorization", "") != expected:
                response = error("missing or wrong API key: send Authorization: Bearer <key>", 401)
                metrics.record(route, 401, time.perf_counter() - start)
                return response
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            response = error(f"request body over {options.max_body_mb:g} MB", 413)
        else:
            try:
                response = await call_next(request)
            except Exception:  # a fault of the server, never the client's: logged by uvicorn
                response = error("internal error", 500)
        metrics.record(route, response.status_code, time.perf_counter() - start)
        return response

    @app.exception_handler(ClientError)
    async def client_error(request: Request, exception: ClientError) -> JSONResponse:
        return error(exception.message, exception.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exception: RequestValidationError) -> JSONResponse:
        first = exception.errors()[0] if exception.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return error(f"{where}: {first.get('msg', 'invalid request')}".strip(": "), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exception: StarletteHTTPException) -> JSONResponse:
        return error(str(exception.detail), exception.status_code)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=None)
    async def readyz() -> JSONResponse:
        """The model is loaded and warmed up."""
        if not ready.is_set():
            return error("warming up", 503)
        return JSONResponse({"status": "ready"})

    @app.get("/v1/model")
    async def model() -> dict[str, Any]:
        """The served run: model, dataset, metrics, input spec, labels."""
        return _json_safe(service.model_card)

    @app.get("/metrics", response_model=None)
    async def prometheus() -> PlainTextResponse:
        """Request counts, latency and batch-size histograms, queue length (Prometheus text format)."""
        return PlainTextResponse(metrics.text(), media_type="text/plain; version=0.0.4")

    @app.get("/", response_class=HTMLResponse, response_model=None)
    async def page() -> HTMLResponse:
        """The app's page."""
        return HTMLResponse(service.page or f"<h1>pentad {service.name}</h1><p>See <a href='docs'>/docs</a>.</p>")

    router = APIRouter()
    service.add_routes(router, context)
    app.include_router(router)
    return app


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def run_server(service: Service, options: ServeOptions, log: Callable[[str], None] = print) -> None:
    """Serve until SIGINT/SIGTERM; requests in flight finish before the process exits."""
    try:
        import uvicorn
    except ModuleNotFoundError:
        raise ConfigError("serving needs the serve extra: pip install 'pentad-core[serve]'.") from None
    app = create_app(service, options)
    log(f"serving {service.name} on http://{options.host}:{options.port} (backend {options.backend}); Ctrl-C stops")
    uvicorn.run(app, host=options.host, port=options.port, log_level="warning", timeout_graceful_shutdown=30)


def media_type(content_type: str | None) -> str:
    """``"Multipart/Form-Data; boundary=x"`` -> ``"multipart/form-data"`` (lower case, no parameters)."""
    return (content_type or "").split(";")[0].strip().lower()


async def read_body(request: Any, options: ServeOptions) -> bytes:
    """The request body, read in chunks up to ``--max-body-mb`` (413 beyond).

    The middleware refuses a too-large ``Content-Length`` before reading; a chunked body has none, so
    routes that take a body read it through here to bound it as well.
    """
    limit = int(options.max_body_mb * 1024 * 1024)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ClientError(f"request body over {options.max_body_mb:g} MB", 413)
    return bytes(body)


async def read_json(request: Any, options: ServeOptions) -> Any:
    """The JSON body of ``request``: 415 for another content type, 413 over the limit, 422 when it does not parse."""
    if media_type(request.headers.get("content-type")) != "application/json":
        raise ClientError("send the body as application/json", 415)
    body = await read_body(request, options)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ClientError("the body is not valid JSON", 422) from None


async def read_multipart(request: Any, options: ServeOptions, *, max_files: int, max_fields: int) -> Any:
    """The multipart form of ``request`` (Starlette's ``FormData``), its body bounded as by :func:`read_body`.

    Raises:
        ClientError: 415 when the body is not ``multipart/form-data``, 413 over the limit, 422 when the
            form is malformed or has more than ``max_files`` files or ``max_fields`` fields.
    """
    from starlette.formparsers import MultiPartException, MultiPartParser

    if media_type(request.headers.get("content-type")) != "multipart/form-data":
        raise ClientError("send multipart/form-data", 415)
    body = await read_body(request, options)

    async def whole() -> Any:
        yield body

    try:
        return await MultiPartParser(request.headers, whole(), max_files=max_files, max_fields=max_fields).parse()
    except MultiPartException as error:
        raise ClientError(f"malformed multipart body: {error.message}", 422) from None


def serving_export(
    run_folder: str | Path,
    checkpoint: str | Path,
    export: Callable[[Path], dict[str, Any]],
    log: Callable[[str], None] = print,
) -> Path:
    """The ONNX model ``serve`` runs for ``checkpoint``, exported once and reused while it is the same checkpoint.

    ``<run>/serve/<checkpoint stem>.onnx`` with a JSON stamp beside it (the checkpoint's SHA-256 and
    the export's report). A missing or stale file (another checkpoint's) is exported again by
    ``export(path) -> report``, the app's export code with its parity check; a run folder that
    cannot be written exports into the system's temporary folder instead.

    Raises:
        ConfigError: If no folder can be written.
    """
    import hashlib
    import tempfile

    from pentad_core.files import atomic_write_json

    checkpoint = Path(checkpoint)
    digest = hashlib.sha256()
    with checkpoint.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    sha256 = digest.hexdigest()
    folders = (Path(run_folder) / "serve", Path(tempfile.gettempdir()) / "pentad-serve" / sha256[:16])
    for folder in folders:
        path, stamp = folder / f"{checkpoint.stem}.onnx", folder / f"{checkpoint.stem}.json"
        try:
            if path.is_file() and json.loads(stamp.read_text(encoding="utf-8")).get("checkpoint_sha256") == sha256:
                log(f"ONNX model: {path} (exported from this checkpoint before)")
                return path
        except (OSError, ValueError):
            pass
        try:
            folder.mkdir(parents=True, exist_ok=True)
            report = export(path)
            atomic_write_json(stamp, {"checkpoint": str(checkpoint.resolve()), "checkpoint_sha256": sha256, **report})
        except OSError as error:
            log(f"cannot write the ONNX export into {folder} ({error.strerror or error}); trying another folder")
            continue
        log(f"exported {checkpoint.name} to {path} with the parity check")
        return path
    raise ConfigError("no writable folder for the ONNX export.", "Serve with --backend torch.")


def onnx_session(path: str | Path, device: str = "cpu") -> Any:
    """An ONNX Runtime session for ``path`` on ``device`` (CUDA provider first when asked and present)."""
    import onnxruntime

    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(str(path), options, providers=providers)
