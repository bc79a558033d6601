import random

import numpy as np
import pytest
import torch

from pentad_core.devices import (
    CudaDevice,
    Hardware,
    describe_hardware,
    flush_denormals,
    is_channels_last,
    maybe_channels_last,
    memory_summary,
    seed_everything,
    select_accelerator,
    select_precision,
    using_threads,
)
from pentad_core.errors import ConfigError

CPU_ONLY = Hardware(cpu_count=2, torch_threads=2, platform="test")
AMPERE = Hardware(2, 2, "test", (CudaDevice(0, "A100", 40 * 2**30, (8, 0)),))
VOLTA = Hardware(2, 2, "test", (CudaDevice(0, "V100", 16 * 2**30, (7, 0)),))
MIXED = Hardware(2, 2, "test", (CudaDevice(0, "A100", 1, (8, 0)), CudaDevice(1, "T4", 1, (7, 5))))


@pytest.mark.parametrize(
    ("hardware", "accelerator", "expected"),
    [
        (CPU_ONLY, "cpu", "32-true"),
        (AMPERE, "cuda", "bf16-mixed"),
        (VOLTA, "cuda", "16-mixed"),
        (MIXED, "cuda", "16-mixed"),  # every device must support bf16
        (AMPERE, "cpu", "32-true"),  # CUDA present but not used
    ],
)
def test_auto_precision(hardware, accelerator, expected):
    assert select_precision("auto", accelerator, hardware) == expected


def test_explicit_precision_is_checked():
    assert select_precision("bf16-mixed", "cuda", AMPERE) == "bf16-mixed"
    with pytest.raises(ConfigError, match="compute capability 8.0"):
        select_precision("bf16-mixed", "cuda", VOLTA)
    with pytest.raises(ConfigError, match="not supported on the CPU"):
        select_precision("16-mixed", "cpu", CPU_ONLY)
    with pytest.raises(ConfigError, match="--precision 'half'"):
        select_precision("half", "cpu", CPU_ONLY)


def test_accelerator_selection():
    assert select_accelerator("auto", CPU_ONLY) == "cpu"
    assert select_accelerator("auto", AMPERE) == "cuda"
    assert select_accelerator("gpu", AMPERE) == "cuda"
    with pytest.raises(ConfigError, match="no CUDA device"):
        select_accelerator("cuda", CPU_ONLY)
    with pytest.raises(ConfigError, match="--accelerator 'tpu'"):
        select_accelerator("tpu", CPU_ONLY)


def test_hardware_description_and_summary():
    hardware = describe_hardware()
    assert hardware.cpu_count >= 1
    assert "CPU:" in hardware.summary()
    assert "compute capability 8.0" in AMPERE.summary()
    assert AMPERE.as_dict()["cuda_devices"][0]["name"] == "A100"
    assert memory_summary("cpu")["peak_rss_mib"] > 0


def test_seeding_repeats_every_generator():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    seed_everything(7)
    first = draw()
    seed_everything(7)
    assert draw() == first
    with pytest.raises(ConfigError, match="--seed"):
        seed_everything(-1)


def test_channels_last_is_opt_in():
    model = torch.nn.Conv2d(3, 4, 3)
    assert maybe_channels_last(model, False).weight.is_contiguous()
    converted = maybe_channels_last(model, True)
    assert converted.weight.is_contiguous(memory_format=torch.channels_last)


def test_trainer_applies_channels_last_when_asked(tmp_path):
    import pytorch_lightning as pl

    from pentad_core.runs import RunDir
    from pentad_core.training import TrainerConfig, build_trainer

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.network = torch.nn.Conv2d(3, 4, 3)

        def training_step(self, batch, batch_index):
            return self.network(batch[0]).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    module = Module()
    config = TrainerConfig(
        max_epochs=1, accelerator="cpu", devices="1", monitor="", progress_bar=False, channels_last=True
    )
    trainer = build_trainer(config, RunDir(tmp_path))
    data = torch.utils.data.TensorDataset(torch.randn(4, 3, 8, 8))
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=2))
    assert module.network.weight.is_contiguous(memory_format=torch.channels_last)


