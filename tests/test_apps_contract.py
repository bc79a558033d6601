"""The CLI contract of DEVELOPERS.md, checked on every app in apps/ by the same tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from app_harness import APPS, ROOT, app_object, run_app

from pentad_core.cli import CONTRACT_VERBS

pytestmark = pytest.mark.skipif(not APPS, reason="no app in apps/ yet")


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def run_in_process(app: str, capsys, *argv: str):
    """Run the app's CLI in this interpreter (fast: no new torch import); returns (code, out, err)."""
    capsys.readouterr()
    code = app_object(app).main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line.strip()]


@pytest.mark.parametrize("app", APPS)
def test_help_exits_0_and_lists_every_contract_verb(app):
    result = run_app(app)
    assert result.returncode == 0, result.stderr
    for verb in CONTRACT_VERBS:
        assert verb in result.stdout, f"`{verb}` missing from apps/{app} help"
    assert set(CONTRACT_VERBS) <= set(app_object(app).verbs)


def best_checkpoint(run: Path) -> Path:
    files = sorted(p for p in (run / "checkpoints").rglob("*") if p.is_file())
    for prefix in ("best", "last"):
        for path in files:
            if path.name.startswith(prefix):
                return path
    assert files, f"no checkpoint in {run}"
    return files[0]


#: What each demo must reach on its generated data: a fixed bar where chance is known, else a
#: margin over the domain's trivial baseline run through the same demo (same data and split).
DEMO_BARS = {
    "vision": ("test/acc", "min", 0.80),  # 4 balanced classes: chance is 0.25
    "medseg": ("test/dice", "min", 0.80),  # an all-background mask scores 0
    "rl": ("eval/mean_return", "min", 195.0),  # CartPole-v1: a random policy averages about 22
    "recsys": ("test/rmse", "below", ("popularity", 0.95)),  # 5 % under the shrunk item means
    "traffic": ("test/rmse", "below", ("persistence", 0.95)),  # 5 % under repeating the last reading
}


def assert_demo_learned(app: str, metrics: dict, tmp_path: Path, capsys) -> None:
    key, kind, bar = DEMO_BARS[app]
    if kind == "min":
        assert metrics[key] >= bar, f"apps/{app} demo: {key} {metrics[key]:.4f} < {bar}"
        return
    baseline_model, factor = bar
    out = tmp_path / f"demo-{baseline_model}"
    code, _, lines = run_in_process(app, capsys, "demo", "--model", baseline_model, "--out", str(out))
    assert code == 0, lines
    baseline = json.loads((out / "metrics.json").read_text())[key]
    message = f"apps/{app} demo: {key} {metrics[key]:.4f} vs {baseline_model} {baseline:.4f}"
    assert metrics[key] <= factor * baseline, message


@pytest.mark.parametrize("app", APPS)
def test_demo_learns_then_evaluate_and_export_its_checkpoint(app, tmp_path, capsys):
    out = tmp_path / "demo"
    result = run_app(app, "demo", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "config.yaml").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics and all("/" in key for key in metrics), metrics
    assert any(key.startswith(("test/", "eval/")) for key in metrics), metrics
    assert_demo_learned(app, metrics, tmp_path, capsys)
    assert (out / "checkpoints").is_dir() and any((out / "checkpoints").iterdir())
    assert list(out.rglob("events.out.tfevents.*")), "no TensorBoard log"
    assert list(out.rglob("*.png")), "no plot"

    # The demo's checkpoint goes through evaluate and export (ONNX with the parity check).
    checkpoint = str(best_checkpoint(out))
    evaluated = tmp_path / "evaluate"
    code, _, lines = run_in_process(app, capsys, "evaluate", "--checkpoint", checkpoint, "--out", str(evaluated))
    assert code == 0, lines
    assert any(k.startswith(("test/", "eval/")) for k in json.loads((evaluated / "metrics.json").read_text()))
    exported = tmp_path / "export"
    code, _, lines = run_in_process(app, capsys, "export", "--checkpoint", checkpoint, "--out", str(exported))
    assert code == 0, lines
    assert list(exported.rglob("*.onnx")), "export wrote no ONNX file"


