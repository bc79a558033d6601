"""The steps every domain used to write itself, now written once in core.

Typed registry metadata and option checks, the trainer factory without a validation split, the
checkpoint -> module rebuild and ``--pretrained`` weight copy, the one CSV writer, generated
datasets without a folder, the run locator behind every ``Predictor.from_run``, and an app without
Lightning that offers none of the trainer's options.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field

import pytest
import torch
import yaml
from torch import nn

from pentad_core.checkpoint import atomic_save, copy_matching_weights, load_module
from pentad_core.cli import App, BaseRunConfig, RunConfig
from pentad_core.data import DatasetInfo, RemoteFile
from pentad_core.errors import CheckpointError, ConfigError
from pentad_core.files import atomic_write_csv
from pentad_core.predictor import Predictor, TrainedRun, locate_run
from pentad_core.registry import ModelInfo, Registry, check_options
from pentad_core.runs import RunDir
from pentad_core.training import PentadModule, TrainerConfig, build_trainer

# -- registry ---------------------------------------------------------------------------------------


def make_models() -> Registry:
    models = Registry("model", ModelInfo)

    @models.register("mlp", tasks=("regression",), inputs="vector", defaults={"hidden": 8})
    def mlp(in_features: int, hidden: int = 4, dropout: float = 0.0):
        """A small MLP."""
        return {"in_features": in_features, "hidden": hidden, "dropout": dropout}

    return models


def test_registered_entries_carry_typed_info_and_defaults_apply_under_the_users_options():
    models = make_models()
    info = models.info("mlp")
    assert isinstance(info, ModelInfo)
    assert info.tasks == ("regression",) and info.inputs == "vector" and info.trainable
    assert models.describe("mlp") == "A small MLP."
    assert models.build("mlp", in_features=3) == {"in_features": 3, "hidden": 8, "dropout": 0.0}
    built = models.build("mlp", options={"hidden": 2, "dropout": 0.5}, in_features=3)
    assert built == {"in_features": 3, "hidden": 2, "dropout": 0.5}


def test_a_misspelled_option_names_itself_a_close_match_and_the_valid_ones():
    models = make_models()
    expected = r"model 'mlp': unknown option 'hiden'\. Did you mean 'hidden'\? Valid options: hidden, dropout\."
    with pytest.raises(ConfigError, match=expected):
        models.build("mlp", options={"hiden": 3}, in_features=3)


def test_an_option_the_caller_derives_from_the_data_is_not_a_user_option():
    with pytest.raises(ConfigError, match="'in_features' is set by pentad from the data"):
        make_models().build("mlp", options={"in_features": 5}, in_features=3)


def test_unknown_info_fields_are_a_registration_bug():
    models = Registry("model", ModelInfo)
    with pytest.raises(ValueError, match="unexpected keyword argument 'task'"):
        models.register("x", object, task="rating")


def test_check_options_on_a_class_reads_its_constructor():
    class Agent:
        def __init__(self, policy: str, learning_rate: float = 3e-4, gamma: float = 0.99) -> None: ...

    check_options(Agent, {"learning_rate": 1e-3}, "algorithm 'agent'", given=("policy",))
    with pytest.raises(ConfigError, match="algorithm 'agent': unknown option 'gama'.*'gamma'"):
        check_options(Agent, {"gama": 0.9}, "algorithm 'agent'", given=("policy",))


# -- trainer factory --------------------------------------------------------------------------------


class TinyRegression(PentadModule):
    def __init__(self, features: int = 4) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Linear(features, 1)
        self.head = nn.Linear(1, 1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(inputs))

    def training_step(self, batch, batch_index):
        inputs, targets = batch
        loss = nn.functional.mse_loss(self(inputs), targets)
        self.log_training("train/loss", loss, batch_size=len(inputs))
        return loss

    def validation_step(self, batch, batch_index):
        inputs, targets = batch
        self.log("val/loss", nn.functional.mse_loss(self(inputs), targets))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def loader() -> torch.utils.data.DataLoader:
    inputs = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(inputs, inputs.sum(1, keepdim=True)), 8)


def test_without_a_validation_split_the_val_monitor_goes_and_the_last_checkpoint_is_kept(tmp_path):
    settings = TrainerConfig(
        max_epochs=2, accelerator="cpu", devices="1", monitor="val/loss", early_stopping_patience=3, progress_bar=False
    )
    run = RunDir(tmp_path)
    trainer = build_trainer(settings, run, has_validation=False)
    assert not any(type(c).__name__ == "EarlyStopping" for c in trainer.callbacks)
    trainer.fit(TinyRegression(), train_dataloaders=loader())
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["last.ckpt"]
    assert settings.monitor == "val/loss"  # the caller's config is not changed


def test_with_a_validation_split_early_stopping_on_the_monitor_stays(tmp_path):
    settings = TrainerConfig(max_epochs=1, accelerator="cpu", monitor="val/loss", early_stopping_patience=3)
    trainer = build_trainer(settings, RunDir(tmp_path))
    assert any(type(c).__name__ == "EarlyStopping" for c in trainer.callbacks)


def test_the_module_base_owns_the_training_log_and_logs_the_epoch_mean(tmp_path):
    settings = TrainerConfig(max_epochs=1, accelerator="cpu", devices="1", monitor="", progress_bar=False)
    module = TinyRegression()
    trainer = build_trainer(settings, RunDir(tmp_path))
    trainer.fit(module, train_dataloaders=loader())
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


# -- checkpoints ------------------------------------------------------------------------------------


def trained_checkpoint(tmp_path) -> tuple[TinyRegression, object]:
    settings = TrainerConfig(max_epochs=1, accelerator="cpu", devices="1", monitor="", progress_bar=False)
    run = RunDir(tmp_path / "run")
    module = TinyRegression()
    build_trainer(settings, run).fit(module, train_dataloaders=loader())
    return module, run.last_checkpoint


def test_load_module_rebuilds_the_trained_module_in_eval_mode(tmp_path):
    module, path = trained_checkpoint(tmp_path)
    loaded = load_module(TinyRegression, path)
    assert not loaded.training
    for key, value in module.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    inputs = torch.randn(5, 4)
    assert torch.equal(loaded(inputs), module.eval()(inputs))


def test_load_module_says_which_checkpoint_does_not_fit(tmp_path):
    _, path = trained_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="does not fit TinyRegression"):
        load_module(TinyRegression, path, build=lambda hp: TinyRegression(features=hp["features"] + 1))
    plain = atomic_save({"weights": torch.ones(2)}, tmp_path / "plain.ckpt")
    with pytest.raises(CheckpointError, match="not a TinyRegression checkpoint"):
        load_module(TinyRegression, plain)


def test_pretrained_weights_copy_only_matching_tensors(tmp_path):
    module, path = trained_checkpoint(tmp_path)
    fresh = TinyRegression()
    head_before = fresh.head.weight.detach().clone()
    left = copy_matching_weights(fresh, path, prefix="net.")
    assert torch.equal(fresh.net.weight, module.net.weight)
    assert torch.equal(fresh.head.weight, head_before)
    assert left == ["head.weight", "head.bias"]
    with pytest.raises(CheckpointError, match="holds no tensor that fits"):
        copy_matching_weights(nn.Sequential(nn.Linear(7, 2)), path)


# -- files ------------------------------------------------------------------------------------------


def test_atomic_csv_writes_a_header_six_significant_digits_and_empty_cells(tmp_path):
    path = atomic_write_csv(tmp_path / "rows.csv", [{"name": "a", "dice": 0.123456789}, {"name": "b", "auc": 1.0}])
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows == [{"name": "a", "dice": "0.123457", "auc": ""}, {"name": "b", "dice": "", "auc": "1"}]
    assert atomic_write_csv(tmp_path / "none.csv", []).read_text() == ""
    ordered = atomic_write_csv(tmp_path / "ordered.csv", [{"b": 1, "a": 2}], columns=["a", "b"])
    assert ordered.read_text() == "a,b\n2,1\n"


# -- runs and predictors ----------------------------------------------------------------------------


@dataclass
class ToyConfig(RunConfig):
    """A config with one field of its own."""

    #: Width of the toy model.
    width: int = 3


class ToyPredictor(Predictor):
    config_class = ToyConfig

    @classmethod
    def from_trained_run(cls, run: TrainedRun, **options):
        predictor = cls(run, run.typed_config(ToyConfig))
        predictor.module = load_module(TinyRegression, run.checkpoint)
        return predictor

    def predict(self, inputs):
        with torch.no_grad():
            return self.module(torch.as_tensor(inputs, dtype=torch.float32))


def test_a_predictor_loads_from_the_run_folder_or_the_checkpoint_alike(tmp_path):
    module, path = trained_checkpoint(tmp_path)
    run = RunDir(tmp_path / "run")
    run.write_config(ToyConfig(width=5))
    run.write_metrics({"test/rmse": 0.5})
    inputs = torch.randn(3, 4)
    by_folder, by_file = ToyPredictor.from_run(run.path), ToyPredictor.from_run(path)
    assert by_folder.run.checkpoint == path and by_file.run.folder.resolve() == run.path.resolve()
    assert by_folder.config.width == 5 and by_folder.metrics == {"test/rmse": 0.5}
    assert torch.equal(by_folder.predict(inputs), by_file.predict(inputs))
    assert torch.equal(by_folder.predict(inputs), module.eval()(inputs).detach())


def test_locate_run_prefers_best_and_says_what_is_missing(tmp_path):
    run = RunDir(tmp_path / "run")
    with pytest.raises(CheckpointError, match="holds no trained model.*checkpoints/best.ckpt, checkpoints/last.ckpt"):
        locate_run(run.path)
    atomic_save({}, run.last_checkpoint)
    assert locate_run(run.path).checkpoint == run.last_checkpoint
    atomic_save({}, run.best_checkpoint)
    assert locate_run(run.path).checkpoint == run.best_checkpoint
    with pytest.raises(CheckpointError, match="does not exist"):
        locate_run(tmp_path / "nowhere")


def test_a_run_config_this_version_does_not_accept_names_the_file(tmp_path):
    run = RunDir(tmp_path / "run")
    atomic_save({}, run.last_checkpoint)
    (run.path / "config.yaml").write_text(yaml.safe_dump({"widht": 4}))
    with pytest.raises(ConfigError, match=r"config\.yaml: unknown config key 'widht'"):
        locate_run(run.path).typed_config(ToyConfig)


# -- apps -------------------------------------------------------------------------------------------


@dataclass
class AgentConfig(BaseRunConfig):
    """A config of an app that does not train with Lightning."""

    #: Environment steps.
    timesteps: int = 100


def test_an_app_without_lightning_offers_none_of_the_trainer_options(capsys):
    app = App("agents", "An app without Lightning.", AgentConfig)
    app.verb("train", "Train.", trains=True)(lambda context: None)
    help_text = app.build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for flag in ("--epochs", "--batch-size", "--accelerator", "--devices", "--precision", "--num-nodes", "--strategy"):
        assert flag not in help_text
    with pytest.raises(SystemExit) as exit_info:
        app.build_parser().parse_args(["train", "--batch-size", "8"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --batch-size 8" in capsys.readouterr().err


def test_generated_datasets_have_no_folder_and_downloads_come_from_the_registry(tmp_path, capsys):
    datasets = Registry("dataset", DatasetInfo)
    files = (RemoteFile(url="https://example.org/real.zip", filename="real.zip"),)
    datasets.register("synthetic", lambda: None, description="generated", generated=True)
    datasets.register("real", lambda: None, description="published", files=files)
    app = App("toyapp", "Toy.", RunConfig, datasets=datasets)
    assert app.dataset_folder("synthetic", str(tmp_path)) is None
    assert app.dataset_folder("real", str(tmp_path)) == tmp_path
    assert app.remote_files == {"real": list(files)}
    assert app.main(["data", "verify", "synthetic"]) == 0
    assert "generated by the package" in capsys.readouterr().out


def test_an_argument_pentad_derives_that_the_factory_does_not_take_is_named_as_such():
    with pytest.raises(ConfigError, match=r"model 'mlp' does not take 'skip_bad', which pentad derives for it"):
        make_models().build("mlp", in_features=3, skip_bad=True)


def test_import_submodules_imports_every_module_of_a_folder(tmp_path, monkeypatch):
    package = tmp_path / "plugins_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("FOUND = []\n")
    for name in ("beta", "alpha", "_private"):
        (package / f"{name}.py").write_text(f"import plugins_pkg\nplugins_pkg.FOUND.append({name!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from pentad_core.registry import import_submodules

    assert import_submodules("plugins_pkg") == ["plugins_pkg.alpha", "plugins_pkg.beta"]
    import plugins_pkg

    assert plugins_pkg.FOUND == ["alpha", "beta"]


def test_data_verify_reports_a_checksum_mismatch_even_when_the_dataset_checks_itself(tmp_path, capsys):
    datasets = Registry("dataset", DatasetInfo)
    good = b"the published bytes"
    files = (RemoteFile(url="https://example.org/a.bin", filename="a.bin", sha256=hashlib.sha256(good).hexdigest()),)
    datasets.register("real", lambda: None, description="published", files=files)
    app = App("toyapp", "Toy.", RunConfig, datasets=datasets, verify_dataset=lambda name, root: "3 images")
    (tmp_path / "a.bin").write_bytes(good)
    assert app.main(["data", "verify", "real", "--data-dir", str(tmp_path)]) == 0
    assert "OK (3 images)" in capsys.readouterr().out
    (tmp_path / "a.bin").write_bytes(b"tampered")
    assert app.main(["data", "verify", "real", "--data-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "checksum mismatch" in error and "data download real" in error
    (tmp_path / "a.bin").unlink()  # extracted and removed: the dataset's own check decides
    assert app.main(["data", "verify", "real", "--data-dir", str(tmp_path)]) == 0


def test_a_recipes_model_options_apply_to_its_own_model_only(tmp_path, monkeypatch):
    folder = tmp_path / "configs" / "toyapp"
    folder.mkdir(parents=True)
    (folder / "synthetic.yaml").write_text("model: mlp\nmodel_options: {hidden: 32}\nseed: 7\n")
    monkeypatch.setenv("PENTAD_CONFIGS", str(tmp_path / "configs"))

    @dataclass
    class Options(RunConfig):
        """A config with model options."""

        #: Options of the model.
        model_options: dict = field(default_factory=dict)

    app = App("toyapp", "Toy.", Options)
    app.verb("train", "Train.", trains=True)(lambda context: None)
    parser = app.build_parser()
    own = app.resolve_config(parser.parse_args(["train"]), app._verbs["train"])
    other = app.resolve_config(parser.parse_args(["train", "--model", "linear"]), app._verbs["train"])
    assert own.model == "mlp" and own.model_options == {"hidden": 32}
    assert other.model == "linear" and other.model_options == {} and other.seed == 7
