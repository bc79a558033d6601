"""``apps/recsys``: the recommender app on pentad_core's CLI scaffold.

Verbs: demo, train, evaluate, predict, recommend, update, export, serve, benchmark (+ data, models). Each
parses, calls :mod:`pentad_recsys.pipeline` or :class:`pentad_recsys.predictor.Predictor`, prints.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from pentad_core.cli import App, Context
from pentad_core.errors import ConfigError, DataError
from pentad_core.files import atomic_write_csv, atomic_write_json, atomic_write_text
from pentad_core.serving import add_serve_arguments, run_server, serve_options
from pentad_recsys import autoconfig, pipeline
from pentad_recsys import models as _models  # noqa: F401  (registers the models)
from pentad_recsys.config import RecsysConfig, resolve_monitor
from pentad_recsys.data import load_dataset
from pentad_recsys.predictor import Predictor
from pentad_recsys.registry import DATASETS, MODELS


class RecsysApp(App):
    """The scaffold's app, with the task's validation metric resolved before ``config.yaml`` is written."""

    def resolve_config(self, args: argparse.Namespace, verb: Any = None) -> RecsysConfig:
        return resolve_monitor(super().resolve_config(args, verb))


def _verify(name: str, root: Path) -> str:
    return load_dataset(name, root).interactions.summary()


app = RecsysApp(
    "recsys",
    "Recommender systems: rating prediction and top-K ranking on MovieLens and CSV data "
    "(MF, FM, NFM, DeepFM, AFM, NeuMF, LightGCN, MMoE, GLocal-K, SASRec, GRU4Rec, popularity, item-kNN).",
    RecsysConfig,
    models=MODELS,
    datasets=DATASETS,
    verify_dataset=_verify,
    real_dataset="ml-100k",
)
app.option("--task", key="task", choices=("rating", "ranking"), help="rating (RMSE) or ranking (HR/NDCG)")
app.option("--split", key="split", help="u1..u5, ua, ub, random, temporal or loo")
app.option("--lr", key="lr", type=float, help="learning rate")
app.option("--user-col", key="dataset_options.user_col", help="csv: user column (name or 0-based position)")
app.option("--item-col", key="dataset_options.item_col", help="csv: item column")
app.option("--rating-col", key="dataset_options.rating_col", help="csv: rating column, or none for implicit events")
app.option("--time-col", key="dataset_options.time_col", help="csv: timestamp column")
app.option("--sep", key="dataset_options.sep", help="csv: field separator (default ',')")


def _print_metrics(context: Context, metrics: dict[str, float], prefix: str = "test/") -> None:
    shown = {k: round(v, 4) for k, v in metrics.items() if k.startswith(prefix)}
    context.print(f"{prefix.rstrip('/')} metrics: {shown}")


def _train_and_report(context: Context) -> tuple[Any, Any]:
    config = context.config
    dataset = pipeline.load_data(config, context.data_root)
    context.print(dataset.interactions.summary())
    split = pipeline.split_data(config, dataset)
    context.print(
        f"split {split.name}: {len(split.train):,} train, {len(split.val or []):,} val, {len(split.test):,} test"
    )
    if config.dataset == "csv":  # the generic dataset configures itself from a fingerprint of the data
        config = autoconfig.apply(context, dataset.interactions, split.train, split.val)
    members = {} if context.resume_path else {n: context.app.config_for_model(context, n) for n in config.blend}
    recommender, metrics = pipeline.train(config, context.run, split, context.resume_path, members)
    _print_metrics(context, metrics)
    return recommender, split


@app.verb("train", "Train a model on a dataset split and test it.", trains=True)
def train_verb(context: Context) -> None:
    recommender, _ = _train_and_report(context)
    if not context.is_main_process:  # DDP: rank 0 writes the plots
        return
    for path in pipeline.plot_run(context.run, recommender):
        context.print(f"plot: {path}")
    context.print(f"run folder: {context.run.path}")


@app.verb("demo", "Train, evaluate, recommend and plot on generated data (offline, about a minute).", trains=True,
          dataset="synthetic")  # fmt: skip
def demo_verb(context: Context) -> None:
    start = time.perf_counter()
    recommender, split = _train_and_report(context)
    if not context.is_main_process:  # DDP: rank 0 writes the recommendations and plots
        return
    sample = pipeline.sample_recommendations(recommender, split)
    user = sample["user"]
    shown = ", ".join(f"{i}: {p:.2f}" for i, p in zip(sample["items"], sample["predictions"]))
    context.print(f"predictions for user {user}: {shown}")
    context.print(f"top-5 for user {user}: " + ", ".join(str(r["title"] or r["item"]) for r in sample["top"]))
    atomic_write_json(context.run.path / "recommendations.json", {"user": user, "top": sample["top"]})
    for path in pipeline.plot_run(context.run, recommender):
        context.print(f"plot: {path}")
    context.print(f"demo finished in {time.perf_counter() - start:.1f} s; run folder: {context.run.path}")


@app.verb("evaluate", "Evaluate a trained run on the test split of its dataset.", needs_checkpoint=True)
def evaluate_verb(context: Context) -> None:
    predictor = Predictor.from_run(context.checkpoint)
    config = context.config
    if config.model and config.model != predictor.recommender.model_name:
        context.print(f"note: the run holds {predictor.recommender.model_name}; --model {config.model} is ignored")
    split = pipeline.split_data(config, pipeline.load_data(config, context.data_root))
    metrics = pipeline.evaluate_split(predictor.recommender, split, config)
    context.run.write_metrics(metrics)
    _print_metrics(context, metrics)


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", action="append", default=[], help="raw user id (repeat with --item)")
    parser.add_argument("--item", action="append", default=[], help="raw item id")
    parser.add_argument("--input", metavar="CSV", help="file of user,item pairs (header user,item)")


@app.verb("predict", "Predict ratings (or scores) for user/item pairs.", needs_checkpoint=True,
          arguments=_predict_arguments)  # fmt: skip
def predict_verb(context: Context) -> None:
    args = context.args
    users, items = list(args.user), list(args.item)
    if args.input:
        more_users, more_items = pipeline.read_pairs(args.input)
        users, items = users + more_users, items + more_items
    if not users or len(users) != len(items):
        raise ConfigError("predict needs as many --user as --item options (or --input CSV with user,item rows).")
    predictions = Predictor.from_run(context.checkpoint).predict(users, items)
    rows = [{"user": u, "item": i, "prediction": float(p)} for u, i, p in zip(users, items, predictions)]
    atomic_write_csv(context.run.path / "predictions.csv", rows, columns=["user", "item", "prediction"])
    context.print("user,item,prediction")
    for row in rows:
        context.print(f"{row['user']},{row['item']},{row['prediction']:.4f}")


def _recommend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", help="raw user id to recommend for")
    parser.add_argument("--k", type=int, default=10, help="number of items (default 10)")
    parser.add_argument("--similar-to", metavar="ITEM", help="raw item id: list its nearest items instead")


@app.verb("recommend", "Top-K unseen items for a user, or items similar to an item.", needs_checkpoint=True,
          arguments=_recommend_arguments, writes_run=False)  # fmt: skip
def recommend_verb(context: Context) -> None:
    args = context.args
    if args.k < 1:
        raise ConfigError(f"--k must be at least 1, got {args.k}.")
    if args.similar_to is None and args.user is None:
        raise ConfigError("recommend needs --user ID or --similar-to ITEM.")
    predictor = Predictor.from_run(context.checkpoint)
    if args.similar_to is not None:
        rows = predictor.similar(args.similar_to, args.k)
        context.print(f"items similar to {args.similar_to}:")
    else:
        rows = predictor.recommend(args.user, args.k)
        context.print(f"top-{args.k} for user {args.user} (seen items excluded):")
    for rank, row in enumerate(rows, start=1):
        title = f"  {row['title']}" if row["title"] else ""
        context.print(f"{rank:3d}. item {row['item']}  score {row['score']:.4f}{title}")


def _update_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--interactions", required=True, metavar="CSV", help="new interactions (user,item,rating[,time])"
    )
    parser.add_argument("--holdout", type=float, default=0.2, help="fraction of the new data held out for the report")


@app.verb("update", "Train incrementally on new interactions, growing tables for new users/items.",
          needs_checkpoint=True, arguments=_update_arguments)  # fmt: skip
def update_verb(context: Context) -> None:
    config, args = context.config, context.args
    recommender = Predictor.from_run(context.checkpoint).recommender
    report = pipeline.update(recommender, Path(args.interactions), pipeline.train_settings(config), args.holdout,
                             config.dataset_options)  # fmt: skip
    path = recommender.save(context.run.checkpoints / "updated.ckpt")
    context.run.write_metrics(report)
    for stage in ("before", "after"):
        shown = ", ".join(f"{k}: {v:.4f}" for k, v in report.items() if k.startswith(f"{stage}/"))
        context.print(f"{stage + ':':7s} {{{shown}}}")
    context.print(f"new users {int(report['update/new_users'])}, new items {int(report['update/new_items'])}; "
                  f"checkpoint: {path}")  # fmt: skip


@app.verb("export", "Export the scoring model to ONNX, embedding tables to .npy and Parquet.", needs_checkpoint=True)
def export_verb(context: Context) -> None:
    recommender = Predictor.from_run(context.checkpoint).recommender
    written = pipeline.export(recommender, context.run.path)  # the verb's own folder (<run>/export/<time>/)
    context.run.write_metrics({"export/onnx_max_abs_diff": written.pop("max_abs_diff", float("nan"))})
    if not written.pop("parquet"):
        # "\\[" keeps rich from reading "[parquet]" as a markup tag.
        context.print('Parquet skipped: pyarrow is not installed (pip install "pentad-recsys\\[parquet]").')
    for name, path in written.items():
        context.print(f"{name}: {path}")


@app.verb("serve", "Serve a trained run over HTTP: recommend, similar, score, and a page at /.",
          arguments=add_serve_arguments, writes_run=False)  # fmt: skip
def serve_verb(context: Context) -> None:
    if not (context.args.run or context.checkpoint):
        raise ConfigError("serve needs --run RUN_DIR (or --checkpoint PATH).")
    from pentad_recsys.serving import build_service  # imports FastAPI (the serve extra)

    options = serve_options(context.args)
    run_server(build_service(context.args.run or context.checkpoint, options, context.print), options, context.print)


def _benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", help="comma-separated models (default: per protocol)")
    parser.add_argument("--splits", default="u1,u2,u3,u4,u5", help="official splits for the rating benchmark")
    parser.add_argument("--protocol", choices=("rating", "ranking", "throughput", "all"), default="all")


@app.verb("benchmark", "ml-100k benchmark: u1..u5 RMSE and leave-one-out ranking, each model as `train` runs it.",
          arguments=_benchmark_arguments, dataset="ml-100k")  # fmt: skip
def benchmark_verb(context: Context) -> None:
    from pentad_core.bench import format_table

    args, config = context.args, context.config
    if config.dataset != "ml-100k":
        raise ConfigError("the benchmark runs on ml-100k (the anchors' dataset); drop --dataset or use ml-100k.")
    root, folder = context.data_root, context.run.path
    chosen = [m for m in (args.models or "").split(",") if m]
    # every model runs with the config `train --model NAME` gets (the recipe's models.NAME section)
    configs = {name: context.app.config_for_model(context, name) for name in chosen or MODELS.names()}
    tables, metrics = [], {}
    if args.protocol in ("rating", "all"):
        rating = {n: c for n, c in configs.items() if c.task == "rating" and "rating" in MODELS.info(n).tasks}
        blended = {m: context.app.config_for_model(context, m) for c in rating.values() for m in c.blend}
        rows = pipeline.rating_benchmark(rating, args.splits.split(","), folder, root, context.print, blended)
        tables.append(format_table(rows))
        metrics.update({f"{r['split']}/{r['model']}/rmse": r["rmse"] for r in rows})
    if args.protocol in ("ranking", "all"):
        ranking = {n: c for n, c in configs.items() if c.task == "ranking" or (n == "popularity" and not chosen)}
        ranking.update({n: configs[n] for n in chosen if "ranking" in MODELS.info(n).tasks})
        rows = pipeline.ranking_benchmark(ranking, folder, root, log=context.print)
        tables.append(format_table(rows))
        metrics.update({f"loo/{r['model']}/{k}": v for r in rows for k, v in r.items() if "@" in k})
    if args.protocol in ("throughput", "all"):
        rows = pipeline.throughput_benchmark(configs, root, log=context.print)
        tables.append(format_table(rows))
        metrics.update({f"throughput/{r['model']}/interactions_per_s": r["interactions/s"] for r in rows})
    atomic_write_text(folder / "benchmark.md", "\n\n".join(tables) + "\n")
    context.run.write_metrics(metrics)
    for table in tables:
        context.print(table)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``apps/recsys``."""
    return app.main(argv)


__all__ = ["DataError", "RecsysConfig", "app", "main"]
