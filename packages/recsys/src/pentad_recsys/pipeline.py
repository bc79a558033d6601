"""The recsys workflow as plain functions: load and split data, train, evaluate, update, export,
plot, benchmark. The CLI, the tests and Python users call these; nothing here prints (results are
returned; benchmark rows go to an optional ``log`` callback).

Benchmarks on MovieLens 100K use the protocols of the reference numbers:

- Explicit: the official ``u1``..``u5`` splits (train on ``uN.base``, RMSE/MAE on ``uN.test``),
  the protocol of the Surprise anchor and of GC-MC / GLocal-K (``u1``).
- Implicit: leave-one-out (each user's latest rating held out, ties by line order; every rating
  is an interaction), full ranking over unseen items and the sampled protocol (99 negatives,
  ``numpy.default_rng(0)``), the protocol of the popularity anchor and of NCF.

The benchmark trains every model with the config ``train --model X`` resolves (the dataset recipe's
``models.X`` section, chosen on a validation part of the training data) through :func:`train`, so
each row is the number a user's ``train`` run reports; the protocol sets only the split and task.
The throughput table times the plain loop of :mod:`pentad_recsys.training` (the same loss code as
the Lightning module), so that it measures the model, not the trainer's bookkeeping.

Parquet export needs pyarrow (``pip install "pentad-recsys[parquet]"``); without it the ``.npy``
files and JSON id maps carry the same content and :func:`export` reports Parquet as skipped.
"""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pentad_core.devices import using_threads
from pentad_core.errors import ConfigError
from pentad_core.export import check_onnx_parity, export_onnx
from pentad_core.files import atomic_write_bytes, atomic_write_json
from pentad_core.runs import RunDir, blend_runs
from pentad_recsys.blend import Blend, fit_blend_weights
from pentad_recsys.config import RecsysConfig, resolve_monitor
from pentad_recsys.data import RecDataset, Split, load_dataset, make_split
from pentad_recsys.data.csvfile import column
from pentad_recsys.data.interactions import Interactions
from pentad_recsys.data.readers import Columns, read_interactions
from pentad_recsys.metrics import evaluate_ranking
from pentad_recsys.predictor import Recommender
from pentad_recsys.registry import MODELS
from pentad_recsys.training import TrainSettings, evaluate, evaluate_rating, fit


# --------------------------------------------------------------------------------------------- data
def load_data(config: RecsysConfig, root: str | Path | None = None) -> RecDataset:
    """The dataset named by ``config`` with its ``dataset_options``.

    Args:
        config: The run's config.
        root: The dataset's folder (the CLI's ``context.data_root``); ``None``: ``config.data_dir``,
            else ``$PENTAD_DATA/<dataset>``. Ignored by a generated dataset.
    """
    return load_dataset(config.dataset, root if root is not None else config.data_dir, **config.dataset_options)


def split_data(config: RecsysConfig, dataset: RecDataset) -> Split:
    """The train/val/test split ``config`` names."""
    return make_split(
        dataset, config.split, ratio=config.ratio, n_test=config.n_test, val_ratio=config.val_ratio, seed=config.seed
    )


def train_settings(config: RecsysConfig, epochs: int | None = None) -> TrainSettings:
    """The optimisation settings of ``config`` (``epochs`` overrides ``trainer.max_epochs``)."""
    return TrainSettings(
        epochs=config.trainer.max_epochs if epochs is None else epochs,
        lr=config.lr,
        batch_size=config.batch_size,
        weight_decay=config.weight_decay,
        negatives=config.negatives,
        loss=config.loss,
        lbfgs_iterations=config.lbfgs_iterations,
        lbfgs_reset=config.lbfgs_reset,
        lbfgs_max_evals=config.lbfgs_max_evals,
        seed=config.seed,
    )


def build_recommender(config: RecsysConfig, train: Interactions) -> Recommender:
    """An untrained recommender of ``config.model`` for ``train``, built with ``config.model_options``.

    Raises:
        ConfigError: Unknown model, a task it does not serve, or a misspelled option.
    """
    if not config.model:
        raise ConfigError("no model given: pass --model NAME (see `models`).")
    return Recommender.for_training(config.model, train, task=config.task, dataset=config.dataset,
                                    **config.model_options)  # fmt: skip


