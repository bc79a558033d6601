import json
from dataclasses import dataclass

import pytest

from pentad_core.checkpoint import load_checkpoint
from pentad_core.errors import ConfigError
from pentad_core.plotting import new_figure, plot_curves, read_logged_curves, save_figure
from pentad_core.runs import BLEND_IN_PROGRESS, RunDir, blend_runs, default_run_path, latest_run


def test_run_folder_layout_and_metric_merging(tmp_path):
    run = RunDir(tmp_path / "run")
    for folder in ("checkpoints", "logs", "plots"):
        assert (run.path / folder).is_dir()
    run.write_metrics({"val/loss": 0.5})
    merged = run.write_metrics({"test/acc": 0.9, "val/loss": 0.4})
    assert merged == {"val/loss": 0.4, "test/acc": 0.9}
    assert json.loads((run.path / "metrics.json").read_text()) == merged
    record = run.write_environment({"app": "x"})
    assert record["app"] == "x" and "python" in record


@dataclass
class Settings:
    model: str = "a"
    lr: float = 0.1


def test_a_blends_runs_keep_each_models_config_and_mark_the_run_until_it_is_resumed(tmp_path):
    run = RunDir(tmp_path / "run")
    runs, configs = blend_runs(run, ["a", "b"], Settings, [Settings("a", 0.1), Settings("b", 0.2)])
    assert [r.path for r in runs] == [tmp_path / "run" / "blend" / n for n in ("a", "b")]
    assert load_checkpoint(run.last_checkpoint) == {BLEND_IN_PROGRESS: ["a", "b"]}
    again, read = blend_runs(run, ["a", "b"], Settings)  # resuming: the configs written at the start
    assert [r.path for r in again] == [r.path for r in runs] and read == configs
    (runs[1].path / "config.yaml").write_text("model: b\nlr: 0.2\nlrr: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"blend/b/config.yaml: .*lrr"):
        blend_runs(run, ["a", "b"], Settings)
    (runs[1].path / "config.yaml").unlink()
    with pytest.raises(ConfigError, match=r"blend/b/config.yaml is missing"):
        blend_runs(run, ["a", "b"], Settings)


def test_training_guard(tmp_path):
    path = tmp_path / "run"
    run = RunDir.for_training(path)
    (run.path / "config.yaml").write_text("a: 1\n")
    (run.checkpoints / "last.ckpt").write_bytes(b"x")
    with pytest.raises(ConfigError, match="already holds a run"):
        RunDir.for_training(path)
    assert RunDir.for_training(path, resume=True).last_checkpoint.exists()
    RunDir.for_training(path, overwrite=True)
    assert not (path / "checkpoints" / "last.ckpt").exists()


def test_default_path_and_latest_run(tmp_path):
    path = default_run_path("medseg", "unet", "drive", root=tmp_path)
    assert path.parent == tmp_path / "medseg" and path.name.endswith("-unet-drive")
    assert "pentad-ConnectFour-v0" in default_run_path("rl", "ppo", "pentad/ConnectFour-v0", root=tmp_path).name
    assert latest_run("medseg", tmp_path) is None
    older, newer = tmp_path / "medseg" / "20260101-000000-a-b", tmp_path / "medseg" / "20260102-000000-a-b"
    for folder in (older, newer):
        RunDir(folder)
        (folder / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert latest_run("medseg", tmp_path) == newer


def test_plots_are_png(tmp_path):
    figure, axes = new_figure()
    axes.plot([1, 2, 3])
    path = save_figure(figure, tmp_path / "line.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "metrics.csv").write_text("epoch,step,train/loss,val/loss\n0,1,0.9,\n0,1,,0.8\n1,2,0.7,\n1,2,,0.6\n")
    curves = read_logged_curves(tmp_path / "metrics.csv")
    assert curves == {"train/loss": [0.9, 0.7], "val/loss": [0.8, 0.6]}
    assert plot_curves(curves, tmp_path / "curves.png").stat().st_size > 1000
