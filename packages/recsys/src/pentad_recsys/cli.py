"""``apps/recsys``: the recommender app on pentad_core's CLI scaffold.

Verbs: demo, train, evaluate, predict, recommend, update, export, benchmark (+ data, models).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import pentad_recsys.models  # noqa: F401  (registers the models)
from pentad_core.cli import App, Context, RunConfig
from pentad_core.data import RemoteFile
from pentad_core.errors import ConfigError, DataError
from pentad_core.files import atomic_write_json, atomic_write_text
from pentad_recsys.data import ARCHIVES, RecDataset, Split, load_dataset, make_split
from pentad_recsys.data.interactions import Interactions
from pentad_recsys.data.readers import Columns, read_interactions
from pentad_recsys.recommender import Recommender
from pentad_recsys.registry import DATASETS, MODELS
from pentad_recsys.training import TrainSettings, fit


@dataclass
class RecsysConfig(RunConfig):
    """Settings of the recsys app (recipes in shared/configs/recsys/)."""

    #: "rating" (explicit: RMSE/MAE) or "ranking" (implicit top-K with negative sampling).
    task: str = "rating"
    #: Split: u1..u5, ua, ub (official ml-100k files), random, temporal or loo.
    split: str = "random"
    #: Test fraction of the random split.
    ratio: float = 0.2
    #: Events per user held out by the temporal split.
    n_test: int = 1
    #: Validation fraction carved from train (random/official) or each user's last train event (temporal/loo); 0: none.
    val_ratio: float = 0.1
    #: Adam learning rate.
    lr: float = 0.005
    #: L2 weight on the embeddings used in each batch.
    weight_decay: float = 0.0
    #: Sampled negatives per positive (ranking and multi-task training).
    negatives: int = 1
    #: Ranking loss: "bpr" or "bce"; sequence models (sasrec, gru4rec) also take "ce" (softmax over all items).
    loss: str = "bpr"
    #: L-BFGS iterations per epoch of full-batch models (glocal-k).
    lbfgs_iterations: int = 5
    #: Model hyper-parameters passed to the constructor, e.g. {dim: 32}.
    model_args: dict = field(default_factory=dict)
    #: Dataset loader options (csv: user_col, item_col, rating_col, time_col, sep, header, rating_min, rating_max;
    #: synthetic: num_users, num_items, interactions_per_user, seed).
    data_args: dict = field(default_factory=dict)
    #: Cut-offs of the ranking metrics.
    ks: list[int] = field(default_factory=lambda: [10])
    #: Negatives of the sampled ranking protocol (0 disables it).
    sampled_negatives: int = 99


def _settings(config: RecsysConfig) -> TrainSettings:
    return TrainSettings(
        epochs=config.trainer.max_epochs,
        lr=config.lr,
        batch_size=config.batch_size,
        weight_decay=config.weight_decay,
        negatives=config.negatives,
        loss=config.loss,
        lbfgs_iterations=config.lbfgs_iterations,
        seed=config.seed,
    )


def _remote_files() -> dict[str, list[RemoteFile]]:
    return {
        name: [RemoteFile(a.url, a.filename, sha256=a.sha256, md5=a.md5, extract=True)] for name, a in ARCHIVES.items()
    }


def _flatten_archive(root: Path, name: str) -> None:
    """The archives unpack into ``<root>/<name>/``; move the files up so ``root`` holds them."""
    inner = root / name
    if inner.is_dir():
        for path in inner.iterdir():
            target = root / path.name
            if not target.exists():
                path.rename(target)


def _verify(name: str, root: Path) -> str:
    _flatten_archive(root, name)
    data = load_dataset(name, root)
    return data.interactions.summary()


app = App(
    "recsys",
    "Recommender systems: rating prediction and top-K ranking on MovieLens and CSV data "
    "(MF, FM, NFM, DeepFM, AFM, NeuMF, LightGCN, MMoE, GLocal-K, SASRec, GRU4Rec, popularity, item-kNN).",
    RecsysConfig,
    models=MODELS,
    datasets=DATASETS,
    remote_files=_remote_files(),
    verify_dataset=_verify,
    real_dataset="ml-100k",
)
app.option("--task", key="task", choices=("rating", "ranking"), help="rating (RMSE) or ranking (HR/NDCG)")
app.option("--split", key="split", help="u1..u5, ua, ub, random, temporal or loo")
app.option("--lr", key="lr", type=float, help="learning rate")
app.option("--user-col", key="data_args.user_col", help="csv: user column (name or 0-based position)")
app.option("--item-col", key="data_args.item_col", help="csv: item column")
app.option("--rating-col", key="data_args.rating_col", help="csv: rating column, or none for implicit events")
app.option("--time-col", key="data_args.time_col", help="csv: timestamp column")
app.option("--sep", key="data_args.sep", help="csv: field separator (default ',')")


# --------------------------------------------------------------------------------------------- helpers
def _column(value: Any) -> Any:
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def load_configured(config: RecsysConfig, context: Context | None = None) -> RecDataset:
    """The dataset named by the config (``--data-dir`` / $PENTAD_DATA / cache)."""
    options = dict(config.data_args)
    for key in ("user_col", "item_col", "rating_col", "time_col"):
        if key in options:
            options[key] = None if options[key] in (None, "", "none") else _column(options[key])
    if config.dataset == "synthetic":
        return load_dataset("synthetic", None, **options)
    root = context.data_root if context is not None else None
    if config.dataset != "csv" and root is not None:
        _flatten_archive(Path(root), config.dataset)
    return load_dataset(config.dataset, root if config.data_dir or context else config.data_dir, **options)


def split_configured(config: RecsysConfig, dataset: RecDataset) -> Split:
    """The train/val/test split of the config."""
    return make_split(
        dataset, config.split, ratio=config.ratio, n_test=config.n_test, val_ratio=config.val_ratio, seed=config.seed
    )


def _monitor(config: RecsysConfig, has_val: bool) -> None:
    trainer = config.trainer
    if not has_val:
        trainer.monitor = ""
    elif trainer.monitor == "val/loss":  # the core default: pick the task's metric instead
        trainer.monitor = "val/rmse" if config.task == "rating" else f"val/ndcg@{config.ks[0]}"
        trainer.monitor_mode = "min" if config.task == "rating" else "max"


def train_recommender(context: Context, config: RecsysConfig, split: Split) -> tuple[Recommender, dict[str, float]]:
    """Train with core's trainer (or fit statistics for non-parametric models) and test."""
    from pentad_core.training import build_trainer
    from pentad_core.training import fit as core_fit
    from pentad_core.training import test as core_test
    from pentad_recsys.lightning import RecsysModule, evaluate

    run = context.run
    recommender = Recommender.for_training(
        config.model, split.train, task=config.task, dataset=config.dataset, **config.model_args
    )
    settings = _settings(config)
    ks = tuple(config.ks)
    if not recommender.model.trainable:
        start = time.perf_counter()
        fit(recommender, split.train, settings)
        metrics = {"fit/seconds": time.perf_counter() - start}
        for prefix, part in (("val", split.val), ("test", split.test)):
            if part is not None:
                values = evaluate(recommender, split.train, part, ks, config.sampled_negatives)
                metrics.update({f"{prefix}/{k}": v for k, v in values.items()})
        for name in ("best.ckpt", "last.ckpt"):
            recommender.save(run.checkpoints / name)
        run.write_metrics(metrics)
        return recommender, metrics
    _monitor(config, split.val is not None)
    epochs = config.trainer.max_epochs + int(getattr(recommender.model, "finetune_epochs", 0))
    config.trainer.max_epochs = epochs
    module = RecsysModule(recommender, split.train, split.val, split.test, settings, ks, config.sampled_negatives)
    trainer = build_trainer(config.trainer, run, limit_val_batches=1 if split.val is not None else 0)
    metrics = core_fit(trainer, module, run, ckpt_path=context.resume_path)
    metrics.update(core_test(trainer, module, run, ckpt_path="best"))
    best = run.checkpoints / "best.ckpt"
    if best.is_file():
        recommender = Recommender.load(best)
    return recommender, metrics


