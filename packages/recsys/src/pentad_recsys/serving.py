"""``serve``: a trained recsys run over HTTP on pentad_core's serving core.

Endpoints (besides core's ``/healthz``, ``/readyz``, ``/v1/model``, ``/metrics``, ``/docs`` and the page at ``/``):

- ``GET /v1/recommend?user=ID&k=10[&exclude_seen=true]``: the ``k`` best items for a known user, with
  titles, the items the user interacted with in training excluded. Concurrent requests are gathered by
  the ``recommend`` batcher into one ``score_all`` call (one model run for all their users). An
  **unknown user** gets the cold-start answer: the ``k`` items with the most training interactions
  (``score`` = that count, ties by raw id order) and ``"cold_start": true``; never an error.
- ``GET /v1/similar?item=ID&k=10``: the ``k`` nearest items by cosine similarity of the item vectors
  (404 for an unknown item; 501 for a model without item vectors, i.e. ``popularity``).
- ``POST /v1/score``: a JSON list of ``[user, item]`` pairs (or ``{"user":, "item":}`` objects, or
  ``{"pairs": [...]}``) -> ``{"scores": [...]}``, ratings for a rating run, relevance scores for a
  ranking run; an unknown user or item is a 404 naming it; at most :data:`MAX_PAIRS` pairs.

Backends: ``onnx`` (default) runs the scoring network the ``export`` verb writes (``users``, ``items``
-> ``score``) in ONNX Runtime: the newest ``<run>/export/<time>/model.onnx`` or ``<run>/serve/model.onnx``
whose scores match the checkpoint's (the parity probe of :func:`pentad_recsys.pipeline.parity_pairs`),
else a fresh export with the parity check into ``<run>/serve/model.onnx``. ``torch`` scores with the
:class:`~pentad_recsys.predictor.Predictor`'s recommender. A model registered ``exportable=False``
is served with torch and says so. Item vectors for ``similar``, the seen items and the popularity
counts come from the checkpoint; the training data is never read.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import Query, Request

from pentad_core.errors import ConfigError, PentadError
from pentad_core.predictor import locate_run
from pentad_core.serving import ClientError, ServeContext, ServeOptions, Service, onnx_session, read_json
from pentad_recsys.predictor import Predictor, Recommender
from pentad_recsys.registry import MODELS

#: Largest ``k`` accepted (also capped by the catalogue size).
K_MAX = 1000
#: Most ``(user, item)`` pairs one ``POST /v1/score`` may hold.
MAX_PAIRS = 10_000
#: Pairs per ONNX Runtime call when scoring a whole catalogue for a batch of users.
PAIRS_PER_CALL = 262_144


class TorchScorer:
    """Scores with the checkpoint's PyTorch model (the Predictor's code path), on ``device``."""

    backend = "torch"

    def __init__(self, recommender: Recommender, device: str = "cpu") -> None:
        self.recommender, self.device = recommender, torch.device(device)
        recommender.model.to(self.device).eval()

    def score_all(self, users: np.ndarray) -> np.ndarray:
        """``[B]`` internal users -> ``[B, num_items]`` scores."""
        tensor = torch.as_tensor(users, dtype=torch.long, device=self.device)
        return self.recommender.score_all(tensor).float().cpu().numpy()

    @torch.no_grad()
    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``[N]`` internal user and item ids -> ``[N]`` ratings or scores."""
        u = torch.as_tensor(users, dtype=torch.long, device=self.device)
        i = torch.as_tensor(items, dtype=torch.long, device=self.device)
        return self.recommender._output(self.recommender.model(u, i)).float().cpu().numpy()