def test_is_channels_last_reads_the_first_convolution():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Conv2d(3, 8, 3))
    assert not is_channels_last(model)
    assert is_channels_last(maybe_channels_last(model, True))
    assert not is_channels_last(torch.nn.Linear(2, 2))  # no 4-D weight at all


def test_flush_denormals_zeroes_subnormal_results_where_the_cpu_supports_it():
    import platform

    torch.set_flush_denormal(False)  # an app run earlier in this process may have set it
    tiny = torch.tensor([1e-39], dtype=torch.float32)  # a subnormal float32
    assert (tiny * 1.0).item() != 0.0  # kept without the setting
    supported = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
    try:
        assert flush_denormals() is supported
        if supported:
            assert (tiny * 1.0).item() == 0.0
            assert (torch.tensor([1e-30]) * 1.0).item() == pytest.approx(1e-30)  # normal floats untouched
        else:
            assert (tiny * 1.0).item() != 0.0  # said unsupported, and nothing changed
    finally:
        torch.set_flush_denormal(False)


FAULTS_PER_TRAINING_STEP = """
import resource, sys, torch
from pentad_core.parity import ParityCNN
from pentad_core.devices import retain_freed_memory
applied = retain_freed_memory() if sys.argv[1] != "default" else False
if sys.argv[1] == "setting-only":
    raise SystemExit(print(applied, 0))
torch.manual_seed(0)
model = ParityCNN()
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
# batch 256: the first activations take 32 MiB each, above the largest block glibc keeps in its heap by default
images, labels = torch.randn(256, 3, 32, 32), torch.randint(0, 10, (256,))
def step():
    optimizer.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    optimizer.step()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):  # the heap grows to its working size
    step()
before = faults()
for _ in range(4):
    step()
print(applied, (faults() - before) / 4)
"""


def faults_per_training_step(mode: str, **environment: str) -> tuple[bool, float]:
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", FAULTS_PER_TRAINING_STEP, mode],
        capture_output=True,
        text=True,
        check=True,
        env={key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")} | environment,
    )
    applied, faults = result.stdout.split()
    return applied == "True", float(faults)


@pytest.mark.skipif(
    __import__("platform").libc_ver()[0] != "glibc", reason="retain_freed_memory sets glibc malloc only"
)
def test_retain_freed_memory_removes_the_page_faults_of_a_training_step():
    applied, retained = faults_per_training_step("retain")
    _, default = faults_per_training_step("default")
    assert applied
    assert default > 5000, default  # glibc maps (and the kernel zero-fills) the activations afresh every step
    # retained, freed activations are reused; the heap may still grow a little (measured 0-512 per step)
    assert retained < default / 20, (retained, default)
    # a user's own malloc settings win
    applied, _ = faults_per_training_step("setting-only", MALLOC_TRIM_THRESHOLD_="1000000")
    assert not applied


@pytest.mark.parametrize(("accelerator", "enabled", "calls"), [("cpu", True, 1), ("cpu", False, 0)])
def test_build_trainer_retains_freed_memory_on_the_cpu_unless_disabled(
    tmp_path, monkeypatch, accelerator, enabled, calls
):
    from pentad_core import training
    from pentad_core.runs import RunDir

    seen = []
    monkeypatch.setattr(training, "retain_freed_memory", lambda: seen.append(True) or True)
    config = training.TrainerConfig(accelerator=accelerator, retain_freed_memory=enabled, progress_bar=False)
    training.build_trainer(config, RunDir(tmp_path))
    assert len(seen) == calls


def test_using_threads_sets_them_inside_the_block_and_puts_them_back_even_on_an_error():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with using_threads(other) as inside:
        assert inside == torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with using_threads(None) as inside:  # None keeps the number in use
        assert inside == before
    with pytest.raises(ConfigError, match="threads must be at least 1"), using_threads(0):
        pass
    with pytest.raises(RuntimeError, match="inside"), using_threads(other):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before
