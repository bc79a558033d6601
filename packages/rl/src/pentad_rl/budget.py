"""``--time-budget`` for RL: the step budget from a measured speed, and a clean stop when the time is spent.

Before training, :func:`probe` trains a throwaway copy of the agent on throwaway environments for a few
rollouts (the first untimed) and measures environment steps per second with the updates included;
:func:`plan` turns the budget into a number of steps with core's :func:`~pentad_core.autoconfig.
epochs_for_budget` (15 % kept in reserve), never more than the preset's (or the user's) ``timesteps``.
During training, :class:`TimeBudget` (a part of the resumable checkpoint, so a resumed run counts the
time already spent) tells :class:`~pentad_rl.callbacks.CheckpointEveryN` to stop at the start of the
rollout that would overrun: the checkpoint is written there and the agent is evaluated as after a full
run. The final evaluation runs after the budget, as Lightning's test phase does.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from pentad_core.autoconfig import Choice, epochs_for_budget, parse_duration
from pentad_rl.agents import build_agent
from pentad_rl.config import RLConfig
from pentad_rl.envs.make import make_env


class BudgetSpent(Exception):
    """Raised at the start of a rollout once the time budget is spent (after the checkpoint is written)."""


@dataclass
class Probe:
    """Steps per second measured on a throwaway agent: ``steps`` timed steps in ``seconds``, plus the untimed
    warm-up; ``wall_s`` is the probe's whole time (building, warm-up and timed part)."""

    steps: int
    seconds: float
    wall_s: float
    rollout: int

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else math.inf


def rollout_steps(model: BaseAlgorithm) -> int:
    """Environment steps between two updates of ``model`` (summed over its environments)."""
    if isinstance(model, OffPolicyAlgorithm):
        frequency = model.train_freq.frequency if model.train_freq.unit.value == "step" else 200
        return max(int(frequency) * model.n_envs, 1)
    return int(getattr(model, "n_steps", 1)) * model.n_envs


def probe(config: RLConfig, seed: int = 0, min_steps: int = 512) -> Probe:
    """Measure training speed (steps/s, updates included) on a throwaway agent of ``config``.

    One rollout is run untimed (imports, first update), then whole rollouts until ``min_steps`` steps are
    timed. An off-policy agent starts learning at once in the probe (its ``learning_starts`` is lowered),
    so that the measured speed includes the gradient steps of the steady state.
    """
    start = time.perf_counter()
    throwaway = copy.deepcopy(config)
    throwaway.eval_freq = 0
    env = make_env(throwaway, seed=seed + 50_000)
    try:
        model = build_agent(throwaway, env, seed=seed + 50_000)
        if isinstance(model, OffPolicyAlgorithm):
            model.learning_starts = min(model.learning_starts, max(model.batch_size, 1))
        rollout = rollout_steps(model)
        model.learn(rollout + int(getattr(model, "learning_starts", 0)))
        timed = rollout * max(1, math.ceil(min_steps / rollout))
        before, tick = model.num_timesteps, time.perf_counter()
        model.learn(timed, reset_num_timesteps=False)
        seconds = time.perf_counter() - tick
        return Probe(model.num_timesteps - before, seconds, time.perf_counter() - start, rollout)
    finally:
        env.close()


def _space(space: spaces.Space) -> str:
    if isinstance(space, spaces.Discrete):
        return f"discrete({int(space.n)})"
    shape = "x".join(str(n) for n in getattr(space, "shape", ()) or ())
    return f"{type(space).__name__.lower()}({shape})"


def plan(config: RLConfig, measured: Probe) -> tuple[dict[str, Any], list[Choice]]:
    """The fingerprint and the step budget chosen for ``config.time_budget`` from the probe.

    Returns:
        ``(fingerprint, [Choice("timesteps", ...)])``: at most ``config.timesteps`` and at least one rollout.
    """
    budget_s = parse_duration(config.time_budget, key="--time-budget")
    env = make_env(config, n_envs=1, training=False)
    fingerprint = {
        "env": config.env,
        "observations": _space(env.observation_space),
        "actions": _space(env.action_space),
        "steps_per_s": round(measured.steps_per_s, 1),
        "probe_s": round(measured.wall_s, 2),
    }
    env.close()
    remaining = budget_s - measured.wall_s
    fits = epochs_for_budget(
        max(remaining, 0.0), 1.0 / measured.steps_per_s, minimum=measured.rollout, maximum=config.timesteps
    )
    reason = (
        f"{config.time_budget} at {measured.steps_per_s:,.0f} steps/s (probe: {measured.steps} timed steps); "
        f"at most the preset's {config.timesteps:,}"
        if fits >= config.timesteps
        else f"fits {config.time_budget} at {measured.steps_per_s:,.0f} steps/s (probe: {measured.steps} timed "
        f"steps, {measured.wall_s:.1f} s), 15 % kept in reserve; the preset asks {config.timesteps:,}"
    )
    return fingerprint, [Choice("timesteps", int(fits), reason)]


class TimeBudget:
    """Wall-clock budget of the training loop; a checkpoint part, so a resumed run counts what was spent.

    Args:
        budget_s: Seconds the training loop may take (the probe's time already deducted).
        steps_per_s: Measured speed, to foresee whether the next rollout still fits (``None``: stop only
            once the time is spent).
    """

    def __init__(self, budget_s: float, steps_per_s: float | None = None) -> None:
        self.budget_s = float(budget_s)
        self.steps_per_s = steps_per_s
        self._start = time.perf_counter()
        self.stopped_at: int | None = None

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self._start

    def spent(self, next_steps: int = 0) -> bool:
        """Whether the budget is spent, or would be by the next ``next_steps`` steps at the measured speed."""
        ahead = next_steps / self.steps_per_s if self.steps_per_s else 0.0
        return self.elapsed_s + ahead > self.budget_s

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The seconds spent so far."""
        return {"elapsed_s": self.elapsed_s}, {}

    def load_state(self, model: BaseAlgorithm, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Go on counting from the seconds the checkpoint had spent."""
        self._start = time.perf_counter() - float(state.get("elapsed_s", 0.0))
