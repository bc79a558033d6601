"""Continuing a run: `--resume last` after a SIGKILL inside an epoch, and the resumed run's config.

The kill test runs the app in subprocesses, as a user's shell would, through a small wrapper that
records every training batch (step number and a digest of its tensors: users, items, ratings and
the sampled negatives) and, given a step, SIGKILLs its own process there (as the step starts, or
after its backward pass), so the kill lands inside an epoch whatever the machine's load.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pentad_core.checkpoint import load_checkpoint
from pentad_core.testing import requires_dataset
from pentad_recsys.cli import main

#: Runs `apps/recsys` with every training batch appended to LOG as "<global step> <digest>"; with
#: KILL_AT >= 0 the process SIGKILLs itself at that step: as it starts (AFTER=0) or after its backward (1).
WRAPPER = """
import hashlib, os, signal, sys
from pathlib import Path

import pentad_recsys.module as module

log, kill_at, after = Path(sys.argv.pop(1)), int(sys.argv.pop(1)), sys.argv.pop(1) == "1"
original = module.RecsysModule.training_step


def training_step(self, batch, batch_index):
    digest = hashlib.sha256(b"".join(part.numpy().tobytes() for part in batch)).hexdigest()[:16]
    with log.open("a") as handle:
        handle.write(f"{self.global_step} {digest}\\n")
    if self.global_step == kill_at and not after:
        os.kill(os.getpid(), signal.SIGKILL)
    loss = original(self, batch, batch_index)
    if self.global_step == kill_at and after:
        loss.backward()  # well into the step: gradients computed, weights not yet updated
        os.kill(os.getpid(), signal.SIGKILL)
    return loss


module.RecsysModule.training_step = training_step
from pentad_recsys.cli import main