@pytest.mark.parametrize("app", APPS)
def test_unknown_option_is_one_line_and_exit_2(app):
    result = run_app(app, "train", "--no-such-option")
    assert result.returncode == 2
    assert len(error_lines(result)) == 1 and "--no-such-option" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("app", APPS)
def test_missing_data_folder_is_one_line_and_exit_2(app, tmp_path, capsys):
    dataset = app_object(app).real_dataset
    if dataset is None:
        pytest.skip(f"apps/{app} reads no dataset from disk")
    missing = tmp_path / "no-such-folder"
    out = tmp_path / "run"
    code, _, lines = run_in_process(
        app, capsys, "train", "--dataset", dataset, "--data-dir", str(missing), "--epochs", "1", "--out", str(out)
    )
    assert code == 2, lines
    assert len(lines) == 1 and str(missing) in lines[0], lines


@pytest.mark.parametrize("app", APPS)
def test_corrupt_config_is_one_line_and_exit_2(app, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.yaml"
    corrupt.write_text("trainer: {max_epochs: [1,\n  - oops")
    code, _, lines = run_in_process(app, capsys, "train", "--config", str(corrupt), "--out", str(tmp_path / "run"))
    assert code == 2
    assert len(lines) == 1 and str(corrupt) in lines[0], lines
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("app", APPS)
def test_unknown_model_is_one_line_and_exit_2(app, tmp_path, capsys):
    code, _, lines = run_in_process(app, capsys, "train", "--model", "no-such-model", "--out", str(tmp_path / "run"))
    assert code == 2
    assert len(lines) == 1 and "no-such-model" in lines[0], lines


@pytest.mark.parametrize("app", APPS)
def test_models_and_data_list(app, capsys):
    for args in (["models"], ["data", "list"]):
        code, out, lines = run_in_process(app, capsys, *args)
        assert code == 0, lines
        assert out.strip()


@pytest.mark.parametrize("app", APPS)
def test_every_shared_recipe_loads_into_the_app_config(app):
    """A typo in a recipe (unknown key, wrong type) is caught here, not in a user's benchmark run."""
    from pentad_core.config import config_from_dict, load_yaml, recipe_for_model

    recipes = sorted((ROOT / "shared" / "configs" / app).glob("*.yaml"))
    assert recipes, f"shared/configs/{app} holds no recipe"
    config_class = app_object(app).config_class
    for recipe in recipes:
        layer, _ = recipe_for_model(load_yaml(recipe))
        config = config_from_dict(config_class, layer)
        assert isinstance(config, config_class), recipe


@pytest.mark.parametrize("app", APPS)
def test_every_recipe_section_names_a_registered_model_and_resolves(app):
    """``models: {X: ...}`` in a recipe is what ``train --model X`` and ``benchmark`` apply: each section
    must name a model the app has and load into the app's config together with the recipe's common keys."""
    from pentad_core.config import config_from_dict, load_yaml, recipe_for_model

    scaffold = app_object(app)
    for path in sorted((ROOT / "shared" / "configs" / app).glob("*.yaml")):
        recipe = load_yaml(path)
        for name in [None, *(recipe.get("models") or {})]:
            layer, section = recipe_for_model(recipe, name)
            assert name is None or section == name, (path, name)
            config = config_from_dict(scaffold.config_class, layer if name is None else {**layer, "model": name})
            if scaffold.models is not None and config.model:
                assert config.model in scaffold.models, f"{path.name}: models.{name} is not a registered model"


@pytest.mark.parametrize("app", APPS)
def test_the_benchmark_table_has_a_row_for_every_registered_model(app):
    """Issue 20: every registered model's measured row (or the reason it has none) is in the app's table."""
    scaffold = app_object(app)
    if scaffold.models is None:
        pytest.skip(f"{app} has no model registry")
    table = (ROOT / "docs" / "benchmarks" / f"{app}.md").read_text(encoding="utf-8")
    missing = [name for name in scaffold.models if f"`{name}`" not in table]
    assert not missing, f"docs/benchmarks/{app}.md has no row for {missing}"
