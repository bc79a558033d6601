"""The RL workflow as plain functions: train, evaluate, act, benchmark and tune. Nothing here prints.

The CLI (:mod:`pentad_rl.cli`), the tests and Python users call these; stable-baselines3 keeps its own
training loop and pentad adds the run layout. Layout of a run folder ``out``::

    checkpoints/last.zip      the resumable checkpoint: agent, normalisation statistics, replay buffer
                              (off-policy) and resume state in one file (pentad_rl.checkpoints)
    checkpoints/best.zip      best agent by evaluation mean return (with its normalisation statistics)
    checkpoints/step_<N>.zip  periodic copies of the agent (checkpoint_freq)
    logs/                     TensorBoard events
    monitor/<i>.monitor.csv   per-episode returns and lengths of training env i (continued on resume)
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.vec_env import VecEnv

from pentad_core.autoconfig import parse_duration, self_configure
from pentad_core.devices import seed_everything, set_threads
from pentad_core.errors import CheckpointError, ConfigError, DataError, missing_file
from pentad_core.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from pentad_rl.agents import agent_arguments, build_agent
from pentad_rl.budget import BudgetSpent, TimeBudget, plan, probe
from pentad_rl.callbacks import CheckpointEveryN, CurveEvalCallback, Interrupt, SaveBest, SelfPlayCallback
from pentad_rl.checkpoints import prepare_monitor, read_resume_state, resume_agent
from pentad_rl.config import RLConfig
from pentad_rl.envs.connect_four import DIFFICULTIES
from pentad_rl.envs.make import make_env
from pentad_rl.envs.registry import CONNECT_FOUR_ID, check_env_id
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
    #: Whether ``--time-budget`` ended training before ``config.timesteps``.
    stopped_by_budget: bool = False

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
            "train/stopped_by_budget": float(self.stopped_by_budget),
            **self.evaluation.metrics("eval"),
        }


class _BudgetView:
    """``context`` as :func:`self_configure` sees it: ``timesteps`` stays open to the budget's cap."""

    def __init__(self, context: Any) -> None:
        self._context = context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    @property
    def explicit_keys(self) -> frozenset[str]:
        return frozenset(self._context.explicit_keys) - {"timesteps"}


def configure_budget(context: Any) -> TimeBudget | None:
    """``--time-budget``: probe the speed, choose ``timesteps`` (recorded in the run's ``config.yaml`` with its
    reason, printed as one table) and return the budget the training loop keeps; ``None`` without one.

    The budget caps the preset's (or the user's) ``timesteps``, so the choice applies even over them. A
    resumed run keeps its ``config.yaml`` and goes on counting the time its checkpoint had spent.
    """
    config: RLConfig = context.config
    if not config.time_budget:
        return None
    budget_s = parse_duration(config.time_budget, key="--time-budget")
    if context.resume_path is not None:
        return TimeBudget(budget_s)
    measured = probe(config, seed=config.seed)
    fingerprint, choices = plan(config, measured)
    context.config = self_configure(_BudgetView(context), fingerprint, choices)
    return TimeBudget(budget_s - measured.wall_s, measured.steps_per_s)


