"""Bad input and files from elsewhere, through the CLI: METR-LA zeros, pickles and checkpoints that
would run code."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from pentad_traffic.cli import main

QUIET = ["--set", "trainer.progress_bar=false"]


def metr_la_speeds(steps: int = 300, sensors: int = 3, seed: int = 0) -> np.ndarray:
    """Speeds around 60 mph with about one reading in ten missing (0), as in METR-LA."""
    rng = np.random.default_rng(seed)
    speeds = (60.0 + 5.0 * rng.standard_normal((steps, sensors))).astype(np.float32)
    speeds[rng.random((steps, sensors)) < 0.1] = 0.0
    return speeds


def persistence_scores(speeds: np.ndarray, starts: np.ndarray, horizon: int, cumulative: bool, masked: bool):
    """RMSE, MAE and T-GCN accuracy of persistence (the last input reading repeated), computed here
    from the definitions: horizon ``k`` scores steps 1..k of the windows that have them
    (``cumulative``) or step ``k`` alone; ``masked`` leaves out the truths equal to 0."""
    errors, truths = [], []
    for start in starts:
        last = speeds[start + 11]
        steps = range(1, horizon + 1) if cumulative else [horizon]
        if start + 12 + horizon > len(speeds):
            continue
        for step in steps:
            truth = speeds[start + 11 + step]
            keep = truth != 0 if masked else np.ones_like(truth, dtype=bool)
            errors.append((last - truth)[keep])
            truths.append(truth[keep])
    error, truth = np.concatenate(errors).astype(np.float64), np.concatenate(truths).astype(np.float64)
    return {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        "accuracy": float(1 - np.linalg.norm(error) / np.linalg.norm(truth)),
    }


@pytest.mark.parametrize("protocol", ["tgcn", "dcrnn"])
def test_metr_la_zeros_are_masked_in_every_metric_whatever_the_protocol(
    tmp_path: Path, write_dcrnn, protocol: str
) -> None:
    speeds = metr_la_speeds()
    folder = write_dcrnn(tmp_path / "metr-la", speeds, ["a", "b", "c"], np.eye(3, dtype=np.float32))
    run = tmp_path / "run"
    arguments = ["--dataset", "metr-la", "--data-dir", str(folder), "--model", "persistence", "--protocol", protocol]
    assert main(["train", *arguments, "--out", str(run), *QUIET]) == 0
    trained = json.loads((run / "metrics.json").read_text())
    assert main(["evaluate", "--checkpoint", str(run), "--data-dir", str(folder), *QUIET]) == 0
    (evaluated,) = [json.loads(path.read_text()) for path in (run / "evaluate").glob("*/metrics.json")]

    if protocol == "tgcn":  # the series split 80/20; horizon k scores steps 1..k
        starts, horizons, cumulative = np.arange(240, 300 - 12 - 3 + 1), (3, 12), True
    else:  # all 277 windows split 70/10/20; horizon k scores step k
        starts, horizons, cumulative = np.arange(277)[-55:], (3, 12), False
    for horizon in horizons:
        masked = persistence_scores(speeds, starts, horizon, cumulative, masked=True)
        unmasked = persistence_scores(speeds, starts, horizon, cumulative, masked=False)
        assert unmasked["mae"] > masked["mae"] + 3.0  # a zero counted as a truth costs ~60 mph
        for metric in ("rmse", "mae"):
            for metrics in (trained, evaluated):
                assert metrics[f"test/h{horizon}/{metric}"] == pytest.approx(masked[metric], rel=1e-5)
        if protocol == "tgcn":
            assert trained[f"test/h{horizon}/accuracy"] == pytest.approx(masked["accuracy"], rel=1e-5)


class RunsCode:
    """Unpickling this object runs code: it creates ``marker`` (what a malicious file would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def test_the_payload_runs_code_when_unpickled_plainly(tmp_path: Path) -> None:
    # The payload of the tests below is live: a plain unpickler runs it.
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(RunsCode(marker)))
    assert marker.exists()


def test_a_graph_pickle_that_would_run_code_is_refused_by_the_cli(tmp_path: Path, write_dcrnn, capsys) -> None:
    marker = tmp_path / "ran"
    folder = write_dcrnn(tmp_path / "metr-la", metr_la_speeds(), ["a", "b", "c"], np.eye(3, dtype=np.float32))
    (folder / "adj_mx.pkl").write_bytes(pickle.dumps((["a", "b", "c"], {}, RunsCode(marker)), protocol=2))
    capsys.readouterr()
    code = main(["train", "--dataset", "metr-la", "--data-dir", str(folder), "--out", str(tmp_path / "run"), *QUIET])
    error = capsys.readouterr().err.strip()
    assert code == 2 and not marker.exists()
    assert len(error.splitlines()) == 1 and "adj_mx.pkl" in error and "refusing to load" in error and ".exec" in error
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())


def test_a_checkpoint_that_would_run_code_is_refused_by_the_cli(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "ran"
    checkpoint = tmp_path / "evil" / "checkpoints" / "last.ckpt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "hyper_parameters": {"model": RunsCode(marker)}}, checkpoint)
    capsys.readouterr()
    for verb in ("evaluate", "predict", "export"):
        code = main([verb, "--checkpoint", str(checkpoint), "--out", str(tmp_path / verb), *QUIET])
        error = capsys.readouterr().err.strip()
        assert code == 2 and not marker.exists(), (verb, error)
        assert len(error.splitlines()) == 1 and "last.ckpt" in error, error
