"""``apps/rl``: train, evaluate, record, export and tune stable-baselines3 agents on gymnasium envs.

Verbs: demo train evaluate predict export benchmark data models (the contract) + record play tune.
``--algo`` is the ``model`` key and ``--env`` the ``dataset`` key of the config; when both name a preset
(``shared/configs/rl/<algo>-<env>.yaml``, RL Zoo values) it is the recipe. SB3 keeps its own training
loop; the run folder, config, seeding, checkpoints, export parity and tables come from pentad-core.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from pentad_core.bench import format_table, print_table
from pentad_core.cli import App, Context
from pentad_core.config import load_yaml
from pentad_core.errors import CheckpointError, ConfigError, DataError, missing_file
from pentad_core.files import atomic_write_json, atomic_write_text
from pentad_core.runs import RunDir, latest_run
from pentad_rl.config import RLConfig
from pentad_rl.presets import preset_path
from pentad_rl.registry import ALGORITHMS, ENVIRONMENTS

CONNECT_FOUR = "pentad/ConnectFour-v0"


class RLApp(App):
    """The scaffold with RL presets as recipes and ``.zip`` agent checkpoints for ``--resume``."""

    def resolve_config(self, args: argparse.Namespace, verb: Any = None) -> Any:
        if getattr(args, "epochs", None) is not None:
            raise ConfigError("--epochs does not apply to reinforcement learning; use --timesteps N.")
        self._algo_hint = self._hint(args, "model")
        self._resume_to_zip(args, verb)
        return super().resolve_config(args, verb)

    def _hint(self, args: argparse.Namespace, key: str) -> str | None:
        """The value of ``key`` from the command line, ``--config`` or the checkpoint's run config."""
        value = getattr(args, f"app_option_{key}", None) or getattr(args, key, None)
        for text in getattr(args, "set", []) or []:
            if text.startswith(f"{key}="):
                value = text.split("=", 1)[1]
        if value:
            return value
        sources = []
        if getattr(args, "config", None):
            sources.append(Path(args.config))
        if getattr(args, "checkpoint", None):
            parent = Path(args.checkpoint).resolve().parent
            sources.append((parent.parent if parent.name == "checkpoints" else parent) / RunDir.CONFIG)
        for source in sources:
            if source.is_file():
                found = load_yaml(source).get(key)
                if found:
                    return str(found)
        return None

    def _resume_to_zip(self, args: argparse.Namespace, verb: Any) -> None:
        """``--resume last`` means ``<out>/checkpoints/last.zip`` (SB3 archives, not Lightning .ckpt)."""
        if getattr(args, "resume", None) != "last" or verb is None or not verb.trains:
            return
        out = Path(args.out) if args.out else latest_run(self.name)
        if out is None:
            raise ConfigError(f"--resume last found no earlier run under runs/{self.name}; give --out DIR.")
        last = out / "checkpoints" / "last.zip"
        if not last.is_file():
            raise CheckpointError(f"no checkpoint to resume from at {last}.", "Give the --out of an interrupted run.")
        args.out, args.resume = str(out), str(last)

    def recipe(self, dataset: str, verb: str | None = None) -> dict[str, Any]:
        """``demo.yaml`` for the demo without --algo/--env, else the preset of (algo, env) if any."""
        if verb == "demo" and not self._algo_hint and dataset == RLConfig.dataset:
            return super().recipe(dataset, verb)
        path = preset_path(self._algo_hint or RLConfig.model, dataset)
        return load_yaml(path) if path is not None else {}


app = RLApp(
    "rl",
    "Reinforcement learning: stable-baselines3 agents (ppo, a2c, dqn, sac, td3, qrdqn, trpo, recurrent-ppo) on "
    "gymnasium environments and pentad's own Connect Four, with RL Zoo presets.",
    RLConfig,
    models=ALGORITHMS,
    datasets=ENVIRONMENTS,
)
app.option("--algo", key="model", metavar="NAME", help="algorithm (see `models`): ppo, dqn, sac, ...")
app.option("--env", key="dataset", metavar="ID", help="gymnasium id, e.g. CartPole-v1, pentad/ConnectFour-v0")
app.option("--n-envs", key="n_envs", type=int, metavar="N", help="parallel environments")
app.option("--vec-env", key="vec_env", choices=("dummy", "subproc"), help="vectorisation (default dummy)")
app.option("--timesteps", key="timesteps", type=int, metavar="N", help="total environment steps to train")


# -- helpers ------------------------------------------------------------------------------------------
def _agent_path(context: Context) -> Path:
    """``--checkpoint``, else ``best.zip``/``last.zip`` of the run in ``--out``."""
    if context.checkpoint is not None:
        return context.checkpoint
    for name in ("best.zip", "last.zip"):
        candidate = context.run.checkpoints / name if context.run else None
        if candidate is not None and candidate.is_file():
            return candidate
    raise ConfigError(f"`{context.verb}` needs --checkpoint PATH (e.g. runs/rl/<run>/checkpoints/best.zip).")


