"""Name -> factory registries with typed metadata, in the style of timm's ``create_model``.

Each domain package keeps one registry per kind of thing (models, datasets, losses). An entry is
registered by a decorator in its own file, together with its metadata in one typed form for all
five domains (:class:`ModelInfo` for models, :class:`~pentad_core.data.DatasetInfo` for datasets).
Registering a name twice is a bug and raises; building an unknown name, or passing an option the
factory does not take, is a user error (:class:`~pentad_core.errors.ConfigError`) that names it
and lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pentad_core.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class EntryInfo:
    """Metadata of an entry that needs none beyond its name and description."""


@dataclass(frozen=True)
class ModelInfo:
    """What the CLI, the contract tests and the serving code know about a registered model.

    The same fields in every domain; each domain documents its own vocabulary for ``tasks`` and
    ``inputs`` next to its registry.
    """

    #: Tasks the model solves, in the domain's words (e.g. ``("rating", "ranking")``); empty: every task.
    tasks: tuple[str, ...] = ()
    #: What one prediction consumes: ``"image"``, ``"ids"``, ``"sequence"``, ``"window"``, ``"observation"``.
    inputs: str = ""
    #: Options the model is built with unless ``model_options`` says otherwise.
    defaults: Mapping[str, Any] = field(default_factory=dict)
    #: Learned by gradient descent; False for closed-form or heuristic baselines.
    trainable: bool = True
    #: Smallest input side (pixels, steps) the network accepts; 0 for any.
    min_input_size: int = 0
    #: Where the architecture comes from: ``"pentad"``, ``"torchvision"``, ``"smp"``, ``"sb3"``, ...
    family: str = "pentad"
    #: Exports to ONNX; False means it is exported and served with the torch backend only.
    exportable: bool = True


def accepted_options(target: Callable[..., Any]) -> tuple[list[str], bool]:
    """The keyword parameters ``target`` (a function or class) takes, and whether it takes ``**kwargs``."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return [], True
    names, open_ended = [], False
    for name, parameter in signature.parameters.items():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            open_ended = True
        elif parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            names.append(name)
    return names, open_ended


def check_options(
    target: Callable[..., Any], options: Mapping[str, Any], what: str, *, given: tuple[str, ...] = ()
) -> None:
    """Raise when ``options`` holds a key that ``target``'s signature does not take.

    Args:
        target: The factory (function or class) the options are passed to.
        options: The user's options, e.g. ``config.model_options``.
        what: How the options are named in messages, e.g. ``"model_options of 'tgcn'"``.
        given: Parameters the caller fills itself (sizes, data); they are not user options.

    Raises:
        ConfigError: Naming the first unknown key, a close match if any, and the valid keys.
    """
    names, open_ended = accepted_options(target)
    if open_ended:
        return  # a factory with **kwargs forwards them; whatever it forwards to checks them
    valid = [name for name in names if name not in given and name != "self"]
    for key in options:
        if key in given:
            raise ConfigError(f"{what}: {key!r} is set by pentad from the data; remove it.")
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            listing = ", ".join(valid) if valid else "none"
            raise ConfigError(f"{what}: unknown option {key!r}.{hint} Valid options: {listing}.")


def import_submodules(package: str) -> list[str]:
    """Import every module of ``package`` (not sub-packages' modules), in name order.

    A domain's ``models/__init__.py`` and ``data/__init__.py`` call it, so a network or dataset
    registers itself by being a file in that folder: adding one touches that one file.

    Returns:
        The imported module names.
    """
    path = importlib.import_module(package).__path__
    names = sorted(f"{package}.{info.name}" for info in pkgutil.iter_modules(path) if not info.name.startswith("_"))
    for name in names:
        importlib.import_module(name)
    return names


