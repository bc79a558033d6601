"""Benchmark: pentad's training (callbacks, checkpoints, logs) against plain stable-baselines3.

For every seed the two runs alternate (pentad and plain SB3 with the same algorithm, hyperparameters,
number of envs and steps), so that a noisy neighbour on a shared machine slows both alike; the order
flips from seed to seed (pentad first on even seeds, SB3 first on odd ones) so that neither always
pays for running first. A short untimed warm-up of both paths precedes the timed runs: the first
``learn`` of a process imports TensorBoard and initialises torch kernels, a one-off cost that would
otherwise land on whichever implementation happens to run first. Both are timed around
``model.learn`` only and evaluated on the same protocol: deterministic episodes of a fresh environment.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym

from pentad_core.devices import set_threads
from pentad_core.files import atomic_write_json
from pentad_rl.config import RLConfig
from pentad_rl.hyperparams import build_action_noise, build_hyperparams, build_policy_kwargs
from pentad_rl.registry import ALGORITHMS

#: Published RL Zoo results (rl-baselines3-zoo benchmark.md), for reference in the tables.
ZOO_REFERENCE = {
    ("ppo", "CartPole-v1"): "500.0 +- 0.0 after 1e5 steps",
    ("dqn", "CartPole-v1"): "500.0 +- 0.0 after 5e4 steps",
}


def plain_sb3(config: RLConfig, seed: int, episodes: int) -> dict[str, float]:
    """Train and evaluate with stable-baselines3 alone (no pentad code in the loop)."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    set_threads(config.threads)  # the same torch thread count as pentad's run
    env = make_vec_env(config.env, n_envs=config.n_envs, seed=seed, env_kwargs=dict(config.env_kwargs))
    kwargs = build_hyperparams(config.hyperparams)
    if config.policy_kwargs:
        kwargs["policy_kwargs"] = build_policy_kwargs(config.policy_kwargs)
    noise = build_action_noise(config.noise_type or None, config.noise_std, env.action_space)
    if noise is not None:
        kwargs["action_noise"] = noise
    model = ALGORITHMS.get(config.algo)(
        config.policy or "MlpPolicy", env, seed=seed, device=config.device, verbose=0, **kwargs
    )
    start = time.perf_counter()
    model.learn(config.timesteps)
    wall = time.perf_counter() - start
    mean, std = evaluate_policy(
        model, gym.make(config.env, **config.env_kwargs), n_eval_episodes=episodes, deterministic=True
    )
    env.close()
    return {
        "mean_return": float(mean),
        "std_return": float(std),
        "wall_s": wall,
        "steps_per_s": config.timesteps / wall,
    }


def pentad_run(config: RLConfig, seed: int, episodes: int, out: Path) -> tuple[dict[str, float], Any]:
    """Train with :func:`pentad_rl.training.train` (run folder, checkpoints, TensorBoard, Monitor)."""
    from pentad_rl.training import train

    run_config = copy.deepcopy(config)
    run_config.eval_episodes = episodes
    result = train(run_config, out, seed=seed, tensorboard=True)
    from pentad_rl.plots import plot_learning_curve

    plot_learning_curve(
        out / "monitor",
        result.curve,
        out / "plots" / "learning_curve.png",
        title=f"{config.algo} on {config.env}, seed {seed}",
    )
    atomic_write_json(out / "curve.json", result.curve)
    evaluation = result.evaluation
    return {
        "mean_return": evaluation.mean_return,
        "std_return": evaluation.std_return,
        "wall_s": result.wall_s,
        "steps_per_s": result.steps_per_s,
    }, result.model


def warm_up(config: RLConfig, out: Path) -> None:
    """Run both paths once for two rollouts' worth of steps, untimed (imports, kernel initialisation)."""
    short = copy.deepcopy(config)
    rollout = int(config.hyperparams.get("n_steps", 0) or 0) * config.n_envs
    short.timesteps = max(2 * rollout, 1_000)
    short.eval_freq = 0
    pentad_run(short, 0, 1, out)
    plain_sb3(short, 0, 1)