def _load(context: Context, n_envs: int = 1, render_mode: str | None = None):
    """The agent of ``--checkpoint`` and a matching env (normalisation statistics restored)."""
    from pentad_rl.agents import load_agent
    from pentad_rl.environments import load_normalization, make_env

    config: RLConfig = context.config
    path = _agent_path(context)
    env = make_env(config, n_envs=n_envs, seed=config.seed + 10_000, training=False, render_mode=render_mode)
    statistics = path.with_name(f"{path.stem}_vecnormalize.npz")
    if config.normalize:
        if not statistics.is_file():
            raise missing_file(statistics, "normalisation statistics of the agent", "Copy them next to the .zip.")
        load_normalization(env, statistics)
    return load_agent(path, config.algo, env=env, device=config.device), env, path


def _progress() -> bool:
    return sys.stderr.isatty()


def _train_and_report(context: Context, tensorboard: bool = True) -> Any:
    from pentad_rl.plots import plot_learning_curve
    from pentad_rl.training import train

    config: RLConfig = context.config
    run = context.run
    context.print(
        f"training {config.algo} on {config.env}: {config.timesteps} steps, {config.n_envs} env(s)"
        + (f" (preset: {config.source})" if config.source else "")
    )
    result = train(config, run.path, resume=context.resume_path, progress_bar=_progress(), tensorboard=tensorboard)
    metrics = run.write_metrics(result.metrics())
    plot_learning_curve(
        run.path / "monitor", result.curve, run.plot_path("learning_curve"), title=f"{config.algo} on {config.env}"
    )
    evaluation = result.evaluation
    context.print(
        f"{config.algo} {config.env}: mean return {evaluation.mean_return:.1f} +- {evaluation.std_return:.1f} over "
        f"{evaluation.episodes} episodes, {result.steps_per_s:.0f} steps/s, {result.wall_s:.1f} s"
    )
    del metrics
    return result


# -- verbs ----------------------------------------------------------------------------------------------
@app.verb("train", "Train an agent (a preset when --algo/--env name one).", trains=True)
def train_verb(context: Context) -> None:
    """Train, evaluate, save checkpoints, TensorBoard logs and the learning curve."""
    _train_and_report(context)
    context.print(f"run folder: {context.run.path}")


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-gif", action="store_true", help="skip the GIF")


@app.verb(
    "demo",
    "Train PPO on CartPole offline (~1 min), evaluate, act, plot and write a GIF.",
    trains=True,
    arguments=_demo_arguments,
)
def demo_verb(context: Context) -> None:
    """The whole loop on the simulated CartPole: train, evaluate, predict, plot, record."""
    from pentad_rl.recording import record

    start = time.perf_counter()
    result = _train_and_report(context)
    run = context.run
    config: RLConfig = context.config
    observations = np.stack([result.model.observation_space.sample() for _ in range(8)])
    actions, _ = result.model.predict(observations, deterministic=True)
    atomic_write_json(
        run.path / "predictions.json", {"observations": observations.tolist(), "actions": np.asarray(actions).tolist()}
    )
    if not context.args.no_gif:
        normalization = run.checkpoints / "last_vecnormalize.npz"
        gif, returns = record(
            result.model,
            config,
            run.path / "agent.gif",
            max_frames=300,
            normalization=normalization if normalization.is_file() else None,
        )
        context.print(f"GIF: {gif} (returns {', '.join(f'{r:.0f}' for r in returns) or 'episode cut at 300 frames'})")
    context.print(f"demo finished in {time.perf_counter() - start:.1f} s; run folder: {run.path}")


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--episodes", type=int, default=20, metavar="N", help="deterministic episodes (default 20)")
    parser.add_argument("--stochastic", action="store_true", help="sample actions instead of the greedy ones")


@app.verb("evaluate", "Mean/std return, lengths and success rate over N episodes.", arguments=_evaluate_arguments)
def evaluate_verb(context: Context) -> None:
    """Evaluate ``--checkpoint``; on Connect Four against the heuristic at every difficulty."""
    import copy

    from pentad_rl.evaluation import evaluate_agent

    config: RLConfig = context.config
    episodes = context.args.episodes
    model, env, path = _load(context)
    result = evaluate_agent(model, env, episodes, deterministic=not context.args.stochastic)
    metrics = result.metrics("eval")
    rows = [{"opponent": "as configured", **_row(result)}]
    if config.env == CONNECT_FOUR:
        from pentad_rl.environments import make_env
        from pentad_rl.envs.connect_four import DIFFICULTIES

        for level in DIFFICULTIES:
            level_config = copy.deepcopy(config)
            level_config.env_kwargs = {**config.env_kwargs, "difficulty": level, "opponent": "heuristic"}
            level_env = make_env(level_config, n_envs=1, seed=config.seed + 20_000 + level, training=False)
            level_result = evaluate_agent(model, level_env, episodes, deterministic=not context.args.stochastic)
            metrics.update(level_result.metrics(f"eval/difficulty{level}"))
            rows.append({"opponent": f"difficulty {level}", **_row(level_result)})
    context.run.write_metrics(metrics)
    atomic_write_json(context.run.path / "evaluation.json", {"checkpoint": str(path), **result.as_dict()})
    print_table(rows, title=f"{config.algo} on {config.env} ({path.name})")


