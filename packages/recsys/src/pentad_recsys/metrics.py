"""Rating and ranking metrics.

Ranking protocol: for each test user, the candidates are the items the user did not interact
with in training (full ranking), or the held-out items plus 99 sampled non-interacted items
(sampled protocol of He et al., NCF, WWW 2017). The rank of a relevant item is the number of
*non-relevant* candidates that score strictly higher (ties resolved in the item's favour, the
convention of the reference script); use ``ties="pessimistic"`` to count ties against it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pentad_core.errors import DataError
from pentad_recsys.data.interactions import Interactions


def rmse(predicted: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> float:
    """Root mean squared error."""
    p, t = np.asarray(predicted, np.float64), np.asarray(target, np.float64)
    return float(np.sqrt(np.mean((p - t) ** 2)))


def mae(predicted: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> float:
    """Mean absolute error."""
    p, t = np.asarray(predicted, np.float64), np.asarray(target, np.float64)
    return float(np.mean(np.abs(p - t)))


def ranks_of_relevant(
    scores: torch.Tensor, relevant: torch.Tensor, candidates: torch.Tensor, ties: str = "optimistic"
) -> torch.Tensor:
    """0-based rank of each relevant item among the non-relevant candidates of its row.

    Args:
        scores: ``[B, I]`` scores.
        relevant: ``[B, I]`` bool, the held-out items.
        candidates: ``[B, I]`` bool, items that may be ranked (relevant ones may be included).
        ties: ``"optimistic"`` (equal scores do not count against the item) or ``"pessimistic"``.

    Returns:
        ``[B, I]`` float ranks (number of non-relevant candidates scoring higher), ``inf`` where
        not relevant. Relevant items do not push each other down.
    """
    if ties not in ("optimistic", "pessimistic"):
        raise ValueError(f"ties must be optimistic or pessimistic, got {ties!r}")
    scores = scores.float()
    negatives = candidates & ~relevant
    masked = torch.where(negatives, scores, torch.full_like(scores, -math.inf))
    sorted_negatives, _ = torch.sort(masked, dim=1)
    # count(neg > s) = I - #(neg <= s); count(neg >= s) = I - #(neg < s)
    below = torch.searchsorted(sorted_negatives, scores.contiguous(), right=ties == "optimistic")
    higher = (scores.shape[1] - below).float()
    return torch.where(relevant, higher, torch.full_like(scores, math.inf))


def ranking_metrics(
    ranks: torch.Tensor, num_relevant: torch.Tensor, ks: tuple[int, ...] = (10,)
) -> dict[str, torch.Tensor]:
    """Per-user HR@K, Recall@K, NDCG@K and MRR from the ranks of the relevant items.

    Args:
        ranks: ``[B, R]`` 0-based ranks of each user's relevant items (``inf`` for padding),
            each ranked against the non-relevant candidates.
        num_relevant: ``[B]`` number of relevant items per user.
        ks: Cut-offs.

    Returns:
        Metric name -> ``[B]`` per-user values. With several relevant items, relevant item ``j``
        (in rank order) occupies list position ``rank_j + j``; NDCG divides by the ideal DCG.
    """
    ordered, _ = torch.sort(ranks, dim=1)
    positions = ordered + torch.arange(ordered.shape[1], dtype=ordered.dtype)
    finite = torch.isfinite(positions)
    out: dict[str, torch.Tensor] = {}
    gains = torch.where(finite, 1.0 / torch.log2(positions + 2.0), torch.zeros_like(positions))
    first = positions[:, 0]
    out["mrr"] = torch.where(torch.isfinite(first), 1.0 / (first + 1.0), torch.zeros_like(first))
    n_rel = num_relevant.to(ordered.dtype)
    for k in ks:
        hit = finite & (positions < k)
        out[f"hr@{k}"] = hit.any(dim=1).to(ordered.dtype)
        out[f"recall@{k}"] = hit.sum(dim=1) / n_rel.clamp(min=1)
        ideal_table = torch.cumsum(1.0 / torch.log2(torch.arange(k, dtype=ordered.dtype) + 2.0), 0)
        ideal = ideal_table[(n_rel.clamp(min=1, max=k) - 1).long()]
        out[f"ndcg@{k}"] = (gains * hit).sum(dim=1) / ideal.clamp(min=1e-12)
    return out


def _padded_ranks(ranks: torch.Tensor, relevant: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    counts = relevant.sum(dim=1)
    width = max(1, int(counts.max()) if len(counts) else 1)
    ordered, _ = torch.sort(ranks, dim=1)
    return ordered[:, :width], counts


def evaluate_ranking(
    score_all,
    train: Interactions,
    test: Interactions,
    *,
    ks: tuple[int, ...] = (10,),
    protocol: str = "full",
    num_negatives: int = 99,
    seed: int = 0,
    batch_users: int = 256,
    ties: str = "optimistic",
) -> dict[str, float]:
    """Mean ranking metrics of a scoring function on held-out interactions.

    Args:
        score_all: ``f(users [B] long) -> [B, num_items]`` scores (higher = more relevant).
        train: Training interactions (their items are excluded from the candidates).
        test: Held-out interactions; every user with a test item is evaluated.
        ks: Cut-offs for HR/Recall/NDCG.
        protocol: ``"full"``: rank against every item not in the user's training interactions;
            ``"sampled"``: each test interaction against ``num_negatives`` items drawn uniformly
            (numpy ``default_rng(seed)``, in user order) from those the user did not train on. A
            user with fewer than ``num_negatives`` such items (other than the held-out one) is ranked
            against all of them, with no draw: the sample is what there is.
        num_negatives: Negatives of the sampled protocol.
        seed: Seed of the sampled protocol.
        batch_users: Users scored per batch.
        ties: See :func:`ranks_of_relevant`.

    Returns:
        ``{"hr@K", "ndcg@K", "recall@K", "mrr"}`` averaged over users (full) or test
        interactions (sampled).
    """
    num_items = train.num_items
    indptr, train_items = train.csr()
    totals: dict[str, float] = {}
    count = 0
    if protocol == "full":
        test_indptr, test_items = test.csr()
        test_users = np.flatnonzero(np.diff(test_indptr) > 0)
        for start in range(0, len(test_users), batch_users):
            users = test_users[start : start + batch_users]
            with torch.no_grad():
                scores = score_all(torch.as_tensor(users)).float()
            seen = torch.zeros(len(users), num_items, dtype=torch.bool)
            relevant = torch.zeros_like(seen)
            for row, u in enumerate(users):
                seen[row, train_items[indptr[u] : indptr[u + 1]]] = True
                relevant[row, test_items[test_indptr[u] : test_indptr[u + 1]]] = True
            ranks = ranks_of_relevant(scores, relevant, ~seen, ties)
            padded, counts = _padded_ranks(ranks, relevant)
            for name, values in ranking_metrics(padded, counts, ks).items():
                totals[name] = totals.get(name, 0.0) + float(values.sum())
            count += len(users)
    elif protocol == "sampled":
        rng = np.random.default_rng(seed)
        order = np.lexsort((np.arange(len(test)), test.users))
        all_items = np.arange(num_items)
        rows_users, rows_items = test.users[order], test.items[order]
        for start in range(0, len(order), batch_users):
            users = rows_users[start : start + batch_users]
            positives = rows_items[start : start + batch_users]
            candidates = np.zeros((len(users), num_negatives + 1), np.int64)
            present = np.ones(candidates.shape, bool)  # False where a short pool left no negative
            for row, (u, i) in enumerate(zip(users, positives)):
                mask = np.ones(num_items, bool)
                mask[train_items[indptr[u] : indptr[u + 1]]] = False
                pool = all_items[mask]
                pool = pool[pool != i]
                candidates[row, 0] = i
                if len(pool) >= num_negatives:  # the draw of every earlier version
                    candidates[row, 1:] = rng.choice(pool, num_negatives, replace=False)
                else:  # fewer unseen items than negatives: rank against all of them (no draw)
                    candidates[row, 1 : 1 + len(pool)] = pool
                    present[row, 1 + len(pool) :] = False
            with torch.no_grad():
                full = score_all(torch.as_tensor(users)).float()
            scores = torch.gather(full, 1, torch.as_tensor(candidates))
            relevant = torch.zeros_like(scores, dtype=torch.bool)
            relevant[:, 0] = True
            ranks = ranks_of_relevant(scores, relevant, torch.as_tensor(present), ties)
            padded, counts = _padded_ranks(ranks, relevant)
            for name, values in ranking_metrics(padded, counts, ks).items():
                totals[name] = totals.get(name, 0.0) + float(values.sum())
            count += len(users)
    else:
        raise ValueError(f"protocol must be full or sampled, got {protocol!r}")
    if count == 0:
        raise DataError(f"no test users to rank in {test.source}; the test split is empty.")
    return {name: value / count for name, value in sorted(totals.items())}