class Registry(Generic[T]):
    """Maps names to factories (classes or functions) and their typed metadata.

    Args:
        kind: What the registry holds, used in messages (e.g. ``"model"``).
        info_class: Frozen dataclass of each entry's metadata (default: :class:`EntryInfo`, none).

    Example:
        >>> models = Registry("model", ModelInfo)
        >>> @models.register("tiny", tasks=("classification",), inputs="image")
        ... def tiny(num_classes: int = 10, width: int = 8): ...
        >>> models.names(), models.info("tiny").inputs
        (['tiny'], 'image')
    """

    def __init__(self, kind: str, info_class: type = EntryInfo) -> None:
        if not dataclasses.is_dataclass(info_class):
            raise TypeError("info_class must be a dataclass")
        self.kind = kind
        self.info_class = info_class
        self._entries: dict[str, Callable[..., T]] = {}
        self._descriptions: dict[str, str] = {}
        self._infos: dict[str, Any] = {}

    def register(
        self, name: str, factory: Callable[..., T] | None = None, *, description: str | None = None, **info: Any
    ) -> Any:
        """Register ``factory`` under ``name``; usable as a decorator.

        Args:
            name: Unique name, lower case with dashes by convention.
            factory: The class or function; omit it to use the method as a decorator.
            description: One line for listings; defaults to the first docstring line.
            **info: Fields of the registry's ``info_class`` (e.g. ``tasks``, ``inputs``, ``defaults``).

        Raises:
            ValueError: If ``name`` is already registered or an info field is unknown.
        """
        try:
            entry_info = self.info_class(**info)
        except TypeError as error:
            raise ValueError(f"{self.kind} {name!r}: {error}") from None

        def add(target: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = target
            doc = (target.__doc__ or "").strip().splitlines()
            self._descriptions[name] = description or (doc[0] if doc else "")
            self._infos[name] = entry_info
            return target

        return add(factory) if factory is not None else add

    def get(self, name: str) -> Callable[..., T]:
        """Return the factory registered under ``name``.

        Raises:
            ConfigError: If the name is unknown; the message lists close matches.
        """
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=3)
            suggestion = f" Did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown {self.kind} {name!r}.{suggestion} Known: {', '.join(self.names())}.") from None

    def info(self, name: str) -> Any:
        """The metadata of ``name`` (an instance of ``info_class``)."""
        self.get(name)
        return self._infos[name]

    def options(self, name: str, options: Mapping[str, Any] | None = None, *, given: tuple[str, ...] = ()) -> dict:
        """``info.defaults`` (when the info has them) updated with ``options``, checked against the factory.

        Raises:
            ConfigError: If an option is not a parameter of the factory (see :func:`check_options`).
        """
        factory = self.get(name)
        defaults = getattr(self._infos[name], "defaults", None) or {}
        merged = {**defaults, **(options or {})}
        check_options(factory, merged, f"{self.kind} {name!r}", given=given)
        return merged

    def build(self, name: str, /, options: Mapping[str, Any] | None = None, **arguments: Any) -> T:
        """Build ``name`` with the caller's ``arguments`` and the user's ``options``.

        Args:
            name: Registered name.
            options: User-facing options (a config's ``model_options``, ...): the entry's
                ``defaults`` updated with them, every key checked against the factory's signature.
            **arguments: What the caller derives itself (sizes, the data); never listed as options.

        Raises:
            ConfigError: If ``name`` is unknown or an option is misspelled.
        """
        merged = self.options(name, options, given=tuple(arguments))
        accepted, open_ended = accepted_options(self.get(name))
        extra = [key for key in arguments if key not in accepted]
        if extra and not open_ended:
            raise ConfigError(
                f"{self.kind} {name!r} does not take {', '.join(map(repr, extra))}, which pentad derives for it; "
                f"it takes {', '.join(accepted) or 'nothing'}.",
                f"Choose another {self.kind}, or drop the setting that asks for {extra[0]!r}.",
            )
        return self.get(name)(**arguments, **merged)

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching a shell-style ``pattern`` (e.g. ``"resnet*"``)."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def describe(self, name: str) -> str:
        """The one-line description of ``name``."""
        self.get(name)
        return self._descriptions[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
