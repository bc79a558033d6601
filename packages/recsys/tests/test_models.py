"""Contract tests run over every registered model (new models are picked up automatically)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pentad_recsys  # noqa: F401  (registers models)
from pentad_core.errors import ConfigError
from pentad_recsys.data.sampling import NegativeSampler
from pentad_recsys.models import RecModel, build_model
from pentad_recsys.predictor import Recommender
from pentad_recsys.registry import MODELS
from pentad_recsys.training import TrainSettings, batch_loss, fit, iterate_batches, needs_negatives

SMALL = {"glocal-k": {"hidden": 16}}
CASES = [(name, task) for name in MODELS.names() for task in MODELS.info(name).tasks]


def make(name, task, split):
    return Recommender.for_training(name, split.train, task=task, **SMALL.get(name, {}))


@pytest.mark.parametrize(("name", "task"), CASES)
@pytest.mark.parametrize("batch", [1, 7, 33])
def test_forward_shapes_and_finite(tiny, name, task, batch):
    _, split = tiny
    rec = make(name, task, split)
    rec.model.eval()
    users = torch.randint(0, split.train.num_users, (batch,))
    items = torch.randint(0, split.train.num_items, (batch,))
    out = rec.model(users, items)
    assert out.shape == (batch,)
    assert torch.isfinite(out).all()
    full = rec.model.score_all(users)
    assert full.shape == (batch, split.train.num_items)
    torch.testing.assert_close(full.gather(1, items[:, None]).squeeze(1), out, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS.names())
def test_build_model_takes_the_derived_sizes_and_checks_options(tiny, name):
    _, split = tiny
    sizes = {"num_users": split.train.num_users, "num_items": split.train.num_items, "task": MODELS.info(name).tasks[0]}
    with pytest.raises(ConfigError, match="'dimm'.*Valid options"):
        build_model(name, {"dimm": 8}, **sizes)
    model = build_model(name, SMALL.get(name), **sizes)
    assert isinstance(model, RecModel)
    assert (model.num_users, model.num_items) == (split.train.num_users, split.train.num_items)


@pytest.mark.parametrize(("name", "task"), CASES)
def test_gradients_reach_every_parameter(tiny, name, task):
    _, split = tiny
    rec = make(name, task, split)
    if not rec.trainable:
        assert not list(rec.model.parameters()), "a non-trainable baseline must hold no parameters"
        return
    # BCE rather than BPR: under BPR a shared output bias cancels and rightly gets no gradient
    settings = TrainSettings(batch_size=len(split.train), negatives=2, loss="bce")
    rec.model.train()
    if rec.model.full_batch:
        loss = rec.model.full_batch_loss()
    else:
        sampler = NegativeSampler(split.train, seed=0) if needs_negatives(rec) else None
        batch = next(iterate_batches(split.train, task, settings, sampler, np.random.default_rng(0)))
        loss = batch_loss(rec, batch, settings)
    loss.backward()
    global_kernel = {"conv_kernel"}  # only used in GLocal-K's fine-tuning stage
    for pname, parameter in rec.model.named_parameters():
        if pname in global_kernel:
            continue
        assert parameter.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(parameter.grad).all(), f"{name}: non-finite gradient for {pname}"
        assert parameter.grad.abs().sum() > 0, f"{name}: zero gradient for {pname}"


@pytest.mark.parametrize(("name", "task"), CASES)
def test_save_load_round_trip(tiny, name, task, tmp_path):
    _, split = tiny
    rec = make(name, task, split)
    fit(rec, split.train, TrainSettings(epochs=1, batch_size=256, lr=0.01))
    path = rec.save(tmp_path / "model.ckpt")
    loaded = Recommender.load(path)
    users = [split.test.user_map.raw(u) for u in split.test.users[:20]]
    items = [split.test.item_map.raw(i) for i in split.test.items[:20]]
    np.testing.assert_allclose(loaded.predict(users, items), rec.predict(users, items), rtol=1e-5, atol=1e-6)
    assert loaded.recommend(users[0], k=5) == rec.recommend(users[0], k=5)


@pytest.mark.parametrize(("name", "task"), CASES)
def test_short_training_lowers_the_loss(tiny, name, task):
    _, split = tiny
    rec = make(name, task, split)
    if not rec.trainable:
        pytest.skip(f"{name} has nothing to train")
    losses = []
    settings = TrainSettings(epochs=4, batch_size=128, lr=0.02, negatives=2, lbfgs_iterations=3)
    fit(rec, split.train, settings, on_epoch=lambda epoch, loss: losses.append(loss))
    assert losses[-1] < losses[0], f"{name}/{task}: loss did not fall: {losses}"


@pytest.mark.parametrize(("name", "task"), [c for c in CASES if c[0] != "glocal-k"])
def test_grow_keeps_learned_rows(tiny, name, task):
    _, split = tiny
    rec = make(name, task, split)
    rec.model.eval()
    users = torch.arange(5)
    items = torch.arange(5)
    before = rec.model(users, items)
    rec.model.grow(split.train.num_users + 3, split.train.num_items + 4)
    rec.model.eval()
    torch.testing.assert_close(rec.model(users, items), before)
    assert torch.isfinite(rec.model(torch.tensor([split.train.num_users + 2]), torch.tensor([0]))).all()


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_has_typed_info_that_matches_it(tiny, name):
    from pentad_core.registry import ModelInfo

    info = MODELS.info(name)
    assert isinstance(info, ModelInfo)
    assert info.tasks and set(info.tasks) <= {"rating", "ranking"}, info.tasks
    assert info.inputs in ("ids", "sequence"), info.inputs
    _, split = tiny
    rec = make(name, info.tasks[0], split)
    assert rec.trainable == info.trainable == bool(list(rec.model.parameters()))
    assert (info.inputs == "sequence") == rec.model.sequential
    other = {"rating", "ranking"} - set(info.tasks)
    for task in other:
        with pytest.raises(ConfigError, match="does not serve"):
            make(name, task, split)


@pytest.mark.parametrize(("name", "task"), CASES)
def test_every_model_exports_to_onnx_with_parity_or_says_it_cannot(tiny, name, task, tmp_path):
    """The served scoring network (``users``, ``items`` -> ``score``) of a briefly trained model in ONNX
    Runtime scores every item of several users as PyTorch does; a model that cannot be exported is
    registered ``exportable=False`` (served with torch) and its export is a ConfigError."""
    import onnxruntime

    from pentad_recsys.pipeline import export_scoring_onnx

    _, split = tiny
    rec = make(name, task, split)
    fit(rec, split.train, TrainSettings(epochs=1, batch_size=256, lr=0.01, lbfgs_iterations=2))
    if not MODELS.info(name).exportable:
        with pytest.raises(ConfigError, match="cannot be exported"):
            export_scoring_onnx(rec, tmp_path / "model.onnx")
        return
    path, gap = export_scoring_onnx(rec, tmp_path / "model.onnx")
    assert gap <= 1e-3
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [node.name for node in session.get_inputs()] == ["users", "items"]
    users, num_items = np.array([0, 3, split.train.num_users - 1]), split.train.num_items
    feeds = {"users": np.repeat(users, num_items), "items": np.tile(np.arange(num_items), len(users))}
    served = session.run(["score"], feeds)[0].reshape(len(users), num_items)
    np.testing.assert_allclose(served, rec.score_all(torch.as_tensor(users)).numpy(), rtol=1e-4, atol=1e-4)