def supports_self_play(env_id: str) -> bool:
    """Whether the env class of ``env_id`` can take a frozen policy as its opponent."""
    import gymnasium as gym

    check_env_id(env_id)
    entry_point = gym.spec(env_id).entry_point
    if isinstance(entry_point, str):
        from gymnasium.envs.registration import load_env_creator

        entry_point = load_env_creator(entry_point)
    return hasattr(entry_point, "set_opponent_agent")


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
    budget: TimeBudget | None = None,
) -> TrainResult:
    """Train ``config.algo`` on ``config.env`` for ``config.timesteps`` steps, then evaluate it.

    Args:
        config: The agent configuration (usually a preset plus command-line overrides).
        out: Run directory (see the module docstring for its layout).
        seed: Defaults to ``config.seed``. Seeds Python, NumPy, torch, the agent and every environment
            (env ``i`` gets ``seed + i``; the evaluation env gets ``seed + 10_000``).
        resume: ``"last"`` (``out/checkpoints/last.zip``) or the path of a run's ``last.zip``: continue
            exactly where it stopped (weights, optimiser, replay buffer, normalisation statistics, every
            env's episode, random generators, Monitor CSVs, evaluation curve) up to ``config.timesteps``.
        progress_bar: Show SB3's progress bar.
        verbose: SB3 verbosity.
        callbacks: Extra SB3 callbacks (e.g. Optuna pruning).
        tensorboard: Write TensorBoard logs to ``out/logs``.
        budget: Stop at the start of the rollout that would overrun it (``--time-budget``; see
            :mod:`pentad_rl.budget`), with ``last.zip`` written; the agent is then evaluated as usual.
            Default: ``config.time_budget`` in full, when set.

    Returns:
        The trained model, its final evaluation over ``config.eval_episodes`` deterministic episodes,
        the wall time and the learning curve (the whole run's, when resumed).

    Raises:
        ConfigError: Bad algorithm/env/model_options combination.
        CheckpointError: ``resume`` points at a missing, unfitting or non-resumable checkpoint.
        KeyboardInterrupt: After Ctrl-C, once the resumable checkpoint is written.
    """
    out = Path(out)
    seed = config.seed if seed is None else seed
    checkpoints, monitor = out / "checkpoints", out / "monitor"
    checkpoints.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    set_threads(config.threads)
    train_config = copy.deepcopy(config)
    if config.self_play:
        if not supports_self_play(config.env):
            raise ConfigError(f"self_play needs a two-player env such as pentad/ConnectFour-v0, not {config.env}.")
        train_config.env_kwargs["opponent"] = "self"
    path = None
    if resume is not None:
        path = checkpoints / LAST if str(resume) == "last" else Path(resume)
        if not path.is_file():
            raise CheckpointError(f"--resume {resume}: no checkpoint at {path}; train first or pass a .zip path.")
        prepare_monitor(monitor, read_resume_state(path))
    env = make_env(
        train_config, seed=seed, monitor_dir=str(monitor), monitor_append=path is not None, record_episodes=True
    )
    eval_env = make_env(evaluation_config(config), n_envs=1, seed=seed + 10_000, training=False)
    tb_log = str(out / "logs") if tensorboard else None
    if budget is None and config.time_budget:
        budget = TimeBudget(parse_duration(config.time_budget, key="--time-budget"))
    try:
        return _learn(config, out, env, eval_env, seed, path, tb_log, progress_bar, verbose, callbacks, budget)
    finally:
        env.close()
        eval_env.close()


