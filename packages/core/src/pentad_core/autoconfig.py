"""Self-configuration: settings derived from a fingerprint of the dataset, and time budgets.

nnU-Net's idea, for every domain: measure the data once on load (its *fingerprint*: image sizes and
channels, users/items/density, sensors and sampling interval, ...), derive the settings nobody chose
from it by stated rules, and write each choice into the run's ``config.yaml`` with its reason, so that
what ran is on record and can be rerun as written. A domain does the measuring and the rules; this
module applies them the same way everywhere:

- :class:`Choice` is one derived setting (dotted config key, value, reason).
- :func:`self_configure` applies the choices whose key nobody set (the recipe, ``--config``, the
  options and ``--set`` always win), revalidates the config, records ``self_config`` and rewrites the
  run's ``config.yaml``, and prints one short table.
- :func:`preserved_random_state` wraps the throwaway work (timing a model, a small search) so that the
  run draws the random numbers it would have drawn without it.
- :func:`parse_duration`, :func:`seconds_per_step` and :func:`epochs_for_budget` turn
  ``--time-budget 10m`` into a number of epochs (or steps) from a measured step time; the Lightning
  trainer also stops at the budget (``build_trainer(time_budget=...)``) with a checkpoint written.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pentad_core.config import config_from_dict, config_to_dict, merge_dicts, nest
from pentad_core.errors import ConfigError

_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|m|min|h|hr)?\s*", re.IGNORECASE)
_UNIT_SECONDS = {None: 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hr": 3600.0}


def parse_duration(text: str | float | int, *, key: str = "--time-budget") -> float:
    """Seconds in ``"90s"``, ``"10m"``, ``"1.5h"`` or a bare number of seconds.

    Raises:
        ConfigError: If the text is not a positive duration (the message names ``key``).
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _DURATION.fullmatch(str(text))
        if match is None:
            raise ConfigError(f"{key} {text!r} is not a duration.", "Write e.g. 90s, 10m or 1.5h.")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2) and match.group(2).lower()]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{key} must be a positive duration, got {text!r}.", "Write e.g. 90s, 10m or 1.5h.")
    return seconds


@dataclass(frozen=True)
class Choice:
    """One setting derived from the data.

    Attributes:
        key: Dotted config key, e.g. ``"model_options.embedding_dim"`` or ``"trainer.max_epochs"``.
        value: The value chosen (YAML-safe: numbers, strings, booleans, lists, mappings).
        reason: Why, in a few words that cite the fingerprint ("943 users x 1,682 items, density 6.3 %").
    """

    key: str
    value: Any
    reason: str


def _is_set(key: str, explicit: Iterable[str]) -> bool:
    """Whether ``key`` (or a mapping above it, or a key below it) was set explicitly."""
    return any(key == e or key.startswith(f"{e}.") or e.startswith(f"{key}.") for e in explicit)


def apply_choices(config: Any, choices: Iterable[Choice], explicit: Iterable[str]) -> tuple[Any, list[Choice]]:
    """``config`` with the choices whose key is not in ``explicit`` applied, revalidated.

    Returns:
        ``(config, applied)``: the new config (the input when nothing applies) and the choices applied.

    Raises:
        ConfigError: If a choice names an unknown key or a value of the wrong type (a domain bug).
    """
    explicit = frozenset(explicit)
    applied = [choice for choice in choices if not _is_set(choice.key, explicit)]
    if not applied:
        return config, []
    merged = config_to_dict(config)
    for choice in applied:
        merged = merge_dicts(merged, nest(choice.key, choice.value))
    return config_from_dict(type(config), merged), applied


