"""``apps/rl`` verbs: demo train evaluate predict export benchmark data models, plus record play tune serve.

``--algo`` sets ``model`` and ``--env`` sets ``dataset``; their preset (:class:`pentad_rl.presets.RLApp`) is
the recipe. Each verb parses, calls :mod:`pentad_rl.pipeline` or the :class:`~pentad_rl.predictor.Predictor`, prints.
"""

from __future__ import annotations

import argparse
import sys
import time

from pentad_core.bench import print_table
from pentad_core.cli import Context
from pentad_core.errors import ConfigError, DataError
from pentad_core.files import atomic_write_json
from pentad_core.serving import add_serve_arguments, serve_options
from pentad_rl import pipeline
from pentad_rl.config import RLConfig
from pentad_rl.predictor import Predictor
from pentad_rl.presets import RESUME_CHANGES, RLApp, preset_hint, write_preset
from pentad_rl.registry import ALGORITHMS, ENVIRONMENTS

app = RLApp(
    "rl",
    "Reinforcement learning: stable-baselines3/sb3-contrib agents on gymnasium and Connect Four, RL Zoo presets.",
    RLConfig,
    models=ALGORITHMS,
    datasets=ENVIRONMENTS,
    last_checkpoint=pipeline.LAST,
    resume_changes=RESUME_CHANGES,
)
app.option("--algo", key="model", metavar="NAME", help="algorithm (see `models`): ppo, dqn, sac, ...")
app.option("--env", key="dataset", metavar="ID", help="gymnasium id, e.g. CartPole-v1, pentad/ConnectFour-v0")
app.option("--n-envs", key="n_envs", type=int, metavar="N", help="parallel environments")
app.option("--vec-env", key="vec_env", choices=("dummy", "subproc"), help="vectorisation (default dummy)")
app.option("--timesteps", key="timesteps", type=int, metavar="N", help="total environment steps to train")


def _predictor(context: Context) -> Predictor:
    """The agent of ``--checkpoint`` (a run folder or a .zip); the verb writes into its own new folder."""
    if context.checkpoint is None:
        raise ConfigError(f"`{context.verb}` needs --checkpoint PATH (a run folder or its checkpoints/best.zip).")
    return Predictor.from_run(context.checkpoint, config=context.config)


def _train(context: Context) -> pipeline.TrainResult:
    budget = pipeline.configure_budget(context)  # --time-budget: timesteps from a measured speed
    config: RLConfig = context.config
    context.print(f"training {config.algo} on {config.env}: {config.timesteps} steps, {config.n_envs} env(s)")
    bar = sys.stderr.isatty()
    result = pipeline.train(config, context.run.path, resume=context.resume_path, progress_bar=bar, budget=budget)
    context.run.write_metrics(result.metrics())
    pipeline.write_learning_curve(config, result.curve, context.run.path, title=f"{config.algo} on {config.env}")
    evaluation = result.evaluation
    context.print(
        f"{config.algo} {config.env}: mean return {evaluation.mean_return:.1f} +- {evaluation.std_return:.1f} over "
        f"{evaluation.episodes} episodes, {result.steps_per_s:.0f} steps/s, {result.wall_s:.1f} s"
        + (f"; stopped by --time-budget at {result.model.num_timesteps} steps" if result.stopped_by_budget else "")
    )
    return result


@app.verb("train", "Train an agent (a preset when --algo/--env name one).", trains=True)
def train_verb(context: Context) -> None:
    _train(context)
    context.print(f"run folder: {context.run.path}")


@app.verb(
    "demo",
    "Train PPO on CartPole offline (~1 min), evaluate, act, plot and write a GIF.",
    trains=True,
    arguments=lambda parser: parser.add_argument("--no-gif", action="store_true", help="skip the GIF"),
)
def demo_verb(context: Context) -> None:
    from pentad_rl.recording import record

    start = time.perf_counter()
    _train(context)
    # The agent as it finished training (last.zip), loaded back from the run as any user would.
    predictor = Predictor.from_run(context.run.checkpoints / pipeline.LAST, config=context.config)
    atomic_write_json(context.run.path / "predictions.json", pipeline.sample_predictions(predictor, 8))
    if not context.args.no_gif:
        gif, returns = record(
            predictor.model,
            context.config,
            context.run.path / "agent.gif",
            max_frames=300,
            normalization=predictor.statistics,
        )
        context.print(f"GIF: {gif} (returns {', '.join(f'{r:.0f}' for r in returns) or 'episode cut at 300 frames'})")
    context.print(f"demo finished in {time.perf_counter() - start:.1f} s; run folder: {context.run.path}")


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--episodes", type=int, default=20, metavar="N", help="deterministic episodes (default 20)")
    parser.add_argument("--stochastic", action="store_true", help="sample actions instead of the greedy ones")


@app.verb("evaluate", "Mean/std return, lengths and success rate over N episodes.", arguments=_evaluate_arguments)
def evaluate_verb(context: Context) -> None:
    """Evaluate ``--checkpoint``; on Connect Four against the heuristic at every difficulty."""
    predictor = _predictor(context)
    config: RLConfig = context.config
    deterministic = not context.args.stochastic
    env = predictor.make_env(config)
    result, metrics, rows = pipeline.evaluate(predictor.model, env, config, context.args.episodes, deterministic)
    context.run.write_metrics(metrics)
    checkpoint = predictor.run.checkpoint
    atomic_write_json(context.run.path / "evaluation.json", {"checkpoint": str(checkpoint), **result.as_dict()})
    print_table(rows, title=f"{config.algo} on {config.env} ({checkpoint.name})")


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--observations", metavar="FILE.npy", help="observations (N, *obs_shape) to act on")