def _print_metrics(context: Context, metrics: dict[str, float], prefix: str = "test/") -> None:
    shown = {k: round(v, 4) for k, v in metrics.items() if k.startswith(prefix)}
    context.print(f"{prefix.rstrip('/')} metrics: {shown}")


def _plots(context: Context, recommender: Recommender) -> list[Path]:
    from pentad_core.plotting import new_figure, plot_curves, read_logged_curves, save_figure

    run = context.run
    written = []
    csv = run.logs / "metrics.csv"
    if csv.is_file():
        curves = read_logged_curves(csv)
        curves = {k: v for k, v in curves.items() if k.startswith(("train/loss", "val/rmse", "val/ndcg")) and v}
        if curves:
            written.append(plot_curves(curves, run.plot_path("learning_curves"), ylabel="value"))
    vectors = recommender.model.item_embeddings()
    if vectors is not None and vectors.shape[0] > 2 and vectors.shape[1] >= 2:
        with torch.no_grad():
            centred = vectors.float() - vectors.float().mean(dim=0)
            _, _, basis = torch.linalg.svd(centred, full_matrices=False)
            points = (centred @ basis[:2].T).numpy()
        figure, axis = new_figure()
        counts = np.bincount(recommender.seen_items, minlength=len(points))[: len(points)]
        scatter = axis.scatter(points[:, 0], points[:, 1], c=np.log1p(counts), s=6, cmap="viridis")
        figure.colorbar(scatter, ax=axis, label="log(1 + training interactions)")
        axis.set_title(f"{recommender.model_name}: item embeddings, first two principal components")
        written.append(save_figure(figure, run.plot_path("item_embeddings")))
    return written