def _learn(config, out, env, eval_env, seed, resume, tb_log, progress_bar, verbose, callbacks, budget) -> TrainResult:
    evaluator = CurveEvalCallback(
        eval_env,
        n_eval_episodes=config.eval_episodes,
        eval_freq=max(config.eval_freq // env.num_envs, 1) if config.eval_freq else -1,
        deterministic=True,
        callback_on_new_best=SaveBest(out / "checkpoints"),
        verbose=0,
    )
    parts: dict[str, Any] = {"evaluation": evaluator}
    if config.self_play:
        parts["self_play"] = SelfPlayCallback(config.self_play_freq)
    if budget is not None:
        parts["time_budget"] = budget
    finish = None
    if resume is not None:
        model, finish = resume_agent(
            resume, config, env, eval_env=eval_env, parts=parts, seed=seed, tensorboard_log=tb_log
        )
        if config.timesteps <= model.num_timesteps:
            raise ConfigError(
                f"--resume: the checkpoint has {model.num_timesteps} steps, already >= --timesteps "
                f"{config.timesteps}; raise --timesteps to train further."
            )
    else:
        model = build_agent(config, env, seed=seed, tensorboard_log=tb_log, verbose=verbose)
    model.verbose = verbose
    interrupt = Interrupt()
    checkpointer = CheckpointEveryN(
        out / "checkpoints", config.checkpoint_freq, eval_env=eval_env, parts=parts,
        monitor_dir=out / "monitor", interrupt=interrupt, on_start=finish, budget=budget,
    )  # fmt: skip
    chain: list[BaseCallback] = [checkpointer, *(p for p in parts.values() if isinstance(p, BaseCallback))]
    for callback in callbacks or []:
        if hasattr(callback, "evaluator"):
            callback.evaluator = evaluator  # e.g. Optuna's pruning callback reads the evaluations
        chain.append(callback)

    steps_before = model.num_timesteps
    start = time.perf_counter()
    with interrupt, contextlib.suppress(BudgetSpent):
        model.learn(
            total_timesteps=config.timesteps - steps_before,
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
    stopped = budget.stopped_at if budget is not None else None
    return TrainResult(model, evaluation, wall, steps, curve=evaluator.curve, stopped_by_budget=stopped is not None)


# -- evaluation and acting ----------------------------------------------------------------------------
def evaluate_levels(
    model: Any, config: RLConfig, episodes: int, seed: int, deterministic: bool = True
) -> dict[int, EvalResult]:
    """Connect Four: ``model`` against the heuristic opponent at every difficulty (0-3).

    Args:
        model: Anything with SB3's ``predict``.
        config: The agent's config (its ``env_kwargs`` other than the opponent's are kept).
        episodes: Episodes per difficulty.
        seed: Difficulty ``k`` is played in an env seeded with ``seed + k``.
        deterministic: Greedy actions.

    Returns:
        One :class:`EvalResult` per difficulty; empty for any other environment.
    """
    if config.env != CONNECT_FOUR_ID:
        return {}
    results = {}
    for level in DIFFICULTIES:
        level_config = copy.deepcopy(config)
        level_config.env_kwargs = {**config.env_kwargs, "difficulty": level, "opponent": "heuristic"}
        env = make_env(level_config, n_envs=1, seed=seed + level, training=False)
        results[level] = evaluate_agent(model, env, episodes, deterministic=deterministic)
        env.close()
    return results


def evaluate(
    model: Any, env: VecEnv, config: RLConfig, episodes: int, deterministic: bool = True
) -> tuple[EvalResult, dict[str, float], list[dict[str, Any]]]:
    """Evaluate ``model`` in ``env`` and, on Connect Four, against every difficulty of the heuristic.

    Returns:
        ``(result, metrics, rows)``: the result in ``env``, the ``eval/...`` and
        ``eval/difficulty<k>/...`` metrics, and one table row per opponent.
    """
    result = evaluate_agent(model, env, episodes, deterministic=deterministic)
    metrics = result.metrics("eval")
    rows = [{"opponent": "as configured", **result.row()}]
    for level, level_result in evaluate_levels(model, config, episodes, config.seed + 20_000, deterministic).items():
        metrics.update(level_result.metrics(f"eval/difficulty{level}"))
        rows.append({"opponent": f"difficulty {level}", **level_result.row()})
    return result, metrics, rows


@dataclass
class Episode:
    """One played episode: raw return, length and the actions taken."""

    total_return: float
    length: int
    actions: list[Any]


def play_episode(model: Any, env: VecEnv, deterministic: bool = True) -> Episode:
    """Play one episode in the single env of ``env`` (recurrent policies keep their state)."""
    observation = env.reset()
    state, start = None, np.ones(1, dtype=bool)
    total, actions = 0.0, []
    while True:
        action, state = model.predict(observation, state=state, episode_start=start, deterministic=deterministic)
        observation, reward, done, _ = env.step(action)
        actions.append(np.asarray(action[0]).tolist())
        total += float(reward[0])
        start = done
        if done[0]:
            return Episode(total, len(actions), actions)


def play(model: Any, env: VecEnv, episodes: int = 1) -> Iterator[tuple[str | None, float | None]]:
    """Play ``episodes`` episodes in the single env of ``env``, step by step.

    Yields:
        ``(frame, episode_return)`` per step: the text frame of an ``ansi`` env (else ``None``), and the
        raw return when the step ended an episode (else ``None``).
    """
    ansi = env.render_mode == "ansi"
    observation, finished = env.reset(), 0
    while finished < episodes:
        action, _ = model.predict(observation, deterministic=True)
        observation, _, done, info = env.step(action)
        episode_return = None
        if done[0]:
            finished += 1
            episode_return = float(info[0].get("episode", {}).get("r", float("nan")))
        yield (env.env_method("render")[0] if ansi else None), episode_return


def load_observations(path: str | Path) -> np.ndarray:
    """A ``.npy`` array of observations ``(N, *observation_shape)``, without pickle.

    Raises:
        DataError: If the file is missing or not a readable ``.npy`` array.
    """
    path = Path(path)
    if not path.is_file():
        raise missing_file(path, "observations file", "Pass a .npy array of shape (N, *observation_shape).")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as error:
        raise DataError(f"{path} is not a readable .npy array ({error}).") from None


def save_array(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as ``.npy`` (no pickle), atomically; returns ``path``."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def write_learning_curve(config: RLConfig, curve: list[dict[str, float]], out: str | Path, title: str = "") -> Path:
    """``plots/learning_curve.png`` (the training episodes of ``monitor/`` and the evaluations) and
    ``learning_curve.json`` (the evaluations: timesteps, wall seconds, mean return, success rate) of the
    run in ``out``; after ``--resume`` both cover the whole run. Returns the plot's path."""
    from pentad_rl.plots import plot_learning_curve

    out = Path(out)
    atomic_write_json(out / "learning_curve.json", curve)
    return plot_learning_curve(
        out / "monitor", curve, out / "plots" / "learning_curve.png", title=title, n_envs=config.n_envs
    )


def write_report(stem: str | Path, payload: Any, rows: list[dict[str, Any]]) -> None:
    """``<stem>.json`` (``payload``) and ``<stem>.md`` (``rows`` as a table), atomically."""
    from pentad_core.bench import format_table

    atomic_write_json(Path(f"{stem}.json"), payload)
    atomic_write_text(Path(f"{stem}.md"), format_table(rows) + "\n")


def sample_predictions(predictor: Any, count: int = 8) -> dict[str, list]:
    """Actions of a :class:`~pentad_rl.predictor.Predictor` for ``count`` observations sampled from its
    observation space (seeded with the config's seed): ``{"observations": [...], "actions": [...]}``."""
    space = predictor.model.observation_space
    space.seed(predictor.config.seed)
    observations = np.stack([space.sample() for _ in range(count)])
    return {"observations": observations.tolist(), "actions": predictor.predict(observations).tolist()}


# -- benchmark: pentad's training against plain stable-baselines3 --------------------------------------
#: Published RL Zoo results (rl-baselines3-zoo benchmark.md), for reference in the tables.
ZOO_REFERENCE = {
    ("ppo", "CartPole-v1"): "500.0 +- 0.0 after 1e5 steps",
    ("dqn", "CartPole-v1"): "500.0 +- 0.0 after 5e4 steps",
}


#: What ``benchmark`` runs beside pentad: plain SB3 with the same preset, SB3's bare defaults, or nothing.
BASELINES = ("preset", "defaults", "none")
BASELINE_HELP = (
    "beside pentad: plain stable-baselines3 with the same preset (default), with its bare library defaults "
    "(1 env, no preset) for the same steps, or none"
)


def bare_defaults(config: RLConfig) -> RLConfig:
    """``config``'s algorithm, environment, steps and threads with nothing of its preset: SB3's own defaults."""
    return RLConfig(
        model=config.algo, dataset=config.env, env_kwargs=dict(config.env_kwargs), timesteps=config.timesteps,
        threads=config.threads, device=config.device, seed=config.seed,
    )  # fmt: skip


def plain_sb3(config: RLConfig, seed: int, episodes: int) -> dict[str, float]:
    """Train and evaluate with stable-baselines3 alone (no pentad code in the loop)."""
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    from pentad_rl.registry import ALGORITHMS

    set_threads(config.threads)  # the same torch thread count as pentad's run
    env = make_vec_env(config.env, n_envs=config.n_envs, seed=seed, env_kwargs=dict(config.env_kwargs))
    model = ALGORITHMS.get(config.algo)(
        config.policy or "MlpPolicy", env, seed=seed, device=config.device, verbose=0, **agent_arguments(config, env)
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
    """Train with :func:`train` (run folder, checkpoints, TensorBoard, Monitor) and plot its curve."""
    run_config = copy.deepcopy(config)
    run_config.eval_episodes = episodes
    result = train(run_config, out, seed=seed, tensorboard=True)
    write_learning_curve(config, result.curve, out, title=f"{config.algo} on {config.env}, seed {seed}")
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
    rollout = int(config.model_options.get("n_steps", 0) or 0) * config.n_envs
    short.timesteps = max(2 * rollout, 1_000)
    short.eval_freq = 0
    pentad_run(short, 0, 1, out)
    plain_sb3(short, 0, 1)


def benchmark(
    config: RLConfig,
    seeds: list[int],
    episodes: int = 20,
    baseline: bool | str = "preset",
    out: str | Path = "runs/rl/benchmark",
    log: Callable[[str], None] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Run pentad and (optionally) plain SB3 for every seed, alternating.

    For every seed the two runs alternate (same algorithm, ``model_options``, number of envs and
    steps), so that a noisy neighbour on a shared machine slows both alike; the order flips from seed
    to seed so that neither always pays for running first. A short untimed warm-up of both paths
    precedes the timed runs (the first ``learn`` of a process imports TensorBoard and initialises torch
    kernels). Both are timed around ``model.learn`` only and evaluated on deterministic episodes.

    Args:
        baseline: ``preset`` (plain SB3 with the same config; also ``True``), ``defaults`` (plain SB3 with its
            bare defaults, :func:`bare_defaults`, for the same number of steps) or ``none`` (``False``).
        log: Called with one line per finished run (the CLI prints it); ``None`` is silent.

    Returns:
        ``(rows, summary)``: one row per (seed, implementation) with mean/std return, wall seconds and
        steps/s; the summary holds ``bench/pentad_mean_return``, ``bench/pentad_min_return``,
        ``bench/pentad_wall_s``, ``bench/sb3_wall_s``, ``bench/time_ratio`` (pentad / SB3 wall time) and,
        for Connect Four, ``bench/difficulty<k>/win_rate`` of the last pentad agent.
    """
    out = Path(out)
    rows: list[dict[str, Any]] = []
    reference = ZOO_REFERENCE.get((config.algo, config.env), "n/a")
    baseline = {True: "preset", False: "none"}.get(baseline, baseline)  # type: ignore[arg-type]
    if baseline not in BASELINES:
        raise ConfigError(f"--baseline {baseline!r} must be one of {', '.join(BASELINES)}.")
    other = "stable-baselines3" if baseline == "preset" else "sb3 defaults"
    if baseline != "none":
        warm_up(config, out / "warmup")
    model = None
    for index, seed in enumerate(seeds):
        order = ("pentad", other) if index % 2 == 0 else (other, "pentad")
        for implementation in order:
            if implementation == "pentad":
                metrics, model = pentad_run(config, seed, episodes, out / f"pentad_seed{seed}")
            elif baseline != "none":
                metrics = plain_sb3(config if baseline == "preset" else bare_defaults(config), seed, episodes)
            else:
                continue
            rows.append({"implementation": implementation, "seed": seed, **metrics, "rl_zoo": reference})
            if log is not None:
                log(
                    f"{implementation:<17} seed {seed}: {metrics['mean_return']:.1f} +- "
                    f"{metrics['std_return']:.1f} in {metrics['wall_s']:.1f} s"
                )
    pentad_rows = [r for r in rows if r["implementation"] == "pentad"]
    summary = {
        "bench/pentad_mean_return": statistics.mean(r["mean_return"] for r in pentad_rows),
        "bench/pentad_min_return": min(r["mean_return"] for r in pentad_rows),
        "bench/pentad_wall_s": statistics.mean(r["wall_s"] for r in pentad_rows),
        "bench/pentad_steps_per_s": statistics.mean(r["steps_per_s"] for r in pentad_rows),
    }
    defaults_rows = [r for r in rows if r["implementation"] == "sb3 defaults"]
    if defaults_rows:
        summary["bench/defaults_mean_return"] = statistics.mean(r["mean_return"] for r in defaults_rows)
        summary["bench/defaults_min_return"] = min(r["mean_return"] for r in defaults_rows)
    sb3_rows = [r for r in rows if r["implementation"] == "stable-baselines3"]
    if sb3_rows:
        summary["bench/sb3_mean_return"] = statistics.mean(r["mean_return"] for r in sb3_rows)
        summary["bench/sb3_wall_s"] = statistics.mean(r["wall_s"] for r in sb3_rows)
        summary["bench/time_ratio"] = summary["bench/pentad_wall_s"] / summary["bench/sb3_wall_s"]
    if model is not None:
        for level, result in evaluate_levels(model, config, episodes, seed=30_000).items():
            summary[f"bench/difficulty{level}/win_rate"] = result.success_rate or 0.0
            summary[f"bench/difficulty{level}/mean_return"] = result.mean_return
    return rows, summary


# -- tuning -------------------------------------------------------------------------------------------
def tune(
    config: RLConfig,
    n_trials: int = 10,
    n_evaluations: int = 4,
    seed: int | None = None,
    workdir: str | Path | None = None,
    timeout: float | None = None,
):
    """Optuna search over ``config.algo``'s space (:data:`pentad_rl.tuning.SEARCH_SPACES`) on ``config.env``.

    Each trial trains the preset's agent with sampled ``model_options`` for ``config.timesteps``
    steps, evaluating ``n_evaluations`` times; a trial whose evaluation falls below the median of
    earlier trials at the same step is pruned (TPE sampling, median pruning).

    Args:
        config: The base preset; each trial trains for ``config.timesteps`` steps.
        n_trials: Number of trials.
        n_evaluations: Intermediate evaluations per trial (the pruning points).
        seed: Seeds the sampler and every trial's training (defaults to ``config.seed``).
        workdir: Where trial runs are written (a temporary folder when ``None``).
        timeout: Stop starting new trials after this many seconds.

    Returns:
        The finished ``optuna.Study`` (``study.best_trial.user_attrs["model_options"]`` holds the merged values).

    Raises:
        ConfigError: If there is no search space for the algorithm or ``n_trials`` is not positive.
    """
    import optuna

    from pentad_rl.tuning import SEARCH_SPACES, TrialEvalCallback, sample_model_options

    if config.algo not in SEARCH_SPACES:
        raise ConfigError(f"no tuning search space for --algo {config.algo}; known: {', '.join(SEARCH_SPACES)}.")
    if n_trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {n_trials}.")
    seed = config.seed if seed is None else seed
    eval_freq = max(config.timesteps // n_evaluations, 1)
    temporary = tempfile.TemporaryDirectory(prefix="pentad-tune-") if workdir is None else None
    root = Path(workdir) if workdir is not None else Path(temporary.name)

    def objective(trial: optuna.Trial) -> float:
        trial_config = copy.deepcopy(config)
        trial_config.model_options = sample_model_options(trial, config)
        trial_config.eval_freq = eval_freq
        trial_config.checkpoint_freq = 0
        trial.set_user_attr("model_options", trial_config.model_options)
        reporter = TrialEvalCallback(trial)
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


def trials_table(study) -> list[dict[str, Any]]:
    """One row per trial of an Optuna study: number, state, value and the sampled parameters."""
    rows = []
    for trial in study.trials:
        rows.append({
            "trial": trial.number,
            "state": trial.state.name.lower(),
            "mean_return": float(trial.value) if trial.value is not None else float("nan"),
            **{key: value for key, value in trial.params.items()},
        })  # fmt: skip
    return rows


def best_config(config: RLConfig, study) -> RLConfig:
    """``config`` with the best trial's ``model_options``, ready to be written as a preset.

    Raises:
        ConfigError: If no trial completed.
    """
    import optuna

    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise ConfigError("no tuning trial completed (all pruned or failed); raise --trials or --timesteps.")
    best = copy.deepcopy(config)
    best.model_options = dict(study.best_trial.user_attrs["model_options"])
    best.source = f"pentad tune: best of {len(study.trials)} trials, mean return {study.best_value:.2f}"
    return best