@app.verb("predict", "Actions for observations in a .npy file, or one played episode.", arguments=_predict_arguments)
def predict_verb(context: Context) -> None:
    """Write ``predictions.npy`` (actions for ``--observations``) or ``episode.json`` (a played episode)."""
    predictor = _predictor(context)
    if context.args.observations:
        source = context.args.observations
        try:
            actions = predictor.predict(pipeline.load_observations(source))
        except DataError as error:
            raise DataError(f"{source}: {error.message}") from None
        written = pipeline.save_array(context.run.path / "predictions.npy", actions)
        context.print(f"{len(actions)} actions written to {written}")
        return
    episode = pipeline.play_episode(predictor.model, predictor.make_env(context.config))
    record = {"return": episode.total_return, "length": episode.length, "actions": episode.actions}
    atomic_write_json(context.run.path / "episode.json", record)
    context.run.write_metrics({"predict/return": episode.total_return, "predict/length": float(episode.length)})
    context.print(f"one episode: return {episode.total_return:.1f}, {episode.length} steps; actions in episode.json")


@app.verb(
    "export",
    "Export the policy to ONNX and check it takes the same actions.",
    arguments=lambda parser: parser.add_argument("--format", default="onnx", choices=("onnx",), help="onnx"),
)
def export_verb(context: Context) -> None:
    """Write ``policy.onnx`` and the parity metrics."""
    from pentad_rl.export import export_policy

    predictor = _predictor(context)
    target = context.run.path / "policy.onnx"
    env = predictor.make_env(context.config)
    metrics = export_policy(predictor.model, target, env, batch=64, seed=context.config.seed)
    context.run.write_metrics(metrics)
    context.print(
        f"exported {predictor.run.checkpoint.name} to {target}: identical actions on {int(metrics['export/batch'])} "
        f"observations, max abs diff {metrics['export/max_abs_diff']:.2g}"
    )


def _record_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--episodes", type=int, default=1, metavar="N", help="episodes to record")
    parser.add_argument("--format", default="gif", choices=("gif", "mp4"), help="gif (default) or mp4")
    parser.add_argument("--max-frames", type=int, default=500, metavar="N", help="frame limit")


@app.verb("record", "Record the agent playing as a GIF (or MP4).", arguments=_record_arguments)
def record_verb(context: Context) -> None:
    from pentad_rl.recording import record

    predictor, args = _predictor(context), context.args
    target = context.run.path / f"agent.{args.format}"
    written, returns = record(
        predictor.model,
        context.config,
        target,
        episodes=args.episodes,
        seed=context.config.seed,
        max_frames=args.max_frames,
        normalization=predictor.statistics,
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
    needs_checkpoint=True,
)
def play_verb(context: Context) -> None:
    from pentad_rl.envs.make import check_render_mode

    check_render_mode(context.config, context.args.render)
    predictor = _predictor(context)
    env = predictor.make_env(context.config, seed=context.config.seed, render_mode=context.args.render)
    for frame, episode_return in pipeline.play(predictor.model, env, context.args.episodes):
        if frame is not None:
            print(frame)
        if episode_return is not None:
            print(f"episode finished: return {episode_return}")
    env.close()


def _tune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=10, metavar="N", help="Optuna trials (default 10)")
    parser.add_argument("--evaluations", type=int, default=4, metavar="N", help="pruning points per trial")
    parser.add_argument("--tune-timeout", type=float, metavar="S", help="stop starting trials after S seconds")


@app.verb("tune", "Optuna search over the preset's model_options with median pruning.", arguments=_tune_arguments)
def tune_verb(context: Context) -> None:
    """Write ``tune.json`` (all trials), ``tune.md`` (table) and ``preset.yaml`` (best config)."""
    config, args, run = context.config, context.args, context.run
    study = pipeline.tune(config, args.trials, args.evaluations, workdir=run.path / "trials", timeout=args.tune_timeout)
    rows = pipeline.trials_table(study)
    pipeline.write_report(run.path / "tune", rows, rows)
    print_table(rows, title=f"tune {config.algo} on {config.env}")
    header = f"Best of {len(rows)} Optuna trials; {preset_hint(config.algo, config.env)}"
    preset = write_preset(pipeline.best_config(config, study), run.path / "preset.yaml", header=header)
    run.write_metrics({"tune/best_mean_return": float(study.best_value), "tune/trials": float(len(rows))})
    context.print(f"best mean return {study.best_value:.1f} (trial {study.best_trial.number}); preset: {preset}")


def _benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="S", help="seeds (default 0 1 2)")
    parser.add_argument("--episodes", type=int, default=20, metavar="N", help="evaluation episodes per seed")
    parser.add_argument("--baseline", default="preset", choices=pipeline.BASELINES, help=pipeline.BASELINE_HELP)


@app.verb(
    "benchmark",
    "Preset with pentad vs plain stable-baselines3 (same preset, or its bare defaults) on the same seeds.",
    arguments=_benchmark_arguments,
)
def benchmark_verb(context: Context) -> None:
    args, run = context.args, context.run
    rows, summary = pipeline.benchmark(
        context.config, args.seeds, args.episodes, baseline=args.baseline, out=run.path, log=context.print
    )
    run.write_metrics(summary)
    pipeline.write_report(run.path / "benchmark", {"rows": rows, "summary": summary}, rows)
    print_table(rows, title=f"{context.config.algo} on {context.config.env}")
    context.print("\n".join(f"{key}: {value:.4g}" for key, value in summary.items()))


@app.verb("serve", "Serve a run over HTTP: /v1/act, a page.", arguments=add_serve_arguments, writes_run=False)
def serve_verb(context: Context) -> None:
    from pentad_rl.serving import serve

    serve(context.args.run or context.checkpoint, serve_options(context.args), context.print)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``apps/rl``."""
    return app.main(argv)
