"""Typed configuration: YAML -> dataclass -> command-line overrides.

Configs are plain (nested) dataclasses. Loading validates every key and value against the
dataclass's type hints, so a typo in a YAML file or a ``--set`` override fails with a message that
names the key instead of being silently ignored.

Precedence, lowest first: dataclass defaults < recipe YAML < ``--config FILE`` < command-line options.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pentad_core.errors import ConfigError

C = TypeVar("C")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path``.

    Raises:
        ConfigError: If the file is missing, unreadable, not valid YAML or not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}.", "Check the path given to --config.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{line}.", "Fix or replace the file.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values, not {type(data).__name__}.")
    return data


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check ``value`` against ``annotation`` and convert where the conversion is lossless."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as error:
                errors.append(error)
        raise ConfigError(f"config key {key!r}: {value!r} is not a valid {_type_name(annotation)}.")
    if origin is typing.Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed:
            choices = ", ".join(repr(a) for a in allowed)
            raise ConfigError(f"config key {key!r}: {value!r} is not one of {choices}.")
        return value
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key {key!r} must be a mapping, got {value!r}.")
        return config_from_dict(annotation, value, prefix=f"{key}.")
    if origin in (list, tuple) or annotation in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key {key!r} must be a list, got {value!r}.")
        args = typing.get_args(annotation)
        item_type = args[0] if args else Any
        items = [_coerce(item, item_type, f"{key}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if (origin or annotation) is tuple else items
    if origin is dict or annotation is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key {key!r} must be a mapping, got {value!r}.")
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r} must be true or false, got {value!r}.")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"config key {key!r} must be an integer, got {value!r}.")
    if annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"config key {key!r} must be a number, got {value!r}.")
    if annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key {key!r} must be a string, got {value!r}.")
    return value


def _unknown_key(cls: type, name: str, prefix: str) -> ConfigError:
    known = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {prefix}{close[0]!s}?" if close else f" Known keys: {', '.join(known)}."
    return ConfigError(f"unknown config key {prefix}{name!r}.{hint}")


def config_from_dict(cls: type[C], data: Mapping[str, Any], prefix: str = "") -> C:
    """Build the dataclass ``cls`` from a mapping, validating every key and value.

    Args:
        cls: A dataclass type; nested dataclass fields take nested mappings.
        data: Keys and values, e.g. from YAML.
        prefix: Dotted path of ``cls`` inside the root config, for messages.

    Raises:
        ConfigError: On an unknown key or a value of the wrong type.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    values = {}
    for name, value in data.items():
        if name not in fields:
            raise _unknown_key(cls, name, prefix)
        values[name] = _coerce(value, hints[name], f"{prefix}{name}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"invalid config{' ' + prefix.rstrip('.') if prefix else ''}: {error}") from None


def config_to_dict(config: Any) -> dict[str, Any]:
    """A plain, YAML-safe dict of a (nested) dataclass config."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, Path):
            return str(value)
        return value

    return plain(config)


def merge_dicts(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``update`` into a copy of ``base`` (mappings merge, other values replace)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_dicts(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``"trainer.max_epochs=5"`` into the dotted key and a YAML-parsed value.

    Raises:
        ConfigError: If the text has no ``=`` or an empty key.
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like key=value (e.g. --set trainer.max_epochs=5).")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        # YAML 1.1 reads 1e-4 and 1e30 as strings (it wants a dot and a signed exponent); a user means numbers
        value = float(value)
    return key.strip(), value


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def nest(key: str, value: Any) -> dict[str, Any]:
    """``nest("a.b", 1) == {"a": {"b": 1}}``."""
    result: Any = value
    for part in reversed(key.split(".")):
        result = {part: result}
    return result


def resolve_config(cls: type[C], layers: list[Mapping[str, Any]]) -> C:
    """Merge mappings (lowest precedence first) over the defaults of ``cls`` and validate.

    Args:
        cls: The dataclass of the app's config.
        layers: E.g. ``[recipe_yaml, user_yaml, command_line]``.

    Returns:
        The validated config.
    """
    merged: dict[str, Any] = config_to_dict(cls())
    for layer in layers:
        merged = merge_dicts(merged, layer)
    return config_from_dict(cls, merged)


#: The recipe key that holds per-model sections: ``models: {<model>: {<config keys>}}``.
RECIPE_MODELS_KEY = "models"


def recipe_for_model(recipe: Mapping[str, Any], model: str | None = None) -> tuple[dict[str, Any], str | None]:
    """The recipe as it applies to ``model``: its common keys with the model's own section over them.

    A dataset recipe may hold a ``models:`` mapping of model name -> the settings that model was tuned with
    on that dataset. ``model`` (``None``: the recipe's own ``model``) picks the section. The recipe's
    top-level ``model_options`` belong to the recipe's own model, so another model does not inherit them.

    Args:
        recipe: The recipe YAML as loaded.
        model: The model asked for (``--model``), or ``None``.

    Returns:
        ``(layer, section)``: the config layer to merge, and the name of the section applied (or ``None``).

    Raises:
        ConfigError: If ``models`` is not a mapping of model names to mappings.
    """
    sections = recipe.get(RECIPE_MODELS_KEY) or {}
    if not isinstance(sections, Mapping) or not all(isinstance(v, Mapping) for v in sections.values()):
        raise ConfigError(
            f"recipe key {RECIPE_MODELS_KEY!r} must map model names to mappings of config keys.",
            "Write e.g. `models: {gru: {lr: 0.001}}`.",
        )
    layer = {key: value for key, value in recipe.items() if key != RECIPE_MODELS_KEY}
    chosen = model or layer.get("model")
    if chosen and layer.get("model") not in (None, chosen):
        layer.pop("model_options", None)
    if not chosen or chosen not in sections:
        return layer, None
    return merge_dicts(layer, sections[chosen]), str(chosen)


def save_config(config: Any, path: str | Path) -> None:
    """Write ``config`` as YAML, atomically."""
    from pentad_core.files import atomic_write_text

    text = yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=False)
    atomic_write_text(path, text)


def field_docs(cls: type) -> dict[str, str]:
    """The ``#:`` comment documentation of each field of a dataclass (its bases' included), read from source.

    Used by ``--help`` listings and docs so that every config field carries its explanation.
    """
    import inspect

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        pending: list[str] = []
        for line in source.splitlines():
            stripped = line.strip()
            if stripped.startswith("#:"):
                pending.append(stripped[2:].strip())
            elif ":" in stripped and pending and not stripped.startswith(("#", "@", "def", "class")):
                docs[stripped.split(":", 1)[0].strip()] = " ".join(pending)
                pending = []
            elif not stripped.startswith("#"):
                pending = []
    return docs
