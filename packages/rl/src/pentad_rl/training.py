"""Train an agent with stable-baselines3's own loop, plus pentad's run layout.

Layout of ``out`` (the run directory)::

    checkpoints/last.zip               agent at the end (or the latest periodic save)
    checkpoints/last_replay_buffer.pkl replay buffer of off-policy agents (for --resume)
    checkpoints/last_vecnormalize.npz  observation/return statistics when normalize: true
    checkpoints/best.zip               best agent by evaluation mean return
    checkpoints/step_<N>.zip           periodic saves (checkpoint_freq)
    logs/                              TensorBoard events
    monitor/                           per-episode returns and lengths of the training envs
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from pentad_core.devices import seed_everything, set_threads
from pentad_core.errors import CheckpointError, ConfigError
from pentad_rl.agents import build_agent, load_agent, replay_buffer_path
from pentad_rl.callbacks import CheckpointEveryN, CurveEvalCallback, SaveBest, SelfPlayCallback
from pentad_rl.config import RLConfig
from pentad_rl.environments import check_env_id, load_normalization, make_env
from pentad_rl.evaluation import EvalResult, evaluate_agent

#: File names of the agent archives (stable-baselines3 .zip format) in ``checkpoints/``.
LAST, BEST = "last.zip", "best.zip"


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    model: BaseAlgorithm
    evaluation: EvalResult
    wall_s: float
    steps_trained: int
    curve: list[dict[str, float]] = field(default_factory=list)

    @property
    def steps_per_s(self) -> float:
        """Environment steps per second of training in this call (excluding the final evaluation)."""
        return self.steps_trained / self.wall_s if self.wall_s > 0 else float("nan")

    def metrics(self) -> dict[str, float]:
        """``train/...`` and ``eval/...`` numbers for metrics.json."""
        return {
            "train/timesteps": float(self.model.num_timesteps),
            "train/wall_s": self.wall_s,
            "train/steps_per_s": self.steps_per_s,
            **self.evaluation.metrics("eval"),
        }


def supports_self_play(env_id: str) -> bool:
    """Whether the env class of ``env_id`` can take a frozen policy as its opponent."""
    import gymnasium as gym

    check_env_id(env_id)
    entry_point = gym.spec(env_id).entry_point
    if isinstance(entry_point, str):
        from gymnasium.envs.registration import load_env_creator

        entry_point = load_env_creator(entry_point)
    return hasattr(entry_point, "load_opponent")


def evaluation_config(config: RLConfig) -> RLConfig:
    """The config of the evaluation env: the heuristic opponent even when training with self-play."""
    evaluation = copy.deepcopy(config)
    evaluation.env_kwargs.pop("opponent", None)
    evaluation.self_play = False
    return evaluation


def train(
    config: RLConfig,
    out: str | Path,
    seed: int | None = None,
    resume: str | Path | None = None,
    progress_bar: bool = False,
    verbose: int = 0,
    callbacks: list[BaseCallback] | None = None,
    tensorboard: bool = True,
) -> TrainResult:
    """Train ``config.algo`` on ``config.env`` for ``config.timesteps`` steps, then evaluate it.

    Args:
        config: The agent configuration (usually a preset plus command-line overrides).
        out: Run directory (see the module docstring for its layout).
        seed: Defaults to ``config.seed``. Seeds Python, NumPy, torch, the agent and every environment
            (env ``i`` gets ``seed + i``; the evaluation env gets ``seed + 10_000``).
        resume: ``"last"`` (``out/checkpoints/last.zip``) or a checkpoint path: continue its step count,
            its replay buffer (off-policy) and normalisation statistics up to ``config.timesteps``.
        progress_bar: Show SB3's progress bar.
        verbose: SB3 verbosity.
        callbacks: Extra SB3 callbacks (e.g. Optuna pruning).
        tensorboard: Write TensorBoard logs to ``out/logs``.

    Returns:
        The trained model, its final evaluation over ``config.eval_episodes`` deterministic episodes,
        the wall time and the learning curve.

    Raises:
        ConfigError: Bad algorithm/env/hyperparameter combination.
        CheckpointError: ``resume`` points at a missing or unfitting checkpoint.
    """
    out = Path(out)
    seed = config.seed if seed is None else seed
    checkpoints = out / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    set_threads(config.threads)
    train_config = copy.deepcopy(config)
    if config.self_play:
        if not supports_self_play(config.env):
            raise ConfigError(f"self_play needs a two-player env such as pentad/ConnectFour-v0, not {config.env}.")
        train_config.env_kwargs["opponent"] = "self"
    env = make_env(train_config, seed=seed, monitor_dir=str(out / "monitor"))
    eval_env = make_env(evaluation_config(config), n_envs=1, seed=seed + 10_000, training=False)
    tb_log = str(out / "logs") if tensorboard else None

    if resume is not None:
        path = checkpoints / LAST if str(resume) == "last" else Path(resume)
        if not path.is_file():
            raise CheckpointError(f"--resume {resume}: no checkpoint at {path}; train first or pass a .zip path.")
        model = load_agent(path, config.algo, env=env, device=config.device, tensorboard_log=tb_log)
        if isinstance(model, OffPolicyAlgorithm) and replay_buffer_path(path).is_file():
            model.load_replay_buffer(replay_buffer_path(path))
        normalization = path.with_name(f"{path.stem}_vecnormalize.npz")
        if config.normalize and normalization.is_file():
            load_normalization(env, normalization)
        remaining = config.timesteps - model.num_timesteps
        if remaining <= 0:
            raise ConfigError(
                f"--resume: the checkpoint has {model.num_timesteps} steps, already >= --timesteps "
                f"{config.timesteps}; raise --timesteps to train further."
            )
    else:
        model = build_agent(config, env, seed=seed, tensorboard_log=tb_log, verbose=verbose)
        remaining = config.timesteps

    evaluator = CurveEvalCallback(
        eval_env,
        n_eval_episodes=config.eval_episodes,
        eval_freq=max(config.eval_freq // env.num_envs, 1) if config.eval_freq else -1,
        deterministic=True,
        callback_on_new_best=SaveBest(checkpoints),
        verbose=0,
    )
    chain: list[BaseCallback] = [CheckpointEveryN(checkpoints, config.checkpoint_freq), evaluator]
    if config.self_play:
        chain.append(SelfPlayCallback(out / "selfplay_opponent.zip", config.algo, config.self_play_freq))
    for callback in callbacks or []:
        if hasattr(callback, "evaluator"):
            callback.evaluator = evaluator  # e.g. Optuna's pruning callback reads the evaluations
        chain.append(callback)

    steps_before = model.num_timesteps
    start = time.perf_counter()
    model.learn(
        total_timesteps=remaining,
        callback=CallbackList(chain),
        reset_num_timesteps=resume is None,
        progress_bar=progress_bar,
        tb_log_name="tb",
    )
    wall = time.perf_counter() - start
    steps = model.num_timesteps - steps_before

    if config.normalize:
        # The evaluation env must see observations normalised with the training statistics.
        from stable_baselines3.common.vec_env import sync_envs_normalization

        sync_envs_normalization(env, eval_env)
    evaluation = evaluate_agent(model, eval_env, n_episodes=config.eval_episodes, deterministic=True)
    env.close()
    eval_env.close()
    return TrainResult(model=model, evaluation=evaluation, wall_s=wall, steps_trained=steps, curve=evaluator.curve)