raise SystemExit(main())
"""

DATA = ["--set", "dataset_options={num_users: 50, num_items: 60, interactions_per_user: 16}"]
COMMON = [*DATA, "--set", "trainer.progress_bar=false", "--accelerator", "cpu", "--batch-size", "64",
          "--epochs", "4"]  # fmt: skip
RANKING = ["--task", "ranking", "--set", "negatives=2", "--set", "sampled_negatives=99"]


def command(wrapper: Path, log: Path, kill_at: int, after: bool, *arguments: str) -> list[str]:
    return [sys.executable, str(wrapper), str(log), str(kill_at), "1" if after else "0", *arguments]


def batches(log: Path) -> list[tuple[int, str]]:
    return [(int(step), digest) for step, digest in (line.split() for line in log.read_text().splitlines())]


@pytest.mark.parametrize(
    ("model", "options", "kills"),
    [("mf", [], 1), ("mf", RANKING, 2)],
    ids=["rating-mf", "ranking-mf-negatives"],
)
def test_kill_inside_an_epoch_and_resume_last_equals_an_uninterrupted_run(tmp_path, model, options, kills):
    wrapper = tmp_path / "recsys_wrapper.py"
    wrapper.write_text(WRAPPER)
    arguments = ["train", "--dataset", "synthetic", "--model", model, *COMMON, *options]
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    done = subprocess.run(command(wrapper, tmp_path / "reference.log", -1, False, *arguments, "--out", str(reference)),
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    expected = dict(batches(tmp_path / "reference.log"))
    steps_per_epoch = len(expected) // 4
    assert len(expected) == 4 * steps_per_epoch and steps_per_epoch >= 8

    log, chooser = tmp_path / "interrupted.log", random.Random()
    for kill in range(kills):
        # a random step strictly inside epoch `kill + 1` (not its first or last batch)
        epoch = kill + 1
        target = chooser.randrange(epoch * steps_per_epoch + 1, (epoch + 1) * steps_per_epoch - 1)
        given = arguments if kill == 0 else ["train", "--resume", "last"]
        late = chooser.random() < 0.5
        killed = subprocess.run(command(wrapper, log, target, late, *given, "--out", str(interrupted)),
                                capture_output=True, text=True)  # fmt: skip
        assert killed.returncode == -9, killed.stderr
        saved = load_checkpoint(interrupted / "checkpoints" / "last.ckpt")
        assert saved["global_step"] == epoch * steps_per_epoch  # the end of the epoch before the kill
    done = subprocess.run(command(wrapper, log, -1, False, "train", "--out", str(interrupted), "--resume", "last"),
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr

    # every batch drawn, before and after each kill, equals the uninterrupted run's batch of that
    # step: the same shuffling and the same sampled negatives
    drawn = batches(log)
    assert {step for step, _ in drawn} == set(expected)
    assert [(step, digest) for step, digest in drawn if expected[step] != digest] == []
    assert len(drawn) > len(expected)  # the epochs cut by a kill were drawn again
    finished, uninterrupted = (json.loads((run / "metrics.json").read_text()) for run in (interrupted, reference))
    assert finished["fit/steps"] == uninterrupted["fit/steps"] == 4 * steps_per_epoch
    tested = {key: value for key, value in uninterrupted.items() if key.startswith(("test/", "val/"))}
    assert tested and {key: finished[key] for key in tested} == tested  # exact: the run is deterministic
    if options:
        assert "test/sampled_ndcg@10" in tested  # 60 items: fewer unseen than 99 for every user


def _train(out: Path, *arguments: str) -> int:
    return main(["train", "--out", str(out), "--set", "trainer.progress_bar=false", *arguments])


def test_resume_last_continues_the_runs_own_config_and_monitor(tmp_path, capsys):
    """The issue's scenario: `train ... --epochs 2 --out R`, then `train --out R --resume last --epochs 4`."""
    run = tmp_path / "rz"
    tiny = "dataset_options={num_users: 40, num_items: 50, interactions_per_user: 10}"
    assert _train(run, "--dataset", "synthetic", "--model", "mf", "--task", "ranking", "--set", tiny,
                  "--epochs", "2", "--batch-size", "64", "--set", "ks=[5]") == 0  # fmt: skip
    written = (run / "config.yaml").read_bytes()
    original = yaml.safe_load(written)
    assert original["trainer"]["monitor"] == "val/ndcg@5" and original["trainer"]["monitor_mode"] == "max"

    assert _train(run, "--resume", "last", "--epochs", "4") == 0
    assert (run / "config.yaml").read_bytes() == written  # never rewritten
    continued = yaml.safe_load((run / "config.resume-1.yaml").read_text())
    assert continued["trainer"].pop("max_epochs") == 4 and original["trainer"].pop("max_epochs") == 2
    assert continued == original  # the dataset, its options, model, task and monitor the run started with
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["fit/epochs"] == 4 and "test/ndcg@5" in metrics
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 3

    capsys.readouterr()
    assert _train(run, "--resume", "last", "--epochs", "5", "--task", "rating") == 2
    assert "task would change" in capsys.readouterr().err
    assert _train(run, "--resume", "last", "--epochs", "5", "--set", "trainer.monitor=val/loss") == 2
    assert "trainer.monitor would change" in capsys.readouterr().err
    assert not (run / "config.resume-2.yaml").exists()


@requires_dataset("ml-100k")
def test_resume_last_on_ml100k_continues_the_run(tmp_path):
    run = tmp_path / "rz"
    assert _train(run, "--dataset", "ml-100k", "--model", "mf", "--epochs", "2") == 0
    written = (run / "config.yaml").read_bytes()
    assert _train(run, "--resume", "last", "--epochs", "4") == 0
    assert (run / "config.yaml").read_bytes() == written
    continued = yaml.safe_load((run / "config.resume-1.yaml").read_text())
    assert (continued["dataset"], continued["model"], continued["trainer"]["max_epochs"]) == ("ml-100k", "mf", 4)
    assert json.loads((run / "metrics.json").read_text())["fit/epochs"] == 4
