"""Metric values checked against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pentad_recsys.data.interactions import IdMap, Interactions
from pentad_recsys.metrics import evaluate_ranking, mae, ranking_metrics, ranks_of_relevant, rmse


def test_rmse_and_mae_by_hand():
    predicted, target = np.array([3.0, 4.0, 1.0]), np.array([4.0, 4.0, 3.0])
    assert rmse(predicted, target) == pytest.approx(math.sqrt((1 + 0 + 4) / 3))
    assert mae(predicted, target) == pytest.approx(1.0)


def test_ranks_count_strictly_higher_negatives_and_ties():
    scores = torch.tensor([[0.9, 0.5, 0.7, 0.5, 0.1]])
    relevant = torch.tensor([[False, True, False, False, False]])
    candidates = torch.tensor([[True, True, True, True, True]])
    optimistic = ranks_of_relevant(scores, relevant, candidates)
    pessimistic = ranks_of_relevant(scores, relevant, candidates, ties="pessimistic")
    assert optimistic[0, 1] == 2  # 0.9 and 0.7 are higher; the tie at 0.5 does not count
    assert pessimistic[0, 1] == 3
    assert math.isinf(optimistic[0, 0])
    excluded = ranks_of_relevant(scores, relevant, torch.tensor([[False, True, True, True, True]]))
    assert excluded[0, 1] == 1  # the 0.9 item is not a candidate (seen in training)


def test_ranking_metrics_single_relevant_item():
    ranks = torch.tensor([[0.0], [3.0], [12.0]])
    metrics = ranking_metrics(ranks, torch.tensor([1, 1, 1]), ks=(10,))
    assert metrics["hr@10"].tolist() == [1.0, 1.0, 0.0]
    assert metrics["ndcg@10"].tolist() == pytest.approx([1.0, 1 / math.log2(5), 0.0])
    assert metrics["mrr"].tolist() == pytest.approx([1.0, 0.25, 1 / 13])
    assert metrics["recall@10"].tolist() == [1.0, 1.0, 0.0]


def test_ranking_metrics_two_relevant_items():
    # relevant items with 0 and 2 negatives above them sit at list positions 0 and 3
    metrics = ranking_metrics(torch.tensor([[2.0, 0.0]]), torch.tensor([2]), ks=(3, 5))
    assert metrics["hr@3"].item() == 1.0
    assert metrics["recall@3"].item() == 0.5
    assert metrics["recall@5"].item() == 1.0
    assert metrics["ndcg@3"].item() == pytest.approx(1.0 / (1 + 1 / math.log2(3)))
    assert metrics["ndcg@5"].item() == pytest.approx((1 + 1 / math.log2(5)) / (1 + 1 / math.log2(3)))
    assert metrics["mrr"].item() == 1.0


def _tiny(users, items):
    n = len(users)
    return Interactions(users, items, np.ones(n), np.arange(n), IdMap([1, 2]), IdMap([10, 11, 12, 13, 14]))


def test_evaluate_ranking_full_protocol_by_hand():
    train = _tiny([0, 1], [0, 1])
    test = _tiny([0, 1], [2, 4])
    table = torch.tensor([[9.0, 0.0, 5.0, 6.0, 1.0], [0.0, 9.0, 8.0, 7.0, 6.0]])
    result = evaluate_ranking(lambda users: table[users], train, test, ks=(1, 3))
    # user 0: item 0 is excluded (seen); only item 3 (6.0) beats item 2 (5.0): rank 1
    # user 1: items 2 (8) and 3 (7) beat item 4 (6): rank 2
    assert result["hr@1"] == pytest.approx(0.0)
    assert result["hr@3"] == pytest.approx(1.0)
    assert result["ndcg@3"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / 2)
    assert result["mrr"] == pytest.approx((1 / 2 + 1 / 3) / 2)


def test_evaluate_ranking_sampled_protocol_uses_the_sampled_negatives_only():
    train = _tiny([0], [0])
    test = _tiny([0], [1])
    table = torch.tensor([[0.0, 5.0, 9.0, 1.0, 2.0]])
    # with 2 negatives drawn from items {2, 3, 4}: rank = 1 when item 2 is drawn, else 0
    result = evaluate_ranking(lambda users: table[users], train, test, ks=(1,), protocol="sampled", num_negatives=2)
    pool = np.array([2, 3, 4])
    drawn = np.random.default_rng(0).choice(pool, 2, replace=False)
    assert result["hr@1"] == (0.0 if 2 in drawn else 1.0)


def test_sampled_protocol_ranks_against_every_unseen_item_when_fewer_than_asked():
    # 5 items: user 0 trained on item 0 and holds out item 1, so only items 2, 3, 4 can be negatives,
    # fewer than the 99 the protocol asks for: the user is ranked against those three (no crash).
    train = _tiny([0], [0])
    test = _tiny([0], [1])
    # item 0 (seen) scores highest: counting it, or the padding of the short row, would push item 1 down
    table = torch.tensor([[9.0, 5.0, 6.0, 1.0, 2.0]])
    result = evaluate_ranking(lambda users: table[users], train, test, ks=(1, 3), protocol="sampled")
    # only item 2 (6.0) beats item 1 (5.0): rank 1
    assert result["hr@1"] == 0.0 and result["hr@3"] == 1.0
    assert result["mrr"] == pytest.approx(1 / 2)
    assert result["ndcg@3"] == pytest.approx(1 / math.log2(3))