def in_model_ids(recommender: Recommender, data: Interactions) -> Interactions:
    """``data`` re-indexed by ``recommender``'s id maps (raises DataError for an unknown id)."""
    users, items = recommender.encode(data)
    return Interactions(users, items, data.ratings, data.timestamps, recommender.user_map, recommender.item_map,
                        data.rating_range, None, recommender.item_titles, data.source)  # fmt: skip


def read_pairs(path: str | Path) -> tuple[list, list]:
    """Raw ``(users, items)`` from a CSV with a header and the columns ``user,item``."""
    pairs = read_interactions(path, sep=",", header=True, columns=Columns(0, 1, None, None), rating_range=None)
    return [pairs.user_map.raw(u) for u in pairs.users], [pairs.item_map.raw(i) for i in pairs.items]


# --------------------------------------------------------------------------------------------- training
def train(
    config: RecsysConfig,
    run: RunDir,
    split: Split,
    resume_path: Path | None = None,
    member_configs: dict[str, RecsysConfig] | None = None,
) -> tuple[Recommender, dict[str, float]]:
    """Train ``config.model`` on ``split`` into ``run`` and test the best checkpoint.

    Trainable models go through pentad_core's trainer (the best epoch by the task's validation
    metric, see :func:`~pentad_recsys.config.resolve_monitor`; without a validation part the last
    epoch); a full-batch model with a fine-tuning stage (glocal-k's ``finetune_epochs``) runs those
    epochs after ``trainer.max_epochs``. Statistics-only baselines are fitted and evaluated directly.
    Both write ``checkpoints/best.ckpt`` and ``last.ckpt`` and the metrics to ``run``. A config with a
    ``blend`` goes to :func:`train_blend` (``member_configs``: the config of each blended model, which the
    CLI resolves as ``train --model NAME`` would; a resumed blend reads them from its own run instead).

    Returns:
        The recommender of the best checkpoint, and the metrics (``val/*``, ``test/*``, ``fit/*``).
    """
    if config.blend:
        return train_blend(config, run, split, member_configs, resume_path)
    from pentad_core.training import build_trainer
    from pentad_core.training import fit as core_fit
    from pentad_core.training import test as core_test
    from pentad_recsys.module import RecsysModule

    config = resolve_monitor(config)  # a no-op for the CLI, which resolved it before writing config.yaml
    recommender = build_recommender(config, split.train)
    settings = train_settings(config)
    ks = tuple(config.ks)
    if not recommender.trainable:
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
    finetune = int(getattr(recommender.model, "finetune_epochs", 0))
    trainer_config = dataclasses.replace(config.trainer, max_epochs=config.trainer.max_epochs + finetune)
    module = RecsysModule(recommender, split.train, split.val, split.test, settings, ks, config.sampled_negatives)
    trainer = build_trainer(trainer_config, run, has_validation=split.val is not None, time_budget=config.time_budget)
    metrics = core_fit(trainer, module, run, ckpt_path=resume_path)
    metrics.update(core_test(trainer, module, run, ckpt_path="best"))
    best = run.checkpoints / "best.ckpt"
    if best.is_file():
        recommender = Recommender.load(best)
    return recommender, metrics


#: The keys a blended model takes from the blend's config whatever its own section says: all train and
#: are weighed on the same split, so the validation ratings are unseen by every one of them.
BLEND_SHARED_KEYS = ("dataset", "data_dir", "dataset_options", "task", "split", "ratio", "n_test", "val_ratio", "seed")


def blend_member_config(
    config: RecsysConfig, name: str, member_configs: dict[str, RecsysConfig] | None = None
) -> RecsysConfig:
    """The config model ``name`` of ``config``'s blend trains with.

    ``config.model`` trains with ``config`` itself; another model with ``member_configs[name]`` (the CLI
    gives the config ``train --model NAME`` gets) or else ``config`` with its own model and no options.
    Either way the split keys (:data:`BLEND_SHARED_KEYS`) are ``config``'s and ``blend`` is empty.
    """
    if name == config.model:
        base = config
    elif member_configs and name in member_configs:
        base = member_configs[name]
    else:
        base = dataclasses.replace(config, model=name, model_options={})
    shared = {key: getattr(config, key) for key in BLEND_SHARED_KEYS}
    return dataclasses.replace(base, **shared, model=name, blend=[])