# --------------------------------------------------------------------------------------------- verbs
@app.verb("train", "Train a model on a dataset split and test it.", trains=True)
def train_verb(context: Context) -> None:
    config = context.config
    if not config.model:
        raise ConfigError("train needs --model NAME (see `models`).")
    dataset = load_configured(config, context)
    context.print(dataset.interactions.summary())
    split = split_configured(config, dataset)
    context.print(
        f"split {split.name}: {len(split.train):,} train, {len(split.val or []):,} val, {len(split.test):,} test"
    )
    recommender, metrics = train_recommender(context, config, split)
    _print_metrics(context, metrics)
    for path in _plots(context, recommender):
        context.print(f"plot: {path}")
    context.print(f"run folder: {context.run.path}")


@app.verb("demo", "Train, evaluate, recommend and plot on generated data (offline, about a minute).", trains=True,
          dataset="synthetic")  # fmt: skip
def demo_verb(context: Context) -> None:
    config = context.config
    config.model = config.model or "mf"
    start = time.perf_counter()
    dataset = load_configured(config, context)
    context.print(dataset.interactions.summary())
    split = split_configured(config, dataset)
    recommender, metrics = train_recommender(context, config, split)
    _print_metrics(context, metrics)
    user = split.test.user_map.raw(int(split.test.users[0]))
    items = [split.test.item_map.raw(int(i)) for i in split.test.items[:5]]
    predictions = recommender.predict([user] * len(items), items)
    context.print(f"predictions for user {user}: " + ", ".join(f"{i}: {p:.2f}" for i, p in zip(items, predictions)))
    top = recommender.recommend(user, k=5)
    context.print(f"top-5 for user {user}: " + ", ".join(str(r["title"] or r["item"]) for r in top))
    atomic_write_json(context.run.path / "recommendations.json", {"user": user, "top": top})
    for path in _plots(context, recommender):
        context.print(f"plot: {path}")
    context.print(f"demo finished in {time.perf_counter() - start:.1f} s; run folder: {context.run.path}")


def _checkpoint_data(context: Context) -> tuple[Recommender, Split]:
    config = context.config
    recommender = Recommender.load(context.checkpoint)
    if config.model and config.model != recommender.model_name:
        context.print(f"note: the checkpoint holds {recommender.model_name}; --model {config.model} is ignored")
    config.model = recommender.model_name
    config.task = recommender.task
    dataset = load_configured(config, context)
    split = split_configured(config, dataset)
    return recommender, split


@app.verb("evaluate", "Evaluate a checkpoint on the test split of its dataset.", needs_checkpoint=True)
def evaluate_verb(context: Context) -> None:
    from pentad_recsys.lightning import evaluate

    recommender, split = _checkpoint_data(context)
    train = _as_model_ids(recommender, split.train)
    metrics = evaluate(recommender, train, _as_model_ids(recommender, split.test), tuple(context.config.ks),
                       context.config.sampled_negatives)  # fmt: skip
    metrics = {f"test/{k}": v for k, v in metrics.items()}
    context.run.write_metrics(metrics)
    _print_metrics(context, metrics)


def _as_model_ids(recommender: Recommender, data: Interactions) -> Interactions:
    users, items = recommender.encode(data)
    return Interactions(users, items, data.ratings, data.timestamps, recommender.user_map, recommender.item_map,
                        data.rating_range, None, recommender.item_titles, data.source)  # fmt: skip


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", action="append", default=[], help="raw user id (repeat with --item)")
    parser.add_argument("--item", action="append", default=[], help="raw item id")
    parser.add_argument("--input", metavar="CSV", help="file of user,item pairs (header user,item)")


@app.verb("predict", "Predict ratings (or scores) for user/item pairs.", needs_checkpoint=True,
          arguments=_predict_arguments)  # fmt: skip
