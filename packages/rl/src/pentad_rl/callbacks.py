"""Training callbacks: periodic checkpoints, best-model saving, learning curves, self-play."""

from __future__ import annotations

import time
from pathlib import Path

from stable_baselines3.common.callbacks import BaseCallback, EvalCallback

from pentad_rl.agents import save_agent
from pentad_rl.envs.make import save_normalization


class CheckpointEveryN(BaseCallback):
    """Save ``last.zip`` (with replay buffer and normalisation statistics) every ``every`` steps.

    Each save also keeps a numbered copy ``step_<N>.zip``. All writes are atomic, so a run killed
    mid-save still resumes from the previous checkpoint.

    Args:
        directory: The run's ``checkpoints/`` folder.
        every: Steps between checkpoints (summed over parallel envs); 0 only saves at the end.
    """

    def __init__(self, directory: str | Path, every: int) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.every = every
        self._last_saved = 0

    def _on_training_start(self) -> None:
        self._last_saved = self.num_timesteps

    def _on_step(self) -> bool:
        if self.every and self.num_timesteps - self._last_saved >= self.every:
            self.save(numbered=True)
        return True

    def _on_training_end(self) -> None:
        self.save(numbered=False)

    def save(self, numbered: bool) -> None:
        """Write ``last.zip`` (and ``step_<N>.zip`` when ``numbered``)."""
        save_agent(self.model, self.directory / "last.zip", replay_buffer=True)
        save_normalization(self.model.get_env(), self.directory / "last_vecnormalize.npz")
        if numbered:
            save_agent(self.model, self.directory / f"step_{self.num_timesteps}.zip")
        self._last_saved = self.num_timesteps


class SaveBest(BaseCallback):
    """Called by ``EvalCallback`` on a new best mean return: saves ``best.zip`` atomically."""

    def __init__(self, directory: str | Path) -> None:
        super().__init__()
        self.directory = Path(directory)

    def _on_step(self) -> bool:
        save_agent(self.model, self.directory / "best.zip")
        save_normalization(self.model.get_env(), self.directory / "best_vecnormalize.npz")
        return True


class CurveEvalCallback(EvalCallback):
    """SB3's EvalCallback that also records ``(timesteps, wall seconds, mean, std)`` for plots."""

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


class SelfPlayCallback(BaseCallback):
    """Refresh the frozen opponent of a two-player env with a snapshot of the agent.

    Every ``every`` steps the agent is saved to ``path`` and every training env loads it through its
    ``load_opponent(path, algorithm_class)`` method (this also works across subprocesses: the class is
    sent by reference).
    """

    def __init__(self, path: str | Path, every: int) -> None:
        super().__init__()
        self.path = Path(path)
        self.every = every
        self._last = 0
        self.refreshes = 0

    def _on_step(self) -> bool:
        if self.num_timesteps - self._last >= self.every:
            save_agent(self.model, self.path)
            self.model.get_env().env_method("load_opponent", str(self.path), type(self.model))
            self._last = self.num_timesteps
            self.refreshes += 1
        return True