def check_blend(config: RecsysConfig, split: Split) -> list[str]:
    """The models of ``config``'s blend, ``config.model`` first, after checking the blend can run.

    Raises:
        ConfigError: Not the rating task, no validation ratings, a model named twice or unknown, or a
            model that does not predict ratings.
    """
    names = [config.model, *config.blend]
    if config.task != "rating":
        raise ConfigError("blend fits weights to ratings; it needs --task rating.", "Drop blend for ranking runs.")
    if len(set(names)) != len(names):
        raise ConfigError(f"blend names a model twice: {', '.join(names)} (model {config.model!r} is always in it).")
    for name in names:
        if "rating" not in MODELS.info(name).tasks:  # an unknown name raises ConfigError listing close matches
            raise ConfigError(f"blend: model {name!r} does not predict ratings.")
    if split.val is None or len(split.val) == 0:
        raise ConfigError("blend fits its weights on the validation ratings; set val_ratio above 0.")
    return names


def _blend_member(config: RecsysConfig, run: RunDir, split: Split, resuming: bool) -> Recommender:
    """Train (or, ``resuming``, load or continue) one model of a blend in its run folder ``run``."""
    if resuming and "test/rmse" in run.read_metrics() and run.best_checkpoint.is_file():
        return Recommender.load(run.best_checkpoint)  # finished before the interruption
    last = run.last_checkpoint if resuming and run.last_checkpoint.is_file() else None
    with using_threads(config.threads):  # each model's own section (glocal-k: 2)
        return train(config, run, split, last)[0]


def train_blend(
    config: RecsysConfig,
    run: RunDir,
    split: Split,
    member_configs: dict[str, RecsysConfig] | None = None,
    resume_path: Path | None = None,
) -> tuple[Recommender, dict[str, float]]:
    """Train ``config.model`` and every model of ``config.blend``, then blend them (stacking).

    Each model trains on ``split.train`` as its own run in ``run/blend/<name>/`` (config, metrics,
    checkpoints), with the config :func:`blend_member_config` gives it; all of those configs are written
    before the first model trains, and ``run/checkpoints/last.ckpt`` says a blend is in progress, so
    that ``--resume`` (``resume_path`` given) continues as configured: a model that finished is loaded,
    the one interrupted continues from its own ``last.ckpt``, the rest train. The weights (an intercept
    and one per model) are the least-squares fit of the models' ratings on ``split.val``
    (:func:`~pentad_recsys.blend.fit_blend_weights`); a model that selects its best epoch on the
    validation ratings has seen them once more, which three weights fitted on thousands of ratings
    barely exploit. The blend replaces ``run/checkpoints/best.ckpt`` and ``last.ckpt``.

    Returns:
        The blended recommender, and the metrics: the blend's ``val/*`` and ``test/*``, plus
        ``blend/intercept``, ``blend/<name>/weight`` and each model's own ``blend/<name>/val/rmse`` and
        ``blend/<name>/test/rmse`` (of the checkpoint blended: its best epoch).

    Raises:
        ConfigError: See :func:`check_blend`.
    """
    names = check_blend(config, split)
    start = time.perf_counter()
    resuming = resume_path is not None
    starting = None if resuming else [blend_member_config(config, name, member_configs) for name in names]
    runs, configs = blend_runs(run, names, RecsysConfig, starting)
    trained: list[Recommender] = []
    metrics: dict[str, float] = {}
    for member_config, member_run in zip(configs, runs, strict=True):
        trained.append(_blend_member(member_config, member_run, split, resuming))
    first = trained[0]
    for name, other in zip(names[1:], trained[1:], strict=True):
        if other.user_map.state() != first.user_map.state() or other.item_map.state() != first.item_map.state():
            raise ConfigError(f"blend: model {name!r} was trained on other users or items than {names[0]!r}.")
    for name, recommender in zip(names, trained, strict=True):  # each model as blended: its best checkpoint
        for prefix, part in (("val", split.val), ("test", split.test)):
            metrics[f"blend/{name}/{prefix}/rmse"] = evaluate_rating(recommender, part)["rmse"]
    users, items = first.encode(split.val)
    weights = fit_blend_weights(np.column_stack([r.predict_internal(users, items) for r in trained]), split.val.ratings)
    means = [0.0 if r.model.absolute_ratings else r.global_mean for r in trained]
    blend = Blend(first.model.num_users, first.model.num_items, [r.model for r in trained], means, weights,
                  first.rating_range, names, [r.model_kwargs for r in trained])  # fmt: skip
    recommender = Recommender(blend, first.model_name, first.model_kwargs, "rating", first.user_map, first.item_map,
                              0.0, first.rating_range, first.item_titles, first.seen_users, first.seen_items,
                              first.dataset, first.seen_ratings)  # fmt: skip
    metrics["blend/intercept"] = float(weights[0])
    metrics.update({f"blend/{name}/weight": float(w) for name, w in zip(names, weights[1:], strict=True)})
    for prefix, part in (("val", split.val), ("test", split.test)):
        metrics.update({f"{prefix}/{k}": v for k, v in evaluate_rating(recommender, part).items()})
    metrics["fit/seconds"] = time.perf_counter() - start
    for checkpoint in (run.best_checkpoint, run.last_checkpoint):
        recommender.save(checkpoint)
    run.write_metrics(metrics)
    return recommender, metrics


