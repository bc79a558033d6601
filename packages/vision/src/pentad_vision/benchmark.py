"""Side-by-side throughput: pentad's trainer against a plain PyTorch loop on the same data.

Both train the same network with the same protocol (plain SGD, lr 0.01, momentum 0.9, batch 64,
no augmentation, constant learning rate: the protocol of the seed's hand-written loop), in the
same process, one after the other. Only the training loop is timed.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from pentad_vision.data.base import ImageData
from pentad_vision.models import build_model

PARITY_OPTIM = {
    "name": "sgd",
    "lr": 0.01,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 0.0,
    "schedule": "constant",
}
PARITY_BATCH = 64


def plain_loop(data: ImageData, model_name: str, epochs: int, seed: int) -> dict[str, float]:
    """A hand-written loop over pre-normalised tensors; returns train seconds, images/s, test accuracy."""
    torch.manual_seed(seed)
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    x = (data.train.images.float() / 255 - mean) / std
    y = data.train.labels
    model = build_model(
        model_name, num_classes=data.num_classes, in_channels=data.in_channels, image_size=data.image_size
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=PARITY_OPTIM["lr"], momentum=PARITY_OPTIM["momentum"])
    seen = 0
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y))
        for i in range(0, len(order), PARITY_BATCH):
            batch = order[i : i + PARITY_BATCH]
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            seen += len(batch)
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        test_x = (data.test.images.float() / 255 - mean) / std
        accuracy = float((model(test_x).argmax(1) == data.test.labels).float().mean())
    return {"train_s": seconds, "img_per_s": seen / seconds, "test/acc": accuracy}


class _LoopClock(pl.Callback):
    """First training epoch start to training end: the same span the plain loop times."""

    def on_train_epoch_start(self, trainer, module) -> None:
        if trainer.current_epoch == 0:
            self.start = time.perf_counter()

    def on_train_end(self, trainer, module) -> None:
        self.end = time.perf_counter()


def pentad_loop(data: ImageData, model_name: str, epochs: int, seed: int) -> dict[str, float]:
    """The same protocol through :class:`ImageClassifier` and core's ``build_trainer``."""
    from pentad_core.runs import RunDir
    from pentad_core.training import TrainerConfig, build_trainer
    from pentad_vision.evaluation import evaluate_split
    from pentad_vision.module import ImageClassifier, VisionDataModule

    torch.manual_seed(seed)
    module = ImageClassifier(
        model_name, data.num_classes, data.in_channels, data.image_size, data.mean, data.std, data.classes,
        optim=PARITY_OPTIM,
    )  # fmt: skip
    datamodule = VisionDataModule(data, batch_size=PARITY_BATCH, seed=seed)
    clock = _LoopClock()
    with tempfile.TemporaryDirectory() as folder:
        config = TrainerConfig(max_epochs=epochs, accelerator="cpu", devices="1", monitor="", progress_bar=False)
        trainer = build_trainer(config, RunDir(folder), callbacks=[clock], has_validation=False)
        trainer.fit(module, train_dataloaders=datamodule.train_dataloader())
    seconds = clock.end - clock.start
    accuracy = evaluate_split(module.eval_net, data.test).meter.compute()["acc"]
    return {"train_s": seconds, "img_per_s": len(data.train) * epochs / seconds, "test/acc": accuracy}


def parity_run(data: ImageData, model_name: str, epochs: int, seed: int, run: Any = None) -> dict[str, Any]:
    """Run both loops; returns table rows and ``bench/*`` metrics (throughput ratio included)."""
    plain = plain_loop(data, model_name, epochs, seed)
    ours = pentad_loop(data, model_name, epochs, seed)
    ratio = ours["img_per_s"] / plain["img_per_s"]
    rows = [
        {"run": f"plain PyTorch loop (SGD, {epochs} ep)", "epochs": epochs, **plain},
        {"run": f"pentad trainer, same protocol ({epochs} ep)", "epochs": epochs, **ours},
    ]
    metrics = {
        "bench/plain_test_acc": plain["test/acc"],
        "bench/plain_images_per_second": plain["img_per_s"],
        "bench/plain_train_seconds": plain["train_s"],
        "bench/pentad_test_acc": ours["test/acc"],
        "bench/pentad_images_per_second": ours["img_per_s"],
        "bench/pentad_train_seconds": ours["train_s"],
        "bench/throughput_ratio": ratio,
    }
    return {"rows": rows, "metrics": metrics}
