"""Training callbacks: resumable checkpoints, Ctrl-C, best-model saving, learning curves, self-play."""

from __future__ import annotations

import copy
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.vec_env import VecEnv

from pentad_rl.agents import save_agent
from pentad_rl.budget import BudgetSpent, TimeBudget, rollout_steps
from pentad_rl.checkpoints import Resumable, save_checkpoint


class Interrupt:
    """Turns the first Ctrl-C (SIGINT) during training into a request that :class:`CheckpointEveryN` answers
    at the next rollout start: it writes the resumable checkpoint, then raises ``KeyboardInterrupt`` (exit
    130). A second Ctrl-C interrupts at once (the previous checkpoint stays as it was).

    Use as a context manager around ``learn``; outside the main thread it does nothing.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def __enter__(self) -> Interrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class CheckpointEveryN(BaseCallback):
    """Write the resumable ``last.zip`` every ``every`` steps, at the end, and when Ctrl-C asks.

    The checkpoint is written at the start of a rollout (after the previous update, before the next step),
    where the agent, its replay buffer, the envs and the random generators agree; it is one file replaced
    by one atomic rename, so a kill at any moment leaves the previous complete checkpoint. Each periodic
    save also keeps a numbered copy of the agent, ``step_<N>.zip`` (no resume state).

    Args:
        directory: The run's ``checkpoints/`` folder.
        every: Steps between checkpoints (summed over parallel envs); 0 only saves at the end.
        eval_env: The evaluation env, whose random generator the checkpoint keeps.
        parts: Callbacks with state of their own (evaluation curve, self-play opponent), by name.
        monitor_dir: The run's Monitor folder (the checkpoint records the size of each CSV).
        interrupt: The Ctrl-C request to answer.
        on_start: Called at the start of training (after ``learn`` has set itself up): the resume's finish.
        budget: The time budget (``--time-budget``): at the start of the rollout that would overrun it,
            ``last.zip`` is written and :class:`~pentad_rl.budget.BudgetSpent` is raised.
    """

    def __init__(
        self,
        directory: str | Path,
        every: int,
        eval_env: VecEnv | None = None,
        parts: Mapping[str, Resumable] | None = None,
        monitor_dir: str | Path | None = None,
        interrupt: Interrupt | None = None,
        on_start: Callable[[], None] | None = None,
        budget: TimeBudget | None = None,
    ) -> None:
        super().__init__()
        self.budget = budget
        self.directory = Path(directory)
        self.every = every
        self.eval_env = eval_env
        self.parts = dict(parts or {})
        self.monitor_dir = monitor_dir
        self.interrupt = interrupt
        self.on_start = on_start
        self._last_saved = 0

    def _on_training_start(self) -> None:
        self._last_saved = self.num_timesteps
        if self.on_start is not None:
            self.on_start()

    def _on_rollout_start(self) -> None:
        if self.interrupt is not None and self.interrupt.requested:
            self.save(numbered=False)
            raise KeyboardInterrupt
        if self.budget is not None and self.budget.spent(rollout_steps(self.model)):
            self.save(numbered=False)
            self.budget.stopped_at = self.num_timesteps
            raise BudgetSpent
        if self.every and self.num_timesteps - self._last_saved >= self.every:
            self.save(numbered=True)

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self.save(numbered=False)

    def save(self, numbered: bool) -> None:
        """Write ``last.zip`` (and ``step_<N>.zip`` when ``numbered``)."""
        save_checkpoint(
            self.model,
            self.directory / "last.zip",
            eval_env=self.eval_env,
            parts=self.parts,
            monitor_dir=self.monitor_dir,
        )
        if numbered:
            save_agent(self.model, self.directory / f"step_{self.num_timesteps}.zip")
        self._last_saved = self.num_timesteps


class SaveBest(BaseCallback):
    """Called by ``EvalCallback`` on a new best mean return: saves ``best.zip`` (with its statistics) atomically."""

    def __init__(self, directory: str | Path) -> None:
        super().__init__()
        self.directory = Path(directory)

    def _on_step(self) -> bool:
        save_agent(self.model, self.directory / "best.zip")
        return True


class CurveEvalCallback(EvalCallback):
    """SB3's EvalCallback that also records ``(timesteps, wall seconds, mean, std)`` for plots.

    Its curve and best return are part of the resumable checkpoint, so a resumed run's curve covers the
    whole run and ``best.zip`` is replaced only by an agent better than every earlier one.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.curve: list[dict[str, float]] = []
        self._start = time.perf_counter()

    def _on_step(self) -> bool:
        keep_going = super()._on_step()
        if self.eval_freq > 0 and self.n_calls % self.eval_freq == 0:
            successes = self._is_success_buffer
            self.curve.append(
                {
                    "timesteps": float(self.num_timesteps),
                    "wall_s": time.perf_counter() - self._start,
                    "mean_return": float(self.last_mean_reward),
                    "success_rate": float(sum(successes) / len(successes)) if successes else float("nan"),
                }
            )
        return keep_going

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The curve so far, the best and last mean returns, the wall seconds."""
        values = {
            "curve": self.curve,
            "best_mean_reward": float(self.best_mean_reward),
            "last_mean_reward": float(self.last_mean_reward),
            "wall_s": time.perf_counter() - self._start,
        }
        return values, {}

    def load_state(self, model: BaseAlgorithm, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Continue the curve, the best return and the evaluation schedule of the checkpoint."""
        self.curve = [dict(point) for point in state.get("curve", [])]
        self.best_mean_reward = float(state.get("best_mean_reward", -np.inf))
        self.last_mean_reward = float(state.get("last_mean_reward", -np.inf))
        self._start = time.perf_counter() - float(state.get("wall_s", 0.0))
        # ``n_calls`` counts steps since training began (one call per vectorised step): the schedule
        # ``n_calls % eval_freq`` then evaluates at the same steps as the run that was interrupted.
        self.n_calls = model.num_timesteps // model.n_envs


