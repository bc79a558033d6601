"""Files from elsewhere are data, never code: an agent .zip, a checkpoint's replay buffer, resume state or
normalisation statistics whose unpickling would run code (a ``__reduce__`` payload that creates a marker
file) runs nothing; the CLI refuses it in one line (exit 2), or, for stable-baselines3's ``data`` member
that pentad never decodes, loads the weights as if the payload were not there.

Each test first shows that the payload is live: the unrestricted loader it replaces (``torch.load``,
``np.load(allow_pickle=True)``, stable-baselines3's ``load``) does run it.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from pentad_rl.cli import main

SMALL = [
    "--algo", "dqn", "--env", "CartPole-v1", "--set", "normalize=true", "--set", "policy_kwargs={net_arch: [16]}",
    "--set", "eval_freq=0", "--set", "eval_episodes=2", "--set", "model_options.buffer_size=1000",
    "--set", "model_options.learning_starts=50",
]  # fmt: skip


class Payload:
    """Unpickling it calls ``open(marker, "w")``: the marker file proves that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", *SMALL, "--timesteps", "300", "--out", str(run)]) == 0
    return run


@pytest.fixture
def copy_of(trained, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    return run


def rewrite(path: Path, replace: dict[str, bytes]) -> None:
    """Replace members of the zip ``path`` (adding those it lacks)."""
    with zipfile.ZipFile(path) as source:
        members = {info.filename: source.read(info) for info in source.infolist()}
    members.update(replace)
    with zipfile.ZipFile(path, "w") as target:
        for name, content in members.items():
            target.writestr(name, content)


def npy_with(payload: Payload) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([payload], dtype=object), allow_pickle=True)
    return buffer.getvalue()


def one_line_error(capsys, code: int) -> str:
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1 and error.startswith("apps/rl: error: "), (code, error)
    return error


@pytest.mark.parametrize("member", ["policy.pth", "policy.optimizer.pth", "pytorch_variables.pth"])
def test_an_agent_whose_weights_hold_code_is_refused(copy_of, tmp_path, capsys, member):
    marker = tmp_path / "ran"
    evil = io.BytesIO()
    torch.save({"weight": Payload(marker)}, evil)
    torch.load(io.BytesIO(evil.getvalue()), weights_only=False)  # the payload is live
    assert marker.exists()
    marker.unlink()
    agent = copy_of / "checkpoints" / "last.zip"
    rewrite(agent, {member: evil.getvalue()})
    code = main(["evaluate", "--checkpoint", str(agent), "--episodes", "1"])
    error = one_line_error(capsys, code)
    assert f"member {member} holds more than weights and is refused" in error
    assert not marker.exists()
    code = main(["train", "--out", str(copy_of), "--resume", "last", "--timesteps", "400"])
    one_line_error(capsys, code)
    assert not marker.exists()


def test_stable_baselines3_data_with_code_is_never_decoded(copy_of, tmp_path, capsys):
    import cloudpickle
    from stable_baselines3 import DQN

    marker = tmp_path / "ran"
    agent = copy_of / "checkpoints" / "last.zip"
    assert main(["evaluate", "--checkpoint", str(agent), "--episodes", "2", "--out", str(tmp_path / "before")]) == 0
    with zipfile.ZipFile(agent) as archive:
        data = json.loads(archive.read("data"))
    serialized = base64.b64encode(cloudpickle.dumps(Payload(marker))).decode()
    data["policy_class"] = {":type:": "<class 'type'>", ":serialized:": serialized}
    rewrite(agent, {"data": json.dumps(data).encode()})
    with pytest.raises(Exception):  # noqa: B017 - whatever SB3 then fails on, the payload has run
        DQN.load(agent)
    assert marker.exists()
    marker.unlink()
    assert main(["evaluate", "--checkpoint", str(agent), "--episodes", "2", "--out", str(tmp_path / "after")]) == 0
    assert not marker.exists()
    before, after = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("before", "after"))
    assert after == before  # the same weights, the same evaluation


@pytest.mark.parametrize(
    "member",
    ["pentad/replay_buffer/observations.npy", "pentad/resume/last_obs.npy", "pentad/vecnormalize/obs_mean.npy"],
)
def test_a_checkpoint_whose_arrays_hold_code_is_refused_on_resume(copy_of, tmp_path, capsys, member):
    marker = tmp_path / "ran"
    payload = npy_with(Payload(marker))
    np.load(io.BytesIO(payload), allow_pickle=True)  # the payload is live
    assert marker.exists()
    marker.unlink()
    rewrite(copy_of / "checkpoints" / "last.zip", {member: payload})
    code = main(["train", "--out", str(copy_of), "--resume", "last", "--timesteps", "400"])
    assert "is not a plain array" in one_line_error(capsys, code)
    assert not marker.exists()


def test_pickled_files_of_earlier_releases_are_never_opened_or_refused(copy_of, tmp_path, capsys):
    """A ``last_replay_buffer.pkl`` (SB3's pickle) beside the agent is ignored; a ``<stem>_vecnormalize.npz``
    (read for agents saved before the statistics moved into the .zip) holding objects is refused."""
    marker = tmp_path / "ran"
    checkpoints = copy_of / "checkpoints"
    (checkpoints / "last_replay_buffer.pkl").write_bytes(pickle.dumps(Payload(marker)))
    assert main(["train", "--out", str(copy_of), "--resume", "last", "--timesteps", "1024"]) == 0
    assert not marker.exists()

    legacy = checkpoints / "old.zip"
    with zipfile.ZipFile(checkpoints / "last.zip") as source, zipfile.ZipFile(legacy, "w") as target:
        for info in source.infolist():
            if not info.filename.startswith("pentad/"):
                target.writestr(info.filename, source.read(info))
    np.savez(checkpoints / "old_vecnormalize.npz", obs_mean=np.array([Payload(marker)], dtype=object))
    capsys.readouterr()
    code = main(["evaluate", "--checkpoint", str(legacy), "--episodes", "1"])
    assert "old_vecnormalize.npz is not a file of plain arrays" in one_line_error(capsys, code)
    assert not marker.exists()


def test_a_damaged_checkpoint_is_refused_before_the_run_is_touched(copy_of, capsys):
    """A truncated ``last.zip``: one line naming it, exit 2, and no ``config.resume-<n>.yaml`` left
    behind to record a resumed part that never ran."""
    last = copy_of / "checkpoints" / "last.zip"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    before = sorted(path.name for path in copy_of.iterdir())
    code = main(["train", "--out", str(copy_of), "--resume", "last", "--timesteps", "400"])
    assert "last.zip" in one_line_error(capsys, code)
    assert sorted(path.name for path in copy_of.iterdir()) == before
    assert not list(copy_of.glob("config.resume-*.yaml"))
