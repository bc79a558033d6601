"""The full-batch models' L-BFGS epochs: history carried or reset, and the evaluation cap."""

from __future__ import annotations

import json

import pytest
import torch

from pentad_recsys.cli import main
from pentad_recsys.predictor import Recommender
from pentad_recsys.training import TrainSettings, fit, lbfgs

SETTINGS = {"epochs": 3, "lbfgs_iterations": 3, "lbfgs_max_evals": 60}


def glocalk(split) -> Recommender:
    torch.manual_seed(0)
    return Recommender.for_training("glocal-k", split.train, task="rating", hidden=8)


def by_hand(split, fresh_every_epoch: bool) -> dict[str, torch.Tensor]:
    """Three L-BFGS epochs written out: one optimiser for all, or a new one per epoch."""
    model = glocalk(split).model
    model.fit_statistics(split.train)
    model.train()
    settings = TrainSettings(**SETTINGS)
    optimizer = lbfgs(model.parameters(), settings)
    for _ in range(settings.epochs):
        if fresh_every_epoch:
            optimizer = lbfgs(model.parameters(), settings)

        def closure(optimizer=optimizer):
            optimizer.zero_grad()
            loss = model.full_batch_loss()
            loss.backward()
            return loss

        optimizer.step(closure)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def trained(split, reset: bool) -> dict[str, torch.Tensor]:
    rec = glocalk(split)
    fit(rec, split.train, TrainSettings(**SETTINGS, lbfgs_reset=reset))
    return rec.model.state_dict()


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_reset_makes_every_epoch_a_new_optimisers_first_step(tiny):
    _, split = tiny
    fresh, carried = by_hand(split, fresh_every_epoch=True), by_hand(split, fresh_every_epoch=False)
    assert_same(trained(split, reset=True), fresh)
    assert_same(trained(split, reset=False), carried)
    assert not torch.equal(fresh["decoder.weight"], carried["decoder.weight"])  # the option changes the run


def test_max_evals_caps_the_loss_evaluations_of_an_epoch(tiny):
    _, split = tiny
    counts = {}
    for cap in (0, 2, 40):
        model = glocalk(split).model
        model.fit_statistics(split.train)
        optimizer = lbfgs(model.parameters(), TrainSettings(lbfgs_iterations=5, lbfgs_max_evals=cap))

        def closure(optimizer=optimizer, model=model):
            optimizer.zero_grad()
            loss = model.full_batch_loss()
            loss.backward()
            return loss

        optimizer.step(closure)
        state = optimizer.state[optimizer.param_groups[0]["params"][0]]
        counts[cap] = (state["func_evals"], state["n_iter"])
    assert counts[2][0] <= 2 + 25  # the cap stops the epoch after the line search that reaches it
    assert counts[2][1] < 5
    assert counts[40][1] == 5  # enough evaluations: all five iterations run
    assert counts[0][0] <= 6 + 25  # torch's default: 1.25 x 5


@pytest.mark.parametrize("reset", [True, False])
def test_train_verb_clears_the_lbfgs_state_at_every_epoch_start(tmp_path, reset):
    """Through ``train`` (the Lightning path): after 3 epochs of 2 iterations, the saved optimiser has
    counted the last epoch's 2 iterations with the reset, and all 6 without it."""
    out = tmp_path / "run"
    args = ["train", "--dataset", "synthetic", "--model", "glocal-k", "--out", str(out), "--epochs", "3",
            "--set", "dataset_options={num_users: 30, num_items: 40, interactions_per_user: 10}",
            "--set", "model_options={hidden: 8}", "--set", "lbfgs_iterations=2", "--set", "lbfgs_max_evals=50",
            "--set", f"lbfgs_reset={str(reset).lower()}", "--set", "trainer.progress_bar=false"]  # fmt: skip
    assert main(args) == 0
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    state = checkpoint["optimizer_states"][0]["state"][0]
    assert state["n_iter"] == (2 if reset else 6)
    assert json.loads((out / "metrics.json").read_text())["test/rmse"] > 0
