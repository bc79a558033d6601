import pytest

from pentad_core.errors import ConfigError
from pentad_core.registry import Registry


def test_register_build_and_list_with_pattern():
    models = Registry("model")

    @models.register("resnet18")
    def resnet18(num_classes: int = 10):
        """ResNet-18."""
        return ("resnet18", num_classes)

    models.register("resnet34", lambda num_classes=10: ("resnet34", num_classes), description="ResNet-34")
    models.register("vgg11", lambda: "vgg")

    assert models.build("resnet18", num_classes=3) == ("resnet18", 3)
    assert models.names() == ["resnet18", "resnet34", "vgg11"]
    assert models.names("resnet*") == ["resnet18", "resnet34"]
    assert models.describe("resnet18") == "ResNet-18."
    assert models.describe("resnet34") == "ResNet-34"
    assert "vgg11" in models and len(models) == 3


def test_duplicate_name_raises():
    models = Registry("model")
    models.register("a", object)
    with pytest.raises(ValueError, match="already registered"):
        models.register("a", object)


def test_unknown_name_is_a_user_error_with_suggestion():
    models = Registry("model")
    models.register("resnet18", object)
    with pytest.raises(ConfigError, match="unknown model 'resnet19'.*Did you mean resnet18"):
        models.build("resnet19")
