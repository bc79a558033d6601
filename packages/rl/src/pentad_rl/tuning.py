"""What the ``tune`` verb searches: one Optuna space of ``model_options`` per algorithm, and the pruning hook.

The search itself (TPE sampling, median pruning on intermediate evaluations) is
:func:`pentad_rl.pipeline.tune`. The spaces follow RL Baselines3 Zoo's ``hyperparams_opt.py`` in
reduced form.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
from stable_baselines3.common.callbacks import BaseCallback

from pentad_rl.config import RLConfig

SearchSpace = Callable[[optuna.Trial], dict[str, Any]]


def _ppo_space(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "n_steps": trial.suggest_categorical("n_steps", [32, 64, 128, 256, 512]),
        "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128, 256]),
        "gamma": trial.suggest_categorical("gamma", [0.95, 0.98, 0.99, 0.995]),
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 3e-3, log=True),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.05, log=True),
        "clip_range": trial.suggest_categorical("clip_range", [0.1, 0.2, 0.3]),
        "n_epochs": trial.suggest_categorical("n_epochs", [5, 10, 20]),
        "gae_lambda": trial.suggest_categorical("gae_lambda", [0.8, 0.9, 0.95, 0.98]),
    }


def _a2c_space(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "n_steps": trial.suggest_categorical("n_steps", [5, 8, 16, 32]),
        "gamma": trial.suggest_categorical("gamma", [0.95, 0.98, 0.99, 0.995]),
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 3e-3, log=True),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.05, log=True),
        "gae_lambda": trial.suggest_categorical("gae_lambda", [0.9, 0.95, 1.0]),
    }


def _dqn_space(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128, 256]),
        "gamma": trial.suggest_categorical("gamma", [0.95, 0.98, 0.99]),
        "target_update_interval": trial.suggest_categorical("target_update_interval", [10, 100, 1000]),
        "exploration_fraction": trial.suggest_float("exploration_fraction", 0.05, 0.5),
        "exploration_final_eps": trial.suggest_float("exploration_final_eps", 0.01, 0.2),
        "train_freq": trial.suggest_categorical("train_freq", [4, 16, 64, 256]),
    }


def _off_policy_continuous_space(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 3e-3, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [64, 128, 256]),
        "gamma": trial.suggest_categorical("gamma", [0.95, 0.98, 0.99]),
        "tau": trial.suggest_categorical("tau", [0.005, 0.01, 0.02]),
        "learning_starts": trial.suggest_categorical("learning_starts", [0, 100, 1000]),
    }


#: Search space per algorithm (the preset's values are the starting point; these keys replace them).
SEARCH_SPACES: dict[str, SearchSpace] = {
    "ppo": _ppo_space,
    "maskable-ppo": _ppo_space,
    "recurrent-ppo": _ppo_space,
    "a2c": _a2c_space,
    "dqn": _dqn_space,
    "qrdqn": _dqn_space,
    "sac": _off_policy_continuous_space,
    "td3": _off_policy_continuous_space,
    "ddpg": _off_policy_continuous_space,
}


class TrialEvalCallback(BaseCallback):
    """Reports the training run's latest evaluation to Optuna and stops the trial when pruned.

    :func:`~pentad_rl.pipeline.train` sets ``evaluator`` to the run's evaluation callback; the trial is
    judged on its deterministic evaluation episodes, not on noisy training returns.
    """

    def __init__(self, trial: optuna.Trial) -> None:
        super().__init__()
        self.trial = trial
        self.evaluator: Any = None
        self.reports = 0
        self.pruned = False

    def _on_step(self) -> bool:
        if self.evaluator is not None and len(self.evaluator.curve) > self.reports:
            self.reports = len(self.evaluator.curve)
            value = self.evaluator.curve[-1]["mean_return"]
            self.trial.report(value, self.reports)
            if self.trial.should_prune():
                self.pruned = True
                return False
        return True


def sample_model_options(trial: optuna.Trial, config: RLConfig) -> dict[str, Any]:
    """The preset's ``model_options`` with the trial's sampled values over them.

    PPO's ``batch_size`` is capped at one rollout (``n_steps * n_envs``), which it must fit in.
    """
    options = {**config.model_options, **SEARCH_SPACES[config.algo](trial)}
    if "n_steps" in options and "batch_size" in options:
        options["batch_size"] = min(options["batch_size"], options["n_steps"] * config.n_envs)
    return options