class SelfPlayCallback(BaseCallback):
    """Refresh the frozen opponent of a two-player env with a copy of the agent's policy.

    Every ``every`` steps a frozen copy of the policy becomes the opponent of every training env, through
    the env's ``set_opponent_agent(policy)`` (it also works across subprocesses). No file is written: the
    opponent's weights are part of the resumable checkpoint.
    """

    def __init__(self, every: int) -> None:
        super().__init__()
        self.every = every
        self._last = 0
        self.refreshes = 0
        self.opponent: Any = None

    def _on_step(self) -> bool:
        if self.num_timesteps - self._last >= self.every:
            self.set_opponent(copy.deepcopy(self.model.policy))
            self._last = self.num_timesteps
            self.refreshes += 1
        return True

    def set_opponent(self, policy: Any) -> None:
        """Make ``policy`` (frozen, eval mode) the opponent of every training env."""
        policy.set_training_mode(False)
        for parameter in policy.parameters():
            parameter.requires_grad_(False)
        self.opponent = policy
        self.model.get_env().env_method("set_opponent_agent", policy)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """When the opponent was last refreshed, how often, and its weights."""
        weights = {}
        if self.opponent is not None:
            weights = {name: tensor.detach().cpu().numpy() for name, tensor in self.opponent.state_dict().items()}
        return {"last": self._last, "refreshes": self.refreshes, "has_opponent": self.opponent is not None}, weights

    def load_state(self, model: BaseAlgorithm, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Give every training env the opponent it played at the checkpoint."""
        self.model = model
        self._last, self.refreshes = int(state.get("last", 0)), int(state.get("refreshes", 0))
        if state.get("has_opponent"):
            policy = copy.deepcopy(model.policy)
            policy.load_state_dict({name: torch.as_tensor(value) for name, value in arrays.items()})
            self.set_opponent(policy)
