import os

import pytest
import torch

from pentad_core import checkpoint as checkpoint_module
from pentad_core.checkpoint import atomic_save, load_checkpoint, resolve_resume, rng_state, set_rng_state
from pentad_core.errors import CheckpointError


def test_round_trip_with_weights_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    path = atomic_save({"state_dict": model.state_dict(), "epoch": 3}, tmp_path / "model.ckpt")
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3
    for key, value in model.state_dict().items():
        assert torch.equal(loaded["state_dict"][key], value)


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_save({"step": 1, "weights": torch.ones(4)}, path)

    real_save = torch.save

    def crash_half_way(obj, handle, *args, **kwargs):
        real_save(obj, handle, *args, **kwargs)
        handle.truncate(10)  # a partial file ...
        raise OSError("disk full")  # ... and the process dies mid-save

    monkeypatch.setattr(checkpoint_module.torch, "save", crash_half_way)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"step": 2, "weights": torch.zeros(4)}, path)
    monkeypatch.undo()

    survivor = load_checkpoint(path)
    assert survivor["step"] == 1 and torch.equal(survivor["weights"], torch.ones(4))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


def test_unsafe_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    path = tmp_path / "evil.ckpt"
    torch.save({"payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="cannot be loaded"):
        load_checkpoint(path)


def test_truncated_and_missing_checkpoints(tmp_path):
    path = atomic_save({"x": torch.randn(100)}, tmp_path / "a.ckpt")
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="cannot be loaded"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    import random

    import numpy as np

    atomic_save({"rng": rng_state()}, tmp_path / "rng.ckpt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(load_checkpoint(tmp_path / "rng.ckpt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_resolve_resume(tmp_path):
    assert resolve_resume(None, tmp_path) is None
    with pytest.raises(CheckpointError, match="no checkpoint to resume"):
        resolve_resume("last", tmp_path)
    (tmp_path / "checkpoints").mkdir()
    atomic_save({}, tmp_path / "checkpoints" / "last.ckpt")
    assert resolve_resume("last", tmp_path) == tmp_path / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04garbage", bytes(range(256)) * 4])
def test_foreign_files_are_checkpoint_errors(tmp_path, content):
    path = tmp_path / "foreign.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="cannot be loaded"):
        load_checkpoint(path)