def _row(result) -> dict[str, Any]:
    return {
        "episodes": result.episodes,
        "mean_return": result.mean_return,
        "std_return": result.std_return,
        "mean_length": result.mean_length,
        "success_rate": "n/a" if result.success_rate is None else result.success_rate,
    }


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--observations", metavar="FILE.npy", help="observations (N, *obs_shape) to act on")


@app.verb("predict", "Actions for observations in a .npy file, or one played episode.", arguments=_predict_arguments)
def predict_verb(context: Context) -> None:
    """Write ``predictions.npy`` (actions for ``--observations``) or ``episode.json`` (a played episode)."""
    from pentad_rl.export import predict_actions

    model, env, _ = _load(context)
    if context.args.observations:
        source = Path(context.args.observations)
        if not source.is_file():
            raise missing_file(source, "observations file", "Pass a .npy array of shape (N, *observation_shape).")
        try:
            observations = np.load(source, allow_pickle=False)
        except ValueError as error:
            raise DataError(f"{source} is not a readable .npy array ({error}).") from None
        expected = model.observation_space.shape
        if observations.shape[1:] != expected:
            raise DataError(
                f"{source} has observations of shape {observations.shape[1:]}; {context.config.env} "
                f"needs (N, {', '.join(map(str, expected))})."
            )
        if not np.isfinite(observations).all():
            raise DataError(f"{source} contains NaN or infinite values; clean the observations first.")
        actions = predict_actions(model, observations.astype(np.float32), env)
        target = context.run.path / "predictions.npy"
        import io

        from pentad_core.files import atomic_write_bytes

        buffer = io.BytesIO()
        np.save(buffer, np.asarray(actions))
        atomic_write_bytes(target, buffer.getvalue())
        context.print(f"{len(actions)} actions written to {target}")
        return
    observation = env.reset()
    steps, total, actions_taken = 0, 0.0, []
    state, start = None, np.ones(1, dtype=bool)
    while True:
        action, state = model.predict(observation, state=state, episode_start=start, deterministic=True)
        observation, reward, done, _ = env.step(action)
        actions_taken.append(np.asarray(action[0]).tolist())
        total += float(reward[0])
        steps += 1
        start = done
        if done[0]:
            break
    atomic_write_json(context.run.path / "episode.json", {"return": total, "length": steps, "actions": actions_taken})
    context.run.write_metrics({"predict/return": total, "predict/length": float(steps)})
    context.print(f"one episode: return {total:.1f}, {steps} steps; actions in {context.run.path / 'episode.json'}")


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", default="onnx", choices=("onnx",), help="export format (onnx)")


@app.verb("export", "Export the policy to ONNX and check it takes the same actions.", arguments=_export_arguments)
def export_verb(context: Context) -> None:
    """Write ``policy.onnx`` and the parity metrics."""
    from pentad_rl.export import export_policy

    model, env, path = _load(context, n_envs=1)
    target = context.run.path / "policy.onnx"
    metrics = export_policy(model, target, env, batch=64, seed=context.config.seed)
    context.run.write_metrics(metrics)
    context.print(
        f"exported {path.name} to {target}: identical actions on {int(metrics['export/batch'])} "
        f"observations, max abs diff {metrics['export/max_abs_diff']:.2g}"
    )


def _record_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--episodes", type=int, default=1, metavar="N", help="episodes to record")
    parser.add_argument("--format", default="gif", choices=("gif", "mp4"), help="gif (default) or mp4")
    parser.add_argument("--max-frames", type=int, default=500, metavar="N", help="frame limit")


@app.verb("record", "Record the agent playing as a GIF (or MP4) in the run folder.", arguments=_record_arguments)
def record_verb(context: Context) -> None:
    from pentad_rl.recording import record

    model, env, path = _load(context)
    env.close()
    statistics = path.with_name(f"{path.stem}_vecnormalize.npz")
    target = context.run.path / f"agent.{context.args.format}"
    written, returns = record(
        model,
        context.config,
        target,
        episodes=context.args.episodes,
        seed=context.config.seed,
        max_frames=context.args.max_frames,
        normalization=statistics if statistics.is_file() else None,
    )
    context.print(f"recorded {written} (episode returns: {', '.join(f'{r:.1f}' for r in returns) or 'cut'})")