def evaluate_split(recommender: Recommender, split: Split, config: RecsysConfig) -> dict[str, float]:
    """``test/*`` metrics of a trained recommender on ``split`` (re-indexed by the model's id maps)."""
    train_part, test_part = in_model_ids(recommender, split.train), in_model_ids(recommender, split.test)
    metrics = evaluate(recommender, train_part, test_part, tuple(config.ks), config.sampled_negatives)
    return {f"test/{k}": v for k, v in metrics.items()}


def sample_recommendations(recommender: Recommender, split: Split, k: int = 5) -> dict[str, Any]:
    """For the first test user: predictions on ``k`` of the test items, and the top-``k``
    (``{"user", "items", "predictions", "top"}``; what ``demo`` shows)."""
    user = split.test.user_map.raw(int(split.test.users[0]))
    items = [split.test.item_map.raw(int(i)) for i in split.test.items[:k]]
    predictions = recommender.predict([user] * len(items), items)
    return {"user": user, "items": items, "predictions": predictions.tolist(), "top": recommender.recommend(user, k)}


def plot_run(run: RunDir, recommender: Recommender) -> list[Path]:
    """``plots/learning_curves.png`` (training loss, validation RMSE or NDCG per epoch, from the run's
    CSV log) and ``plots/item_embeddings.png`` (item vectors on their first two principal components,
    coloured by log training count); returns the files written."""
    from pentad_core.plotting import new_figure, plot_curves, read_logged_curves, save_figure

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


# --------------------------------------------------------------------------------------------- update
def _update_metrics(recommender: Recommender, known: Interactions, held: Interactions) -> dict[str, float]:
    if recommender.task == "rating":
        return evaluate_rating(recommender, held)
    return evaluate_ranking(recommender.score_all, known, held, ks=(10,), protocol="full")


