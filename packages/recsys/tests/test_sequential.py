"""Sequence models (SASRec, GRU4Rec): histories, causality, no leak, learning an order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pentad_recsys  # noqa: F401  (registers models)
from pentad_recsys.data.interactions import build_interactions
from pentad_recsys.data.splits import temporal_holdout
from pentad_recsys.metrics import evaluate_ranking
from pentad_recsys.models.sequential import PAD, time_ordered_histories
from pentad_recsys.pipeline import update
from pentad_recsys.predictor import Recommender
from pentad_recsys.registry import MODELS
from pentad_recsys.training import TrainSettings, fit

SEQUENTIAL = [name for name in MODELS.names() if MODELS.info(name).inputs == "sequence"]


def cycle_data(num_users: int = 60, num_items: int = 20, length: int = 8, seed: int = 0):
    """Each user walks ``start, start+1, ...`` (mod ``num_items``): only the order predicts the next item."""
    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    for user in range(num_users):
        start = int(rng.integers(num_items))
        for step in range(length):
            users.append(user)
            items.append((start + step) % num_items)
            times.append(1000 * user + step)
    # shuffle the rows: the order must come from the timestamps, not from the file
    rows = rng.permutation(len(users))
    data = build_interactions(
        [users[r] for r in rows], [items[r] for r in rows], np.ones(len(rows)), np.asarray(times)[rows],
        source="cycle", rating_range=None,
    )  # fmt: skip
    keep, held = temporal_holdout(data, 1)
    return data.subset(keep), data.subset(held)


def test_histories_are_time_ordered_left_padded_and_truncated():
    train, _ = cycle_data(num_users=3, length=5)
    # two equal timestamps for user 0: ties go by row order
    train.timestamps[(train.users == 0) & (train.items == train.items[train.users == 0].max())] = 0
    history = time_ordered_histories(train, num_users=4, max_len=6).numpy()
    for user in range(3):
        rows = np.flatnonzero(train.users == user)
        order = rows[np.lexsort((rows, train.timestamps[rows]))]
        np.testing.assert_array_equal(history[user, -len(rows) :], train.items[order])
        assert (history[user, : 6 - len(rows)] == PAD).all()
    assert (history[3] == PAD).all()  # a user without events
    short = time_ordered_histories(train, num_users=3, max_len=2).numpy()
    np.testing.assert_array_equal(short, history[:3, -2:])


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_the_held_out_item_never_enters_the_history(name):
    train, test = cycle_data()
    rec = Recommender.for_training(name, train, task="ranking", dim=8, max_len=16)
    history = rec.model.history.numpy()
    for user, item in zip(test.users, test.items):
        assert item not in history[user]
        latest = train.items[train.users == user][np.argmax(train.timestamps[train.users == user])]
        assert history[user, -1] == latest


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_states_are_causal(name):
    train, _ = cycle_data()
    rec = Recommender.for_training(name, train, task="ranking", dim=8, max_len=6)
    rec.model.eval()
    sequences = torch.tensor([[PAD, PAD, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    changed = sequences.clone()
    changed[:, -1] = 11
    with torch.no_grad():
        before, after = rec.model.encode(sequences), rec.model.encode(changed)
    torch.testing.assert_close(before[:, :-1], after[:, :-1])
    assert not torch.allclose(before[:, -1], after[:, -1])


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_short_training_learns_the_order(name):
    torch.manual_seed(0)
    train, test = cycle_data()
    rec = Recommender.for_training(name, train, task="ranking", dim=16, max_len=8, dropout=0.0)
    fit(rec, train, TrainSettings(epochs=25, lr=0.03, batch_size=64, loss="ce"))
    metrics = evaluate_ranking(rec.score_all, train, test, ks=(1,), protocol="full")
    # chance is 1/13 (13 unseen items); the next item in the cycle is fully determined by the last
    assert metrics["hr@1"] > 0.8, metrics


def test_update_appends_new_events_to_the_history(tmp_path):
    train, _ = cycle_data(num_users=10, length=6)
    rec = Recommender.for_training("sasrec", train, task="ranking", dim=8, max_len=8)
    fit(rec, train, TrainSettings(epochs=1, batch_size=4, loss="ce"))
    user = rec.user_map.raw(0)
    old = rec.model.history[0].clone()
    new = tmp_path / "new.csv"
    new.write_text(f"user,item\n{user},7\n{user},9\n" + "".join(f"777,{i}\n" for i in (1, 2, 3, 4)))
    report = update(rec, new, TrainSettings(epochs=1, batch_size=4, loss="ce"), holdout=0.0)
    assert report["update/new_users"] == 1
    history = rec.model.history
    assert history.shape == (11, 8)
    np.testing.assert_array_equal(history[0, -2:].numpy(), rec.item_map.indices([7, 9]))
    np.testing.assert_array_equal(history[0, :-2].numpy(), old[2:].numpy())
    np.testing.assert_array_equal(history[rec.user_map.index(777), -4:].numpy(), rec.item_map.indices([1, 2, 3, 4]))
    assert rec.recommend(777, k=3)