def self_configure(context: Any, fingerprint: Mapping[str, Any], choices: Iterable[Choice]) -> Any:
    """Apply the data-derived ``choices`` to ``context.config`` and put them on record.

    Skipped (the config returned unchanged) when ``self_configure`` is false in the config, or when the
    run is resumed: a continued run keeps exactly what its ``config.yaml`` says. Otherwise choices for
    keys the recipe, ``--config``, the options or ``--set`` set are left out; the rest are applied, the
    config is revalidated, ``self_config`` records ``{"fingerprint": ..., "choices": {key: {"value",
    "reason"}}}``, the run's ``config.yaml`` is rewritten (atomically) and a short table is printed.

    Args:
        context: The verb's :class:`pentad_core.cli.Context` (``config``, ``run``, ``resume_path``,
            ``explicit_keys``, ``print``).
        fingerprint: What was measured on the data, as YAML-safe values.
        choices: The settings derived from it.

    Returns:
        The config to run with (also stored on ``context.config`` and as the app's ``last_config``).
    """
    config = context.config
    if not getattr(config, "self_configure", True) or context.resume_path is not None:
        return config
    choices = list(choices)
    config, applied = apply_choices(config, choices, context.explicit_keys)
    record = {
        "fingerprint": {str(k): _plain(v) for k, v in fingerprint.items()},
        "choices": {c.key: {"value": _plain(c.value), "reason": c.reason} for c in applied},
    }
    config = dataclasses.replace(config, self_config=record)
    context.config = config
    context.app.last_config = config
    if context.run is not None and context.is_main_process:
        context.run.write_config(config)
    context.print(choices_table(fingerprint, applied, [c for c in choices if c not in applied]))
    return config


def _plain(value: Any) -> Any:
    """YAML-safe copy: tuples become lists, NumPy scalars Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def choices_table(fingerprint: Mapping[str, Any], applied: list[Choice], kept: list[Choice] = ()) -> str:
    """The fingerprint on one line and one line per choice (``kept``: choices the user's settings overrode)."""
    facts = ", ".join(f"{key} {_short(value)}" for key, value in fingerprint.items())
    lines = [f"self-configured from the data ({facts}):"]
    width = max((len(c.key) for c in [*applied, *kept]), default=0)
    for choice in applied:
        lines.append(f"  {choice.key:<{width}}  {_short(choice.value):<10} {choice.reason}")
    for choice in kept:
        lines.append(f"  {choice.key:<{width}}  {'(yours)':<10} kept as set; would be {_short(choice.value)}")
    if len(lines) == 1:
        lines.append("  nothing to choose: every setting was given")
    return "\n".join(lines)


@contextmanager
def preserved_random_state() -> Iterator[None]:
    """Restore torch's CPU, numpy's and Python's global random states when the block ends, also on error.

    Self-configuration builds throwaway models and draws batches to time them; without this the run
    would start from a random state advanced by that work, so the same seed would train differently
    with and without self-configuration.
    """
    import numpy as np
    import torch

    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def seconds_per_step(step: Callable[[], Any], *, steps: int = 3, warmup: int = 1) -> float:
    """Median wall time of ``step()`` over ``steps`` calls after ``warmup`` untimed ones.

    Time a training step on a throwaway copy of the model (its optimizer included), so the run itself
    starts from untouched weights and random state.
    """
    for _ in range(warmup):
        step()
    times = []
    for _ in range(max(1, steps)):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def epochs_for_budget(
    budget_s: float,
    seconds_per_epoch: float,
    *,
    overhead_s: float = 0.0,
    reserve: float = 0.15,
    minimum: int = 1,
    maximum: int | None = None,
) -> int:
    """How many whole epochs fit ``budget_s``.

    Args:
        budget_s: The time budget in seconds.
        seconds_per_epoch: Measured (or estimated from a measured step time) seconds per epoch,
            validation included.
        overhead_s: Fixed time outside the epochs (loading, the test pass).
        reserve: Share of the budget left unused for noise (a busy machine runs slower than measured).
        minimum: At least this many epochs, even when one epoch overruns the budget.
        maximum: At most this many (e.g. where longer training stops helping).
    """
    if seconds_per_epoch <= 0:
        raise ValueError(f"seconds_per_epoch must be positive, got {seconds_per_epoch}")
    usable = budget_s * (1.0 - reserve) - overhead_s
    epochs = max(minimum, math.floor(usable / seconds_per_epoch))
    return min(epochs, maximum) if maximum is not None else epochs