def update(
    recommender: Recommender,
    path: Path,
    settings: TrainSettings,
    holdout: float = 0.2,
    options: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Grow the model for new users/items in ``path`` and train on the new interactions.

    The new file is read with columns ``user,item,rating[,time]`` and a header (``options`` may
    override ``sep``, ``header``, ``user_col``, ``item_col``, ``rating_col``, ``time_col``). A random
    ``holdout`` fraction of it is kept aside; the report gives its metrics before and after the
    update. Training replays an equal-sized random sample of the old interactions alongside the
    new ones so that the old users are not forgotten.

    Returns:
        ``before/<metric>``, ``after/<metric>``, ``update/new_users``, ``update/new_items``,
        ``update/interactions``.

    Raises:
        ConfigError: For models whose input size is the number of users (glocal-k).
        DataError: Malformed file (with its line number) or ratings out of range.
    """
    options = dict(options or {})
    for key in ("user_col", "item_col", "rating_col", "time_col"):
        if key in options:
            options[key] = column(options[key])
    model = recommender.model
    if model.full_batch or isinstance(model, Blend):
        raise ConfigError(f"model {recommender.model_name!r} cannot grow incrementally; retrain it with `train`.")
    rating_col = options.get("rating_col", 2 if recommender.task == "rating" else None)
    new = read_interactions(
        path,
        sep=options.get("sep", ","),
        header=bool(options.get("header", True)),
        columns=Columns(options.get("user_col", 0), options.get("item_col", 1), rating_col, options.get("time_col")),
        rating_range=recommender.rating_range if rating_col is not None else None,
    )
    raw_users = [new.user_map.raw(u) for u in new.users]
    raw_items = [new.item_map.raw(i) for i in new.items]
    old_users, old_items = len(recommender.user_map), len(recommender.item_map)
    recommender.user_map.extend(raw_users)
    added_items = recommender.item_map.extend(raw_items)
    num_users, num_items = len(recommender.user_map), len(recommender.item_map)
    model.grow(num_users, num_items)
    recommender.model_kwargs.update(num_users=num_users, num_items=num_items)
    if recommender.item_titles is not None:
        recommender.item_titles += [f"item {recommender.item_map.raw(i)}" for i in added_items]
    users = recommender.user_map.indices(raw_users, "user")
    items = recommender.item_map.indices(raw_items, "item")
    ratings = new.ratings if rating_col is not None else np.ones(len(users), np.float32)

    def table(u, i, r) -> Interactions:
        return Interactions(u, i, r, np.arange(len(u)), recommender.user_map, recommender.item_map,
                            recommender.rating_range, None, recommender.item_titles, str(path))  # fmt: skip

    rng = np.random.default_rng(settings.seed)
    held = np.zeros(len(users), bool)
    held[rng.permutation(len(users))[: int(holdout * len(users))]] = True
    old = table(recommender.seen_users, recommender.seen_items, recommender.seen_ratings)
    replay = rng.choice(len(old), size=min(len(old), int((~held).sum())), replace=False)
    train = table(
        np.concatenate([users[~held], old.users[replay]]),
        np.concatenate([items[~held], old.items[replay]]),
        np.concatenate([ratings[~held], old.ratings[replay]]),
    )
    known = table(np.concatenate([old.users, users[~held]]), np.concatenate([old.items, items[~held]]),
                  np.concatenate([old.ratings, ratings[~held]]))  # fmt: skip
    held_out = table(users[held], items[held], ratings[held])
    recommender.seen_users, recommender.seen_items, recommender.seen_ratings = known.users, known.items, known.ratings
    model.fit_statistics(known)  # graphs, counts and similarities include the new interactions
    report: dict[str, float] = {}
    if len(held_out):
        report.update({f"before/{k}": v for k, v in _update_metrics(recommender, known, held_out).items()})
    if recommender.trainable:
        fit(recommender, train, settings)
    if len(held_out):
        report.update({f"after/{k}": v for k, v in _update_metrics(recommender, known, held_out).items()})
    report.update({
        "update/new_users": float(num_users - old_users),
        "update/new_items": float(num_items - old_items),
        "update/interactions": float(len(users)),
    })  # fmt: skip
    return report


# --------------------------------------------------------------------------------------------- export
class ScoringModel(nn.Module):
    """``(users [B], items [B]) -> [B]`` predictions as served: the model plus the global mean and
    the clipping to the rating range (rating task)."""

    def __init__(self, recommender: Recommender) -> None:
        super().__init__()
        self.model = recommender.model.serving_module()
        self.offset = (
            0.0 if recommender.model.absolute_ratings or recommender.task != "rating" else recommender.global_mean
        )
        self.low, self.high = recommender.rating_range or (float("-inf"), float("inf"))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        score = torch.clamp(self.model(users, items) + self.offset, self.low, self.high)
        # keeps `users` an input of the ONNX graph for models that ignore it (popularity, a rating
        # item-kNN): the exporter drops unused inputs, and the graph's interface must not depend on the model
        return score + (users * 0).to(score.dtype)


def _save_npy(path: Path, array: np.ndarray) -> Path:
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def parquet_available() -> bool:
    """Whether pyarrow can be imported (the ``parquet`` extra)."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def _save_parquet(path: Path, raw_ids: list, table: np.ndarray) -> Path:
    """One row per id: column ``id`` (the raw user/item id) and ``embedding`` (fixed-size float32 list)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    values = pa.array(np.ascontiguousarray(table, dtype=np.float32).reshape(-1))
    ids = pa.array(raw_ids) if all(isinstance(i, int) for i in raw_ids) else pa.array([str(i) for i in raw_ids])
    frame = pa.table({"id": ids, "embedding": pa.FixedSizeListArray.from_arrays(values, table.shape[1])})
    buffer = io.BytesIO()
    pq.write_table(frame, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def parity_pairs(recommender: Recommender, users: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """``(users, items)`` probing an exported scorer: every item for up to ``users`` users spread over the table."""
    chosen = torch.linspace(0, len(recommender.user_map) - 1, min(users, len(recommender.user_map))).long().unique()
    num_items = len(recommender.item_map)
    return chosen.repeat_interleave(num_items), torch.arange(num_items).repeat(len(chosen))


def export_scoring_onnx(recommender: Recommender, path: Path, tolerance: float = 1e-3) -> tuple[Path, float]:
    """Write the served scoring network (inputs ``users``, ``items``; output ``score``) to ``path``
    atomically and check it against PyTorch on :func:`parity_pairs`.

    Returns:
        The path and the largest absolute difference of the parity check.

    Raises:
        ConfigError: If the model cannot be expressed in ONNX (the message says why).
        ParityError: If onnxruntime's scores differ from PyTorch's by more than ``tolerance``.
    """
    scoring = ScoringModel(recommender).eval()
    n = min(8, len(recommender.user_map), len(recommender.item_map))
    example = (torch.arange(n), torch.arange(n).flip(0))
    try:
        export_onnx(scoring, example, path, input_names=["users", "items"], output_names=["score"])
    except Exception as error:  # the exporter raises many types for unsupported operators
        raise ConfigError(
            f"model {recommender.model_name!r} cannot be exported to ONNX ({type(error).__name__})."
        ) from None
    report = check_onnx_parity(scoring, path, parity_pairs(recommender), tolerance=tolerance)
    return path, float(report.max_abs_diff)


def export(recommender: Recommender, folder: Path) -> dict:
    """Write ``model.onnx`` (inputs ``users``, ``items``; output ``score``), the embeddings and id maps.

    The embedding tables go to ``<name>.npy`` (row ``i`` = internal index ``i``) and, when pyarrow is
    installed, ``<name>.parquet`` (columns ``id``, ``embedding``: raw ids beside their vectors).

    Returns:
        Name -> written path, plus ``max_abs_diff`` of the ONNX parity check and ``parquet`` (bool).

    Raises:
        ConfigError: If the model cannot be expressed in ONNX (the message says why).
    """
    folder.mkdir(parents=True, exist_ok=True)
    written: dict = {}
    written["onnx"], written["max_abs_diff"] = export_scoring_onnx(recommender, folder / "model.onnx")
    written["parquet"] = parquet_available()
    with torch.no_grad():
        tables = (
            ("user_embeddings", recommender.model.user_embeddings(), recommender.user_map),
            ("item_embeddings", recommender.model.item_embeddings(), recommender.item_map),
        )
        for name, table, id_map in tables:
            if table is None:
                continue
            array = table.detach().float().numpy()
            written[name] = _save_npy(folder / f"{name}.npy", array)
            if written["parquet"] and len(array) == len(id_map):
                written[f"{name}_parquet"] = _save_parquet(folder / f"{name}.parquet", id_map.state(), array)
    atomic_write_json(folder / "user_ids.json", recommender.user_map.state())
    atomic_write_json(folder / "item_ids.json", recommender.item_map.state())
    written["id_maps"] = folder / "user_ids.json"
    return written


# --------------------------------------------------------------------------------------------- benchmark
#: Torch threads per model in the throughput table: the full-batch autoencoder's large matrix products
#: use both cores; the embedding models' small per-batch ops run faster on one thread.
THREADS = {"glocal-k": 2}


def _log(log: Callable[[dict], None] | None, row: dict) -> None:
    if log is not None:
        log(row)


def benchmark_run(
    config: RecsysConfig,
    folder: Path,
    data_root: str | Path | None,
    member_configs: dict[str, RecsysConfig] | None = None,
) -> dict[str, Any]:
    """Train ``config`` exactly as ``train`` does (same split, validation part, best epoch, test on
    the best checkpoint) into the run folder ``folder``; returns the test metrics and the seconds.

    The benchmark verb calls this with the config ``train --model X`` gets from the dataset's recipe
    (its ``models.X`` section), with only the protocol's split (and task) set, so that every row of
    the tables is what a user's ``train`` run reports; ``member_configs`` are those of the models a
    ``blend`` trains beside it (see :func:`train_blend`).
    """
    with using_threads(config.threads):
        split = split_data(config, load_data(config, data_root))
        run = RunDir(folder)
        run.write_config(config)  # the config it ran with, as `train` writes it
        start, cpu = time.perf_counter(), time.process_time()
        _, metrics = train(config, run, split, member_configs=member_configs)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    row = {k.removeprefix("test/"): v for k, v in metrics.items() if k.startswith("test/")}
    return {**row, "train_s": seconds, "cpu_s": cpu_seconds}


def rating_benchmark(
    configs: dict[str, RecsysConfig],
    splits: list[str],
    folder: Path,
    data_root: str | Path | None,
    log: Callable[[dict], None] | None = None,
    member_configs: dict[str, RecsysConfig] | None = None,
) -> list[dict[str, Any]]:
    """Each model (its ``train`` config) on each official split; one row per (model, split) plus a mean row.

    A model whose config blends others is named ``model+other`` in the rows (``member_configs``: the
    configs of the blended models, as :func:`train` takes them).
    """
    rows: list[dict[str, Any]] = []
    for name, config in configs.items():
        per_split = []
        label = "+".join([name, *config.blend])
        for split_name in splits:
            run = dataclasses.replace(config, split=split_name, task="rating")
            result = benchmark_run(run, folder / f"{name}-{split_name}", data_root, member_configs)
            row = {"model": label, "split": split_name, "rmse": result["rmse"], "mae": result["mae"],
                   "train_s": result["train_s"], "cpu_s": result["cpu_s"]}  # fmt: skip
            _log(log, row)
            rows.append(row)
            per_split.append(row)
        if len(per_split) > 1:
            mean = {k: sum(r[k] for r in per_split) / len(per_split) for k in ("rmse", "mae", "train_s", "cpu_s")}
            rows.append({"model": label, "split": f"mean {splits[0]}..{splits[-1]}", **mean})
            _log(log, rows[-1])
    return rows


def ranking_benchmark(
    configs: dict[str, RecsysConfig],
    folder: Path,
    data_root: str | Path | None,
    log: Callable[[dict], None] | None = None,
) -> list[dict[str, Any]]:
    """Leave-one-out ranking: full and sampled-99 HR@10 / NDCG@10 of each model (its ``train`` config)."""
    rows = []
    for name, config in configs.items():
        run = dataclasses.replace(config, split="loo", task="ranking")
        result = benchmark_run(run, folder / f"{name}-loo", data_root)
        row = {"model": name, "full_hr@10": result["hr@10"], "full_ndcg@10": result["ndcg@10"],
               "sampled_hr@10": result.get("sampled_hr@10", float("nan")),
               "sampled_ndcg@10": result.get("sampled_ndcg@10", float("nan")),
               "train_s": result["train_s"], "cpu_s": result["cpu_s"]}  # fmt: skip
        _log(log, row)
        rows.append(row)
    return rows


def throughput_benchmark(
    configs: dict[str, RecsysConfig],
    data_root: str | Path | None,
    epochs: int = 1,
    log: Callable[[dict], None] | None = None,
) -> list[dict[str, Any]]:
    """Training throughput (interactions/s) of each model on ml-100k u1.base with its ``train`` config's
    model options and batch size (the task its section names), ``epochs`` epochs of the plain loop.
    Sequence models count the next-item positions they predict."""
    dataset = load_dataset("ml-100k", data_root)
    split = make_split(dataset, "u1")
    rows = []
    for name, config in configs.items():
        settings = train_settings(config, epochs=epochs)
        with using_threads(THREADS.get(name, 1)):
            torch.manual_seed(0)
            rec = Recommender.for_training(name, split.train, task=config.task, dataset="ml-100k",
                                           **config.model_options)  # fmt: skip
            cpu = time.process_time()
            timing = fit(rec, split.train, settings)
            cpu_seconds = time.process_time() - cpu
        row = {"model": name, "task": config.task, "threads": THREADS.get(name, 1), "epochs": epochs,
               "batch_size": config.batch_size, "train_s": timing["seconds"], "cpu_s": cpu_seconds,
               "interactions/s": timing["interactions_per_second"]}  # fmt: skip
        _log(log, row)
        rows.append(row)
    return rows