def run_benchmark(
    config: RLConfig,
    seeds: list[int],
    episodes: int = 20,
    baseline: bool = True,
    out: str | Path = "runs/rl/benchmark",
    log: Callable[..., None] = print,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Run pentad and (optionally) plain SB3 for every seed, alternating.

    Returns:
        ``(rows, summary)``: one row per (seed, implementation) with mean/std return, wall seconds and
        steps/s; the summary holds ``bench/pentad_mean_return``, ``bench/pentad_min_return``,
        ``bench/pentad_wall_s``, ``bench/sb3_wall_s``, ``bench/time_ratio`` (pentad / SB3 wall time) and,
        for Connect Four, ``bench/difficulty<k>/win_rate`` of the last pentad agent.
    """
    out = Path(out)
    rows: list[dict[str, Any]] = []
    reference = ZOO_REFERENCE.get((config.algo, config.env), "n/a")
    if baseline:
        warm_up(config, out / "warmup")
    model = None
    for index, seed in enumerate(seeds):
        order = ("pentad", "stable-baselines3") if index % 2 == 0 else ("stable-baselines3", "pentad")
        for implementation in order:
            if implementation == "pentad":
                metrics, model = pentad_run(config, seed, episodes, out / f"pentad_seed{seed}")
            elif baseline:
                metrics = plain_sb3(config, seed, episodes)
            else:
                continue
            rows.append({"implementation": implementation, "seed": seed, **metrics, "rl_zoo": reference})
            log(
                f"{implementation:<17} seed {seed}: {metrics['mean_return']:.1f} +- {metrics['std_return']:.1f} "
                f"in {metrics['wall_s']:.1f} s"
            )
    pentad_rows = [r for r in rows if r["implementation"] == "pentad"]
    summary = {
        "bench/pentad_mean_return": statistics.mean(r["mean_return"] for r in pentad_rows),
        "bench/pentad_min_return": min(r["mean_return"] for r in pentad_rows),
        "bench/pentad_wall_s": statistics.mean(r["wall_s"] for r in pentad_rows),
        "bench/pentad_steps_per_s": statistics.mean(r["steps_per_s"] for r in pentad_rows),
    }
    sb3_rows = [r for r in rows if r["implementation"] == "stable-baselines3"]
    if sb3_rows:
        summary["bench/sb3_mean_return"] = statistics.mean(r["mean_return"] for r in sb3_rows)
        summary["bench/sb3_wall_s"] = statistics.mean(r["wall_s"] for r in sb3_rows)
        summary["bench/time_ratio"] = summary["bench/pentad_wall_s"] / summary["bench/sb3_wall_s"]
    if config.env == "pentad/ConnectFour-v0" and model is not None:
        summary.update(connect_four_levels(model, config, episodes))
    return rows, summary


def connect_four_levels(model: Any, config: RLConfig, episodes: int) -> dict[str, float]:
    """Win rate and mean return of ``model`` against the heuristic opponent at each difficulty."""
    from pentad_rl.environments import make_env
    from pentad_rl.envs.connect_four import DIFFICULTIES
    from pentad_rl.evaluation import evaluate_agent

    results: dict[str, float] = {}
    for level in DIFFICULTIES:
        level_config = copy.deepcopy(config)
        level_config.env_kwargs = {**config.env_kwargs, "difficulty": level, "opponent": "heuristic"}
        env = make_env(level_config, n_envs=1, seed=30_000 + level, training=False)
        evaluation = evaluate_agent(model, env, episodes)
        results[f"bench/difficulty{level}/win_rate"] = evaluation.success_rate or 0.0
        results[f"bench/difficulty{level}/mean_return"] = evaluation.mean_return
        env.close()
    return results