class OnnxScorer:
    """Scores with the exported scoring network in ONNX Runtime (``users``, ``items`` -> ``score``)."""

    backend = "onnx"

    def __init__(self, session: Any, num_items: int) -> None:
        self.session, self.num_items = session, num_items

    def score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``[N]`` internal user and item ids -> ``[N]`` ratings or scores."""
        feeds = {"users": np.asarray(users, np.int64), "items": np.asarray(items, np.int64)}
        return self.session.run(["score"], feeds)[0].astype(np.float32, copy=False)

    def score_all(self, users: np.ndarray) -> np.ndarray:
        """``[B]`` internal users -> ``[B, num_items]`` scores (every pair, in chunks of users)."""
        users = np.asarray(users, np.int64)
        per_call = max(1, PAIRS_PER_CALL // self.num_items)
        rows = []
        for start in range(0, len(users), per_call):
            block = users[start : start + per_call]
            pairs = np.repeat(block, self.num_items), np.tile(np.arange(self.num_items, dtype=np.int64), len(block))
            rows.append(self.score_pairs(*pairs).reshape(len(block), self.num_items))
        return np.concatenate(rows) if rows else np.zeros((0, self.num_items), np.float32)


def _parity_gap(recommender: Recommender, session: Any) -> float:
    """Largest difference between ``session``'s scores and the checkpoint's on the parity probe."""
    from pentad_recsys.pipeline import ScoringModel, parity_pairs

    users, items = parity_pairs(recommender)
    with torch.no_grad():
        expected = ScoringModel(recommender).eval()(users, items).numpy()
    produced = OnnxScorer(session, len(recommender.item_map)).score_pairs(users.numpy(), items.numpy())
    return float(np.abs(expected.astype(np.float64) - produced).max()) if len(expected) else 0.0


def onnx_model(folder: Path, recommender: Recommender, device: str, log: Callable[[str], None]) -> tuple[Any, Path]:
    """An ONNX Runtime session of the run's scoring network and its file: the newest export (or the
    serve cache) whose scores match the checkpoint's, else a fresh export into ``<folder>/serve/``."""
    from pentad_recsys.pipeline import export_scoring_onnx

    exports = sorted(folder.glob("export/*/model.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    cache = folder / "serve" / "model.onnx"
    for path in [*exports, cache]:
        if not path.is_file():
            continue
        try:
            session = onnx_session(path, device)
            if _parity_gap(recommender, session) <= 1e-3:
                return session, path
        except Exception:  # another checkpoint's export (other table sizes) or an unreadable file
            pass
        log(f"{path} does not match the checkpoint's scores: not used")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        probe = cache.parent / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError:  # a read-only run (a mounted volume): the export lives as long as the process
        cache = Path(tempfile.mkdtemp(prefix="pentad-recsys-serve-")) / "model.onnx"
        log(f"{folder} is not writable: the export goes to {cache}")
    log(f"exporting the scoring network to {cache} (with the parity check)")
    export_scoring_onnx(recommender, cache)
    return onnx_session(cache, device), cache


def _parse_id(value: Any, what: str, position: int) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ClientError(f"pair {position}: {what} must be an integer or a string id, got {value!r}", 422)
    return value


def parse_pairs(body: Any) -> list[tuple[int | str, int | str]]:
    """``[[user, item], ...]``, ``[{"user": u, "item": i}, ...]`` or ``{"pairs": [...]}`` -> pairs.

    Raises:
        ClientError: 422 for any other shape, an id that is neither an integer nor a string, an
            empty list or more than :data:`MAX_PAIRS` pairs.
    """
    if isinstance(body, dict) and set(body) == {"pairs"}:
        body = body["pairs"]
    shape = 'a JSON list of [user, item] pairs or {"user": ..., "item": ...} objects'
    if not isinstance(body, list):
        raise ClientError(f"the body must be {shape}", 422)
    if not body or len(body) > MAX_PAIRS:
        raise ClientError(f"send 1 to {MAX_PAIRS} pairs, got {len(body)}", 422)
    pairs = []
    for position, pair in enumerate(body):
        if isinstance(pair, dict) and set(pair) == {"user", "item"}:
            pair = [pair["user"], pair["item"]]
        if not isinstance(pair, list) or len(pair) != 2:
            raise ClientError(f"pair {position} is not [user, item]: the body must be {shape}", 422)
        pairs.append((_parse_id(pair[0], "user", position), _parse_id(pair[1], "item", position)))
    return pairs


def popular_items(recommender: Recommender) -> tuple[np.ndarray, np.ndarray]:
    """Internal items by training count, most first (ties by index = raw id order), and the counts."""
    counts = np.bincount(recommender.seen_items, minlength=len(recommender.item_map))
    order = np.lexsort((np.arange(len(counts)), -counts))
    return order, counts[order]


def _top(scores: torch.Tensor, k: int) -> list[int]:
    return torch.topk(scores, min(k, int(torch.isfinite(scores).sum()))).indices.tolist()


def build_service(source: str | Path, options: ServeOptions, log: Callable[[str], None] = print) -> Service:
    """The recsys :class:`~pentad_core.serving.Service` of a run folder or checkpoint.

    Raises:
        CheckpointError: Missing, unreadable or foreign checkpoint.
        ConfigError: A model that cannot be exported when ``--backend onnx`` cannot fall back.
    """
    predictor = Predictor.from_run(source)
    run = locate_run(source, Predictor.checkpoint_names)
    recommender = predictor.recommender
    name = recommender.model_name
    num_items = len(recommender.item_map)
    k_max = min(K_MAX, num_items)
    titles = recommender.item_titles
    seen: dict[int, torch.Tensor] = {}
    order = np.argsort(recommender.seen_users, kind="stable")
    bounds = np.searchsorted(recommender.seen_users[order], np.arange(len(recommender.user_map) + 1))
    for user in range(len(recommender.user_map)):
        seen[user] = torch.as_tensor(recommender.seen_items[order[bounds[user] : bounds[user + 1]]])
    popular, counts = popular_items(recommender)
    with torch.no_grad():
        vectors = recommender.model.item_embeddings()
        vectors = None if vectors is None else torch.nn.functional.normalize(vectors.detach().float().cpu(), dim=1)

    device = options.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        log(f"--device {device}: no GPU is available; serving on the CPU")
        device = "cpu"
    info = MODELS.info(name)
    scorer: TorchScorer | OnnxScorer
    onnx_file: Path | None = None
    if options.backend == "onnx" and not info.exportable:
        log(f"model {name!r} cannot be exported to ONNX (exportable=False): serving with the torch backend")
        scorer = TorchScorer(recommender, device)
    elif options.backend == "onnx":
        try:
            session, onnx_file = onnx_model(run.folder, recommender, device, log)
        except ConfigError as error:
            log(f"{error.message}: serving with the torch backend")
            scorer = TorchScorer(recommender, device)
        else:
            scorer = OnnxScorer(session, num_items)
            log(f"ONNX Runtime on {onnx_file}")
    else:
        scorer = TorchScorer(recommender, device)

    def entry(index: int, score: float) -> dict[str, Any]:
        title = titles[index] if titles else None
        return {"item": recommender.item_map.raw(index), "score": float(score), "title": title}

    def recommend_batch(requests: list[tuple[int, int, bool]]) -> list[list[dict[str, Any]]]:
        """One ``score_all`` for the users of every request in the batch, then each request's top-k."""
        scores = torch.from_numpy(scorer.score_all(np.array([user for user, _, _ in requests], np.int64)))
        answers = []
        for row, (user, k, exclude_seen) in zip(scores, requests):
            row = row.clone()
            if exclude_seen:
                row[seen[user]] = -torch.inf
            answers.append([entry(index, row[index]) for index in _top(row, k)])
        return answers

    def similar_batch(requests: list[tuple[int, int]]) -> list[list[dict[str, Any]]]:
        """Cosine similarity of the requested items to every item, one matrix product for the batch."""
        assert vectors is not None
        similarity = vectors[[item for item, _ in requests]] @ vectors.T
        answers = []
        for row, (item, k) in zip(similarity, requests):
            row[item] = -torch.inf
            answers.append([entry(index, row[index]) for index in _top(row, min(k, num_items - 1))])
        return answers

    def score_batch(requests: list[tuple[np.ndarray, np.ndarray]]) -> list[list[float]]:
        """The pairs of every request in the batch scored in one call."""
        sizes = np.cumsum([len(users) for users, _ in requests])[:-1]
        users = np.concatenate([users for users, _ in requests])
        items = np.concatenate([items for _, items in requests])
        return [part.tolist() for part in np.split(scorer.score_pairs(users, items), sizes)]

    def check_k(k: int) -> int:
        if not 1 <= k <= k_max:
            raise ClientError(f"k must be an integer from 1 to {k_max}, got {k}", 422)
        return k

    def resolve(id_map: Any, raw: Any, what: str) -> int:
        try:
            return id_map.index(raw, what)
        except PentadError:
            raise ClientError(f"unknown {what} {raw!r}: it does not occur in the run's training data", 404) from None

    def add_routes(router: Any, serving: ServeContext) -> None:
        @router.get("/v1/recommend")
        async def recommend(
            user: str = Query(..., description="raw user id"),
            k: int = Query(10, description=f"number of items, 1 to {k_max}"),
            exclude_seen: bool = Query(True, description="leave out the items the user interacted with in training"),
        ) -> dict[str, Any]:
            """The ``k`` best items for ``user``; an unknown user gets the most popular items (``cold_start``)."""
            check_k(k)
            if not user.strip():
                raise ClientError("user must be a non-empty id", 422)
            if user not in recommender.user_map:
                items = [entry(int(i), c) for i, c in zip(popular[:k], counts[:k])]
                return {"user": user, "k": k, "cold_start": True, "items": items}
            index = recommender.user_map.index(user, "user")
            items = await serving.batchers["recommend"].submit((index, k, exclude_seen))
            return {"user": recommender.user_map.raw(index), "k": k, "cold_start": False, "items": items}

        @router.get("/v1/similar")
        async def similar(
            item: str = Query(..., description="raw item id"),
            k: int = Query(10, description=f"number of items, 1 to {k_max}"),
        ) -> dict[str, Any]:
            """The ``k`` items nearest to ``item`` by cosine similarity of the item vectors."""
            check_k(k)
            index = resolve(recommender.item_map, item, "item")
            if vectors is None:
                raise ClientError(f"model {name!r} has no item vectors: /v1/similar needs mf, fm, lightgcn, ...", 501)
            items = await serving.batchers["similar"].submit((index, k))
            raw = recommender.item_map.raw(index)
            return {"item": raw, "title": titles[index] if titles else None, "k": k, "items": items}

        @router.post("/v1/score")
        async def score(request: Request) -> dict[str, Any]:
            """Ratings (rating run) or relevance scores (ranking run) of ``[user, item]`` pairs."""
            body = await read_json(request, serving.options)
            pairs = parse_pairs(body)
            users = np.array([resolve(recommender.user_map, u, "user") for u, _ in pairs], np.int64)
            items = np.array([resolve(recommender.item_map, i, "item") for _, i in pairs], np.int64)
            scores = await serving.batchers["score"].submit((users, items))
            if not all(map(math.isfinite, scores)):
                raise RuntimeError("the model produced a non-finite score")
            return {"task": recommender.task, "scores": scores}

    def warmup() -> None:
        recommend_batch([(0, min(10, k_max), True)])
        score_batch([(np.zeros(1, np.int64), np.zeros(1, np.int64))])
        if vectors is not None:
            similar_batch([(0, min(10, k_max))])

    examples = recommender.user_map.raw_ids[:20]
    card = {
        "model": name,
        "task": recommender.task,
        "dataset": recommender.dataset or predictor.config.dataset,
        "metrics": dict(run.metrics),
        "checkpoint": str(run.checkpoint),
        "backend": scorer.backend,
        "exportable": info.exportable,
        "onnx": str(onnx_file) if onnx_file else None,
        "inputs": {
            "users": len(recommender.user_map),
            "items": num_items,
            "k_max": k_max,
            "example_users": examples,
            "example_items": recommender.item_map.raw_ids[:20],
            "max_pairs": MAX_PAIRS,
        },
        "labels": {
            "output": "rating" if recommender.task == "rating" else "relevance score",
            "rating_range": list(recommender.rating_range) if recommender.rating_range else None,
            "titles": bool(titles),
            "similar": vectors is not None,
        },
        "cold_start": "an unknown user gets the items with the most training interactions (score = count)",
    }
    batchers: dict[str, Callable[[list[Any]], list[Any]]] = {"recommend": recommend_batch, "score": score_batch}
    if vectors is not None:
        batchers["similar"] = similar_batch
    page = resources.files("pentad_recsys").joinpath("static/index.html").read_text(encoding="utf-8")
    return Service("recsys", card, add_routes, batchers, page, warmup)


__all__ = ["K_MAX", "MAX_PAIRS", "OnnxScorer", "TorchScorer", "build_service", "onnx_model", "parse_pairs"]
