"""A run's life through the CLI scaffold, on the toy app in real processes: resume from the run's own
config, verbs that read a run without changing it, ``--overwrite``, ``--data-dir`` checks, Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from toy_app import TOY_APP, make_data, run_toy

COMMON = ["--accelerator", "cpu", "--set", "trainer.progress_bar=false"]


def config_of(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_resume_starts_from_the_runs_own_config_and_keeps_it(tmp_path):
    run = tmp_path / "run"
    first = run_toy("train", "--out", str(run), "--epochs", "2", "--batch-size", "32", "--set", "samples=128", *COMMON)
    assert first.returncode == 0, first.stderr
    saved = (run / "config.yaml").read_bytes()

    # nothing but the new length: the samples, batch size and model come from the run's config.yaml
    resumed = run_toy("train", "--out", str(run), "--resume", "last", "--epochs", "3", *COMMON)
    assert resumed.returncode == 0, resumed.stderr
    assert (run / "config.yaml").read_bytes() == saved
    continued = config_of(run / "config.resume-1.yaml")
    assert continued["samples"] == 128 and continued["batch_size"] == 32
    assert continued["trainer"]["max_epochs"] == 3
    assert (run / "environment.resume-1.json").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["fit/steps"] == 3 * 128 / 32


def test_resume_refuses_an_option_that_changes_what_is_trained(tmp_path):
    run = tmp_path / "run"
    assert run_toy("train", "--out", str(run), "--epochs", "1", "--set", "samples=64", *COMMON).returncode == 0
    saved = (run / "config.yaml").read_bytes()
    for option in (["--set", "samples=256"], ["--batch-size", "8"], ["--seed", "3"]):
        refused = run_toy("train", "--out", str(run), "--resume", "last", "--epochs", "2", *option, *COMMON)
        lines = [line for line in refused.stderr.splitlines() if line.strip()]
        assert refused.returncode == 2 and len(lines) == 1, refused.stderr
        key = {"--set": "samples", "--batch-size": "batch_size", "--seed": "seed"}[option[0]]
        assert f"but {key} would change" in lines[0]
    assert (run / "config.yaml").read_bytes() == saved
    assert not list(run.glob("config.resume-*.yaml"))


def test_resume_from_a_damaged_checkpoint_is_refused_before_the_run_is_touched(tmp_path):
    run = tmp_path / "run"
    assert run_toy("train", "--out", str(run), "--epochs", "1", *COMMON).returncode == 0
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:100])  # truncated, as by a full disk
    before = sorted(p.name for p in run.iterdir())
    refused = run_toy("train", "--out", str(run), "--resume", "last", "--epochs", "2", *COMMON)
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode == 2 and len(lines) == 1 and "last.ckpt cannot be loaded" in lines[0], refused.stderr
    assert sorted(p.name for p in run.iterdir()) == before  # no config.resume-1.yaml left behind


def test_a_verb_that_reads_a_run_writes_beside_it_and_never_into_it(tmp_path):
    run = tmp_path / "run"
    assert run_toy("train", "--out", str(run), "--epochs", "4", *COMMON).returncode == 0
    before = {name: (run / name).read_bytes() for name in ("config.yaml", "metrics.json", "environment.json")}
    evaluated = run_toy("evaluate", "--checkpoint", str(run), *COMMON)
    assert evaluated.returncode == 0, evaluated.stderr
    assert {name: (run / name).read_bytes() for name in before} == before
    (output,) = (run / "evaluate").iterdir()
    targets = make_data(256, 8).tensors[1]
    # the trained run, not a fresh model: well under the error of always predicting 0
    assert json.loads((output / "metrics.json").read_text())["eval/mse"] < 0.5 * float((targets**2).mean())
    again = run_toy("evaluate", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), *COMMON)
    assert again.returncode == 0 and len(list((run / "evaluate").iterdir())) == 2
    refused = run_toy("evaluate", "--checkpoint", str(run), "--out", str(run), *COMMON)
    assert refused.returncode == 2 and "holds a trained run" in refused.stderr
    assert {name: (run / name).read_bytes() for name in before} == before


def test_overwrite_removes_everything_the_earlier_run_wrote(tmp_path):
    run = tmp_path / "run"
    assert run_toy("train", "--out", str(run), "--epochs", "1", *COMMON).returncode == 0
    (run / "model.onnx").write_bytes(b"old export")
    (run / "monitor").mkdir()
    (run / "monitor" / "0.monitor.csv").write_text("stale\n")
    replaced = run_toy("train", "--out", str(run), "--epochs", "1", "--overwrite", *COMMON)
    assert replaced.returncode == 0, replaced.stderr
    assert not (run / "model.onnx").exists() and not (run / "monitor").exists()
    assert (run / "checkpoints" / "last.ckpt").is_file()


def test_a_data_dir_must_exist_and_belong_to_a_dataset_with_a_folder(tmp_path):
    missing = run_toy("train", "--out", str(tmp_path / "a"), "--dataset", "toy-real", "--data-dir", "/no/such/dir")
    assert missing.returncode == 2 and "--data-dir /no/such/dir does not exist" in missing.stderr
    # without --dataset the default is the generated data: a folder given with it is a mistake, not ignored
    ignored = run_toy("train", "--out", str(tmp_path / "b"), "--data-dir", str(tmp_path))
    assert ignored.returncode == 2 and "is generated by the package and has no folder" in ignored.stderr
    assert not (tmp_path / "b").exists()


def test_ctrl_c_exits_130_with_a_checkpoint_that_resume_continues(tmp_path):
    run = tmp_path / "run"
    # 2 epochs of 64 steps of 0.2 s: 26 s of work after the first step, so the Ctrl-C lands mid-run
    arguments = ["train", "--out", str(run), "--epochs", "2", "--batch-size", "4", *COMMON]
    process = subprocess.Popen(
        [sys.executable, str(TOY_APP), *arguments, "--set", "step_delay=0.2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # a child inherits an ignored SIGINT, and Python then installs no Ctrl-C handler: start it with
        # the default one whatever an earlier test in this worker process left (CI saw exit 0 here)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 180
    while not (run / "started").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "resume with --resume last" in stderr
    assert (run / "checkpoints" / "last.ckpt").is_file()
    resumed = run_toy(*arguments, "--resume", "last")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "metrics.json").read_text())["fit/epochs"] == 2
