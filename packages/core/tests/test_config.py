from dataclasses import dataclass, field

import pytest

from pentad_core.cli import RunConfig
from pentad_core.config import (
    config_from_dict,
    config_to_dict,
    field_docs,
    load_yaml,
    parse_override,
    resolve_config,
    save_config,
)
from pentad_core.errors import ConfigError
from pentad_core.training import TrainerConfig


@dataclass
class Optimiser:
    #: Learning rate.
    learning_rate: float = 0.1
    #: Nesterov momentum.
    nesterov: bool = False


@dataclass
class Example(RunConfig):
    #: Width of the network.
    width: int = 16
    #: Optimiser settings.
    optimiser: Optimiser = field(default_factory=Optimiser)
    #: Crop sizes.
    crops: list[int] = field(default_factory=lambda: [32])


def test_yaml_then_command_line_precedence(tmp_path):
    recipe = {"width": 32, "optimiser": {"learning_rate": 0.5}, "trainer": {"max_epochs": 7}}
    user = {"optimiser": {"nesterov": True}, "trainer": {"max_epochs": 9}}
    command_line = {"trainer": {"max_epochs": 3}, "width": 64}
    config = resolve_config(Example, [recipe, user, command_line])
    assert config.width == 64
    assert config.optimiser.learning_rate == 0.5
    assert config.optimiser.nesterov is True
    assert config.trainer.max_epochs == 3
    assert config.trainer.precision == "auto"  # untouched default


def test_round_trip_through_yaml(tmp_path):
    config = resolve_config(Example, [{"width": 8, "crops": [24, 28]}])
    save_config(config, tmp_path / "config.yaml")
    again = config_from_dict(Example, load_yaml(tmp_path / "config.yaml"))
    assert again == config
    assert config_to_dict(again)["trainer"]["max_epochs"] == TrainerConfig().max_epochs


def test_unknown_key_names_the_key_and_suggests():
    with pytest.raises(ConfigError, match=r"unknown config key optimiser\.'learning_rat'.*learning_rate"):
        resolve_config(Example, [{"optimiser": {"learning_rat": 1.0}}])
    with pytest.raises(ConfigError, match="unknown config key 'widht'"):
        resolve_config(Example, [{"widht": 1}])


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ({"width": "wide"}, "'width' must be an integer"),
        ({"width": 1.5}, "'width' must be an integer"),
        ({"optimiser": {"nesterov": "yes"}}, "must be true or false"),
        ({"optimiser": 3}, "must be a mapping"),
        ({"crops": [32, "x"]}, r"crops\[1\]"),
        ({"trainer": {"strategy": "horovod"}}, "--strategy 'horovod'"),
        ({"trainer": {"max_epochs": 0}}, "--epochs must be a positive"),
    ],
)
def test_bad_values_are_config_errors(layer, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(Example, [layer])


def test_lossless_coercions():
    config = resolve_config(Example, [{"optimiser": {"learning_rate": 1}, "width": 4.0}])
    assert config.optimiser.learning_rate == 1.0 and isinstance(config.optimiser.learning_rate, float)
    assert config.width == 4 and isinstance(config.width, int)


def test_parse_override():
    assert parse_override("trainer.max_epochs=5") == ("trainer.max_epochs", 5)
    assert parse_override("data_dir=/x/y") == ("data_dir", "/x/y")
    assert parse_override("crops=[1, 2]") == ("crops", [1, 2])
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("no-equals")


def test_corrupt_yaml_and_non_mapping(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("width: [1, 2\n  oops: {")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_yaml(listing)
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")


def test_every_field_is_documented():
    for config_class in (RunConfig, TrainerConfig):
        documented = field_docs(config_class)
        fields = [name for name in config_class.__dataclass_fields__ if not name.startswith("_")]
        missing = [name for name in fields if not documented.get(name)]
        assert not missing, f"{config_class.__name__} fields without a #: comment: {missing}"


def test_overrides_read_exponent_numbers_as_numbers():
    from pentad_core.config import parse_override

    assert parse_override("lr=1e-4") == ("lr", 1e-4)
    assert parse_override("lr=1e30") == ("lr", 1e30)
    assert parse_override("lr=-2.5E-3") == ("lr", -2.5e-3)
    assert parse_override("name=1e4x") == ("name", "1e4x")
    assert parse_override("version=1.0") == ("version", 1.0)
