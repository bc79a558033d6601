"""Hyperparameter search with Optuna: TPE sampling, median pruning on intermediate evaluations.

Each trial trains the preset's agent with sampled hyperparameters for ``config.timesteps`` steps,
evaluating ``n_evaluations`` times; a trial whose evaluation falls below the median of earlier trials
at the same step is pruned. The search spaces follow RL Baselines3 Zoo's ``hyperparams_opt.py``
in reduced form.
"""

from __future__ import annotations

import copy
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from stable_baselines3.common.callbacks import BaseCallback

from pentad_core.errors import ConfigError
from pentad_rl.config import RLConfig
from pentad_rl.training import train

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

    :func:`~pentad_rl.training.train` sets ``evaluator`` to the run's evaluation callback; the trial is
    judged on its deterministic evaluation episodes, not on noisy training returns.
    """

    def __init__(self, trial: optuna.Trial, eval_freq: int) -> None:
        super().__init__()
        self.trial = trial
        self.eval_freq = eval_freq
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


def tune(
    config: RLConfig,
    n_trials: int = 10,
    n_evaluations: int = 4,
    seed: int | None = None,
    workdir: str | Path | None = None,
    timeout: float | None = None,
) -> optuna.Study:
    """Search the hyperparameters of ``config.algo`` on ``config.env``.

    Args:
        config: The base preset; each trial trains for ``config.timesteps`` steps.
        n_trials: Number of trials.
        n_evaluations: Intermediate evaluations per trial (the pruning points).
        seed: Seeds the sampler and every trial's training (defaults to ``config.seed``).
        workdir: Where trial runs are written (a temporary folder when ``None``).
        timeout: Stop starting new trials after this many seconds.

    Returns:
        The finished study (``study.best_trial.user_attrs["hyperparams"]`` holds the merged values).

    Raises:
        ConfigError: If there is no search space for the algorithm or ``n_trials`` is not positive.
    """
    if config.algo not in SEARCH_SPACES:
        raise ConfigError(f"no tuning search space for --algo {config.algo}; known: {', '.join(SEARCH_SPACES)}.")
    if n_trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {n_trials}.")
    seed = config.seed if seed is None else seed
    space = SEARCH_SPACES[config.algo]
    eval_freq = max(config.timesteps // n_evaluations, 1)
    temporary = tempfile.TemporaryDirectory(prefix="pentad-tune-") if workdir is None else None
    root = Path(workdir) if workdir is not None else Path(temporary.name)

    def objective(trial: optuna.Trial) -> float:
        trial_config = copy.deepcopy(config)
        sampled = space(trial)
        hyperparams = {**trial_config.hyperparams, **sampled}
        if "n_steps" in hyperparams and "batch_size" in hyperparams:
            # PPO needs a batch size that fits in one rollout (n_steps * n_envs).
            hyperparams["batch_size"] = min(hyperparams["batch_size"], hyperparams["n_steps"] * config.n_envs)
        trial_config.hyperparams = hyperparams
        trial_config.eval_freq = eval_freq
        trial_config.checkpoint_freq = 0
        trial.set_user_attr("hyperparams", hyperparams)
        reporter = TrialEvalCallback(trial, eval_freq)
        try:
            result = train(
                trial_config, root / f"trial_{trial.number}", seed=seed, callbacks=[reporter], tensorboard=False
            )
        except (ConfigError, ValueError, AssertionError) as error:
            trial.set_user_attr("error", str(error))
            raise optuna.TrialPruned() from None
        if reporter.pruned:
            raise optuna.TrialPruned()
        value = result.evaluation.mean_return
        return value if math.isfinite(value) else float("-inf")

    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(5, n_trials))
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    try:
        study.optimize(objective, n_trials=n_trials, timeout=timeout)
    finally:
        if temporary is not None:
            temporary.cleanup()
    return study


def trials_table(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial: number, state, value and the sampled parameters."""
    rows = []
    for trial in study.trials:
        rows.append({
            "trial": trial.number,
            "state": trial.state.name.lower(),
            "mean_return": float(trial.value) if trial.value is not None else float("nan"),
            **{key: value for key, value in trial.params.items()},
        })  # fmt: skip
    return rows


def best_config(config: RLConfig, study: optuna.Study) -> RLConfig:
    """``config`` with the best trial's hyperparameters, ready to be written as a preset."""
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise ConfigError("no tuning trial completed (all pruned or failed); raise --trials or --timesteps.")
    best = copy.deepcopy(config)
    best.hyperparams = dict(study.best_trial.user_attrs["hyperparams"])
    best.source = f"pentad tune: best of {len(study.trials)} trials, mean return {study.best_value:.2f}"
    return best
