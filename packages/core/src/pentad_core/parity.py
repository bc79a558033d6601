"""Trainer parity: the pentad trainer against a hand-written PyTorch loop, in one process.

``python -m pentad_core.parity`` (or ``python -m pentad_core.bench``) trains the same small CNN on
the same generated data with the pentad trainer (Lightning, checkpoints, loggers, the apps' module
base) and with a hand-written loop, in alternating pairs, and prints the throughput ratio: how much
the trainer costs over the plainest loop that does the same training. Optionally a bare Lightning
``Trainer`` and the pentad trainer on Lightning's own module base join each round, to tell apart
what Lightning's loop costs and what pentad adds or saves. docs/benchmarks.md holds the results.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from collections.abc import Sequence

import torch
from torch import nn

from pentad_core.bench import median_interval, print_table, throughput


class ParityCNN(nn.Module):
    """A small CIFAR-sized CNN: enough compute per step that the trainer's fixed costs show as a share."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )  # fmt: skip
        self.head = nn.Linear(128, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, num_classes) logits."""
        return self.head(self.features(images).flatten(1))


def _parity_data(samples: int, seed: int) -> torch.utils.data.TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(samples, 3, 32, 32, generator=generator)
    labels = (images[:, 0].mean(dim=(1, 2)) > 0).long() + 2 * (images[:, 1].mean(dim=(1, 2)) > 0).long()
    return torch.utils.data.TensorDataset(images, labels)


def _hand_written_loop(dataset, epochs: int, batch_size: int, seed: int) -> tuple[float, float, int]:
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = ParityCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)
    steps = 0
    loop_start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for images, labels in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
            steps += 1
    end = time.perf_counter()
    return end - loop_start, end - start, steps


@functools.cache
def _parity_module_class(pentad_base: bool) -> type:
    """The :class:`ParityCNN` as a LightningModule (built on first use: Lightning loads lazily).

    With ``pentad_base`` it inherits :class:`pentad_core.training.PentadModule`, as the apps' modules
    do; otherwise Lightning's own ``LightningModule``.
    """
    import pytorch_lightning as pl

    from pentad_core.logs import TrainingLog
    from pentad_core.training import PentadModule

    base = PentadModule if pentad_base else pl.LightningModule

    class ParityModule(base):
        def __init__(self, log_loss: bool) -> None:
            super().__init__()
            self.model = ParityCNN()
            self.training_log = TrainingLog() if log_loss else None

        def training_step(self, batch, batch_index):
            images, labels = batch
            loss = nn.functional.cross_entropy(self.model(images), labels)
            if self.training_log is not None:  # as the apps log their loss
                self.training_log.log(self, "train/loss", loss, batch_size=len(labels), on_step=True, prog_bar=True)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

        # The clock: first epoch start to training end, as the hand loop is timed. Module hooks, not a
        # callback: Lightning calls every module hook anyway, while an extra callback would add its
        # dispatch to every training step, a cost the trainer itself does not have.
        def on_train_epoch_start(self) -> None:
            if self.current_epoch == 0:
                self.clock_start = time.perf_counter()

        def on_train_end(self) -> None:
            self.clock_end = time.perf_counter()

    return ParityModule


def _pentad_trainer(
    dataset,
    epochs: int,
    batch_size: int,
    seed: int,
    retain_memory: bool,
    log_every_n_steps: int,
    pentad_base: bool = True,
) -> tuple[float, float, int]:
    from pentad_core.runs import RunDir
    from pentad_core.training import TrainerConfig, build_trainer

    start = time.perf_counter()
    torch.manual_seed(seed)
    module = _parity_module_class(pentad_base)(log_loss=True)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)
    with tempfile.TemporaryDirectory() as folder:
        config = TrainerConfig(
            max_epochs=epochs,
            accelerator="cpu",
            devices="1",
            monitor="",
            progress_bar=False,
            retain_freed_memory=retain_memory,
            log_every_n_steps=log_every_n_steps,
        )
        trainer = build_trainer(config, RunDir(folder))
        trainer.fit(module, train_dataloaders=loader)
        end = time.perf_counter()
    return module.clock_end - module.clock_start, end - start, trainer.global_step


def _bare_lightning(dataset, epochs: int, batch_size: int, seed: int) -> tuple[float, float, int]:
    """Lightning's ``Trainer`` and ``LightningModule`` as they ship, minus what they would write: no
    loggers, checkpoints, progress bar or model summary, and a module that logs nothing."""
    import pytorch_lightning as pl

    start = time.perf_counter()
    torch.manual_seed(seed)
    module = _parity_module_class(False)(log_loss=False)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=loader)
    end = time.perf_counter()
    return module.clock_end - module.clock_start, end - start, trainer.global_step


def _quartiles(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    lower, _, upper = statistics.quantiles(values, n=4, method="inclusive")
    return lower, upper


def trainer_parity(
    samples: int = 4096,
    batch_size: int = 64,
    epochs: int = 2,
    repeats: int = 3,
    seed: int = 0,
    retain_memory: bool = True,
    log_every_n_steps: int | None = None,
    bare_lightning: bool = False,
    lightning_module_base: bool = False,
) -> dict:
    """Steps/s of the pentad trainer and of a hand-written loop, run in alternating pairs, and their ratio.

    The training loop is timed from the first epoch's start to the end of training in both
    (logging, checkpointing and epoch-end work included); ``*_end_to_end_s`` adds construction
    and set-up (for Lightning: trainer, loggers, strategy). Both loops are warmed up once. Each
    round runs the two back to back, alternating which goes first, and the ratio is taken within
    the round: on a shared machine the speed drifts over seconds, and a paired ratio cancels most
    of that drift where a ratio of two separate medians does not.

    The two loops share the process, hence its memory allocator: with ``retain_memory`` (what the
    pentad trainer sets up on the CPU, :func:`pentad_core.devices.retain_freed_memory`) it is set
    before either loop runs, so both reuse freed memory; without it neither does, and page faults
    then dominate the noise. ``log_every_n_steps`` overrides the trainer's default logging interval.

    With ``bare_lightning`` each round also times a bare Lightning ``Trainer`` (no loggers,
    checkpoints or progress bar; the module logs nothing), the three in an order that rotates from
    round to round: its ratio to the hand-written loop is the part of the overhead that belongs to
    Lightning's own loop, and ``pentad_vs_bare_lightning`` what pentad's defaults add to it.
    With ``lightning_module_base`` each round also times the pentad trainer on Lightning's own
    ``LightningModule`` instead of :class:`~pentad_core.training.PentadModule`, everything else
    equal: ``pentad_module_gain`` is what the module base saves.

    Returns:
        ``ratio`` (median of the per-round ratios, pentad / hand-written steps per second) with the
        95 % confidence interval of that median (``ratio_low``, ``ratio_high``, see
        :func:`median_interval`), the rounds' quartiles ``ratio_q1`` and ``ratio_q3`` and every
        ``round_ratios``; ``overhead_ms_per_step``
        (median extra milliseconds per pentad step); medians of ``pentad_steps_per_s``,
        ``hand_written_steps_per_s`` and of both end-to-end times; and the settings. With
        ``bare_lightning`` also ``bare_lightning_ratio`` (with ``bare_lightning_ratio_low`` and
        ``_high``), ``pentad_vs_bare_lightning``, ``bare_lightning_steps_per_s`` and
        ``bare_lightning_round_ratios``. With ``lightning_module_base`` also ``pentad_module_gain``
        (median of the per-round ratios, pentad trainer on ``PentadModule`` / on ``LightningModule``,
        with ``pentad_module_gain_low`` and ``_high``) and ``pentad_module_gain_round_ratios``.
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    if log_every_n_steps is None:
        from pentad_core.training import TrainerConfig

        log_every_n_steps = TrainerConfig.log_every_n_steps
    if retain_memory:
        from pentad_core.devices import retain_freed_memory

        retain_memory = retain_freed_memory()  # False where the platform's allocator cannot be set
    dataset = _parity_data(samples, seed)
    # warm-up: first-call allocations and kernels, lazy imports and first writes of the loggers
    _hand_written_loop(dataset, 1, batch_size, seed)
    _pentad_trainer(dataset, 1, batch_size, seed, retain_memory, log_every_n_steps)
    if bare_lightning:
        _bare_lightning(dataset, 1, batch_size, seed)
    if lightning_module_base:
        _pentad_trainer(dataset, 1, batch_size, seed, retain_memory, log_every_n_steps, pentad_base=False)
    runs: dict[str, list[tuple[float, float, int]]] = {"pentad": [], "hand": []}
    contenders = {
        "pentad": lambda: _pentad_trainer(dataset, epochs, batch_size, seed, retain_memory, log_every_n_steps),
        "hand": lambda: _hand_written_loop(dataset, epochs, batch_size, seed),
    }
    if bare_lightning:
        runs["bare"] = []
        contenders["bare"] = lambda: _bare_lightning(dataset, epochs, batch_size, seed)
    if lightning_module_base:
        runs["lightning_base"] = []
        contenders["lightning_base"] = lambda: _pentad_trainer(
            dataset, epochs, batch_size, seed, retain_memory, log_every_n_steps, pentad_base=False
        )
    order = list(contenders)
    for round_index in range(repeats):
        shift = round_index % len(order)  # with two: pentad first in even rounds, the hand loop in odd ones
        for name in order[shift:] + order[:shift]:
            runs[name].append(contenders[name]())

    def steps_per_s(run: tuple[float, float, int]) -> float:
        loop_seconds, _, steps = run
        return throughput(steps, loop_seconds)

    pentad, hand = runs["pentad"], runs["hand"]
    round_ratios = [steps_per_s(p) / steps_per_s(h) for p, h in zip(pentad, hand, strict=True)]
    overheads = [1000 * (p[0] / p[2] - h[0] / h[2]) for p, h in zip(pentad, hand, strict=True)]
    ratio_q1, ratio_q3 = _quartiles(round_ratios)
    ratio_low, ratio_high = median_interval(round_ratios)
    result = {
        "ratio": statistics.median(round_ratios),
        "ratio_low": ratio_low,
        "ratio_high": ratio_high,
        "ratio_q1": ratio_q1,
        "ratio_q3": ratio_q3,
        "overhead_ms_per_step": statistics.median(overheads),
        "pentad_steps_per_s": statistics.median(steps_per_s(run) for run in pentad),
        "hand_written_steps_per_s": statistics.median(steps_per_s(run) for run in hand),
        "pentad_end_to_end_s": statistics.median(total for _, total, _ in pentad),
        "hand_written_end_to_end_s": statistics.median(total for _, total, _ in hand),
        "steps_per_run": epochs * -(-samples // batch_size),
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "retain_freed_memory": retain_memory,
        "log_every_n_steps": log_every_n_steps,
        "round_ratios": tuple(round_ratios),
    }
    if bare_lightning:
        bare = runs["bare"]
        bare_ratios = [steps_per_s(b) / steps_per_s(h) for b, h in zip(bare, hand, strict=True)]
        bare_low, bare_high = median_interval(bare_ratios)
        result |= {
            "bare_lightning_ratio": statistics.median(bare_ratios),
            "bare_lightning_ratio_low": bare_low,
            "bare_lightning_ratio_high": bare_high,
            "pentad_vs_bare_lightning": statistics.median(
                steps_per_s(p) / steps_per_s(b) for p, b in zip(pentad, bare, strict=True)
            ),
            "bare_lightning_steps_per_s": statistics.median(steps_per_s(run) for run in bare),
            "bare_lightning_round_ratios": tuple(bare_ratios),
        }
    if lightning_module_base:
        gains = [steps_per_s(p) / steps_per_s(b) for p, b in zip(pentad, runs["lightning_base"], strict=True)]
        gain_low, gain_high = median_interval(gains)
        result |= {
            "pentad_module_gain": statistics.median(gains),
            "pentad_module_gain_low": gain_low,
            "pentad_module_gain_high": gain_high,
            "pentad_module_gain_round_ratios": tuple(gains),
        }
    return result


def main(argv: Sequence[str] | None = None, prog: str = "python -m pentad_core.parity") -> int:
    """Entry point of ``python -m pentad_core.parity`` and ``python -m pentad_core.bench``."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=4096, help="generated images per epoch")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9, help="rounds of one run each; reports the median ratio")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--log-every-n-steps", type=int, default=None, help="the pentad trainer's logging interval (its default)"
    )
    parser.add_argument(
        "--bare-lightning",
        action="store_true",
        help="also time a bare Lightning Trainer in each round (the share of the overhead that is Lightning's own)",
    )
    parser.add_argument(
        "--lightning-module-base",
        action="store_true",
        help="also time the pentad trainer on Lightning's own LightningModule in each round (what PentadModule saves)",
    )
    parser.add_argument(
        "--system-allocator",
        action="store_true",
        help="leave glibc malloc as it is (both loops); by default both reuse freed memory as the pentad trainer does",
    )
    args = parser.parse_args(argv)
    from pentad_core.logs import quiet_libraries

    quiet_libraries()
    result = trainer_parity(
        args.samples,
        args.batch_size,
        args.epochs,
        args.repeats,
        args.seed,
        retain_memory=not args.system_allocator,
        log_every_n_steps=args.log_every_n_steps,
        bare_lightning=args.bare_lightning,
        lightning_module_base=args.lightning_module_base,
    )
    rows = [{"quantity": key, "value": value} for key, value in result.items() if not key.endswith("round_ratios")]
    print_table(rows, title="pentad trainer vs hand-written loop (medians over alternating rounds)")
    print("ratio in each round: " + " ".join(f"{ratio:.3f}" for ratio in result["round_ratios"]))
    print(
        f"throughput ratio (pentad / hand-written): {result['ratio']:.3f} "
        f"(95 % interval of the median {result['ratio_low']:.3f}-{result['ratio_high']:.3f}; "
        f"quartiles {result['ratio_q1']:.3f}-{result['ratio_q3']:.3f} over {result['repeats']} rounds)"
    )
    if args.bare_lightning:
        print(
            f"bare Lightning / hand-written: {result['bare_lightning_ratio']:.3f} (95 % interval of the median "
            f"{result['bare_lightning_ratio_low']:.3f}-{result['bare_lightning_ratio_high']:.3f}); "
            f"pentad / bare Lightning: {result['pentad_vs_bare_lightning']:.3f}"
        )
    if args.lightning_module_base:
        print(
            f"pentad trainer on PentadModule / on LightningModule: {result['pentad_module_gain']:.3f} (95 % "
            f"interval of the median {result['pentad_module_gain_low']:.3f}-{result['pentad_module_gain_high']:.3f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