def predict_verb(context: Context) -> None:
    args = context.args
    recommender = Recommender.load(context.checkpoint)
    users, items = list(args.user), list(args.item)
    if args.input:
        pairs = read_interactions(
            args.input, sep=",", header=True, columns=Columns(0, 1, None, None), rating_range=None
        )
        users += [pairs.user_map.raw(u) for u in pairs.users]
        items += [pairs.item_map.raw(i) for i in pairs.items]
    if not users or len(users) != len(items):
        raise ConfigError("predict needs as many --user as --item options (or --input CSV with user,item rows).")
    predictions = recommender.predict(users, items)
    lines = ["user,item,prediction"] + [f"{u},{i},{p:.4f}" for u, i, p in zip(users, items, predictions)]
    atomic_write_text(context.run.path / "predictions.csv", "\n".join(lines) + "\n")
    for line in lines:
        context.print(line)


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
    recommender = Recommender.load(context.checkpoint)
    if args.similar_to is not None:
        rows = recommender.similar_items(args.similar_to, args.k)
        context.print(f"items similar to {args.similar_to}:")
    elif args.user is not None:
        rows = recommender.recommend(args.user, args.k)
        context.print(f"top-{args.k} for user {args.user} (seen items excluded):")
    else:
        raise ConfigError("recommend needs --user ID or --similar-to ITEM.")
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
    from pentad_recsys.update import update_recommender

    config = context.config
    recommender = Recommender.load(context.checkpoint)
    options = {k: _column(v) for k, v in config.data_args.items()}
    report = update_recommender(recommender, Path(context.args.interactions), _settings(config), context.args.holdout,
                                options)  # fmt: skip
    path = recommender.save(context.run.checkpoints / "updated.ckpt")
    context.run.write_metrics(report)
    context.print(f"before: {{{', '.join(f'{k}: {v:.4f}' for k, v in report.items() if k.startswith('before/'))}}}")
    context.print(f"after:  {{{', '.join(f'{k}: {v:.4f}' for k, v in report.items() if k.startswith('after/'))}}}")
    context.print(f"new users {int(report['update/new_users'])}, new items {int(report['update/new_items'])}; "
                  f"checkpoint: {path}")  # fmt: skip


@app.verb("export", "Export the scoring model to ONNX, embedding tables to .npy and Parquet.", needs_checkpoint=True)
def export_verb(context: Context) -> None:
    from pentad_recsys.export import export_recommender

    recommender = Recommender.load(context.checkpoint)
    written = export_recommender(recommender, context.run.path / "export")
    context.run.write_metrics({"export/onnx_max_abs_diff": written.pop("max_abs_diff", float("nan"))})
    if not written.pop("parquet"):
        # "\\[" keeps rich from reading "[parquet]" as a markup tag.
        context.print('Parquet skipped: pyarrow is not installed (pip install "pentad-recsys\\[parquet]").')
    for name, path in written.items():
        context.print(f"{name}: {path}")


def _benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", help="comma-separated models (default: per protocol)")
    parser.add_argument("--splits", default="u1,u2,u3,u4,u5", help="official splits for the rating benchmark")
    parser.add_argument("--protocol", choices=("rating", "ranking", "throughput", "all"), default="all")


@app.verb("benchmark", "ml-100k benchmark: u1..u5 RMSE and leave-one-out ranking.", arguments=_benchmark_arguments,
          dataset="ml-100k")  # fmt: skip
def benchmark_verb(context: Context) -> None:
    from pentad_core.bench import format_table
    from pentad_recsys.benchmark import ranking_benchmark, rating_benchmark, throughput_benchmark

    args, config = context.args, context.config
    if config.dataset != "ml-100k":
        raise ConfigError("the benchmark runs on ml-100k (the anchors' dataset); drop --dataset or use ml-100k.")
    root = context.data_root
    chosen = [m for m in (args.models or "").split(",") if m]
    tables, metrics = [], {}
    if args.protocol in ("rating", "all"):
        rows = rating_benchmark(root, chosen or ["glocal-k", "mf", "itemknn"], args.splits.split(","), config.seed,
                                log=context.print)  # fmt: skip
        tables.append(format_table(rows))
        metrics.update({f"{r['split']}/{r['model']}/rmse": r["rmse"] for r in rows})
    if args.protocol in ("ranking", "all"):
        defaults = ["popularity", "mf", "lightgcn", "neumf", "sasrec", "gru4rec"]
        rows = ranking_benchmark(root, chosen or defaults, config.seed, log=context.print)
        tables.append(format_table(rows))
        metrics.update({f"loo/{r['model']}/{k}": v for r in rows for k, v in r.items() if "@" in k})
    if args.protocol in ("throughput", "all"):
        rows = throughput_benchmark(root, chosen or MODELS.names(), log=context.print)
        tables.append(format_table(rows))
        metrics.update({f"throughput/{r['model']}/interactions_per_s": r["interactions/s"] for r in rows})
    atomic_write_text(context.run.path / "benchmark.md", "\n\n".join(tables) + "\n")
    context.run.write_metrics(metrics)
    for table in tables:
        context.print(table)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``apps/recsys``."""
    return app.main(argv)


__all__ = ["DataError", "RecsysConfig", "app", "main"]
