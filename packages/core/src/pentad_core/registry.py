"""A name -> factory registry, in the style of timm's ``create_model``.

Each domain package keeps one registry per kind of thing (models, losses, datasets).
Registering a name twice is a bug and raises; building an unknown name is a user error and
raises :class:`~pentad_core.errors.PentadError` listing close matches.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from pentad_core.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories (classes or functions).

    Args:
        kind: What the registry holds, used in messages (e.g. ``"model"``).

    Example:
        >>> models = Registry("model")
        >>> @models.register("tiny")
        ... def tiny(num_classes: int = 10): ...
        >>> models.names()
        ['tiny']
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}
        self._descriptions: dict[str, str] = {}

    def register(self, name: str, factory: Callable[..., T] | None = None, *, description: str | None = None) -> Any:
        """Register ``factory`` under ``name``; usable as a decorator.

        Args:
            name: Unique name, lower case with dashes by convention.
            factory: The class or function; omit it to use the method as a decorator.
            description: One line for listings; defaults to the first docstring line.

        Raises:
            ValueError: If ``name`` is already registered.
        """

        def add(target: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = target
            doc = (target.__doc__ or "").strip().splitlines()
            self._descriptions[name] = description or (doc[0] if doc else "")
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

    def build(self, name: str, /, **kwargs: Any) -> T:
        """Build the entry ``name`` with keyword arguments."""
        return self.get(name)(**kwargs)

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