def _play_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--render", default="human", choices=("human", "ansi"), help="window or text")
    parser.add_argument("--episodes", type=int, default=1, metavar="N")


@app.verb(
    "play",
    "Watch the agent play (--render human needs a display; ansi prints text).",
    arguments=_play_arguments,
    writes_run=False,
)
def play_verb(context: Context) -> None:
    mode = context.args.render
    if mode == "human" and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform in ("darwin", "win32")
    ):
        raise ConfigError("--render human needs a display (DISPLAY is unset); use --render ansi or `record`.")
    from pentad_rl.agents import load_agent
    from pentad_rl.environments import make_env

    config: RLConfig = context.config
    if context.checkpoint is None:
        raise ConfigError("`play` needs --checkpoint PATH (e.g. runs/rl/<run>/checkpoints/best.zip).")
    import gymnasium as gym

    from pentad_rl.environments import check_env_id

    check_env_id(config.env)
    probe = gym.make(config.env, **config.env_kwargs)
    modes = probe.metadata.get("render_modes", [])
    probe.close()
    if mode not in modes:
        raise ConfigError(
            f"--render {mode} is not supported by {config.env} (it offers {', '.join(modes)}); use `record` for a GIF."
        )
    env = make_env(config, n_envs=1, seed=config.seed, training=False, render_mode=mode)
    model = load_agent(context.checkpoint, config.algo, env=env)
    observation, finished = env.reset(), 0
    while finished < context.args.episodes:
        action, _ = model.predict(observation, deterministic=True)
        observation, _, done, info = env.step(action)
        if mode == "ansi":
            print(env.env_method("render")[0])
        if done[0]:
            finished += 1
            print(f"episode {finished}: return {info[0].get('episode', {}).get('r', float('nan'))}")
    env.close()


def _tune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=10, metavar="N", help="Optuna trials (default 10)")
    parser.add_argument("--evaluations", type=int, default=4, metavar="N", help="pruning points per trial")
    parser.add_argument("--tune-timeout", type=float, metavar="S", help="stop starting trials after S seconds")


@app.verb("tune", "Optuna search over the preset's hyperparameters with median pruning.", arguments=_tune_arguments)
def tune_verb(context: Context) -> None:
    """Write ``tune.json`` (all trials), ``tune.md`` (table) and ``preset.yaml`` (best config)."""
    from pentad_rl.presets import preset_name, write_preset
    from pentad_rl.tuning import best_config, trials_table, tune

    config: RLConfig = context.config
    study = tune(
        config,
        n_trials=context.args.trials,
        n_evaluations=context.args.evaluations,
        workdir=context.run.path / "trials",
        timeout=context.args.tune_timeout,
    )
    rows = trials_table(study)
    atomic_write_json(context.run.path / "tune.json", rows)
    atomic_write_text(context.run.path / "tune.md", format_table(rows) + "\n")
    print_table(rows, title=f"tune {config.algo} on {config.env}")
    best = best_config(config, study)
    preset = write_preset(
        best,
        context.run.path / "preset.yaml",
        header=f"Best of {len(rows)} Optuna trials; copy to shared/configs/rl/"
        f"{preset_name(config.algo, config.env)}.yaml to make it the default.",
    )
    context.run.write_metrics({"tune/best_mean_return": float(study.best_value), "tune/trials": float(len(rows))})
    context.print(f"best mean return {study.best_value:.1f} (trial {study.best_trial.number}); preset: {preset}")


def _benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="S", help="seeds (default 0 1 2)")
    parser.add_argument("--episodes", type=int, default=20, metavar="N", help="evaluation episodes per seed")
    parser.add_argument("--no-baseline", action="store_true", help="skip the plain stable-baselines3 runs")


@app.verb(
    "benchmark",
    "Preset vs plain stable-baselines3 on the same seeds, interleaved (default CartPole PPO).",
    arguments=_benchmark_arguments,
)
def benchmark_verb(context: Context) -> None:
    """Train with pentad and with plain SB3 (same hyperparameters), alternating per seed."""
    from pentad_rl.benchmark import run_benchmark

    rows, summary = run_benchmark(
        context.config,
        context.args.seeds,
        context.args.episodes,
        baseline=not context.args.no_baseline,
        out=context.run.path,
        log=context.print,
    )
    context.run.write_metrics(summary)
    atomic_write_json(context.run.path / "benchmark.json", {"rows": rows, "summary": summary})
    atomic_write_text(context.run.path / "benchmark.md", format_table(rows) + "\n")
    print_table(rows, title=f"{context.config.algo} on {context.config.env}")
    for key, value in summary.items():
        context.print(f"{key}: {value:.4g}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``apps/rl``."""
    return app.main(argv)
