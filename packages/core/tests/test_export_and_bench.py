import math
import statistics

import pytest
import torch

from pentad_core.bench import format_table, median_interval, throughput, time_callable
from pentad_core.export import ParityError, check_onnx_parity, export_onnx
from pentad_core.parity import _parity_module_class, trainer_parity
from pentad_core.training import PentadModule


class Toy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU())
        self.head = torch.nn.Linear(8, 4)

    def forward(self, images):
        return self.head(self.features(images).mean(dim=(2, 3)))


def test_onnx_export_has_a_dynamic_batch_and_matches_pytorch(tmp_path):
    torch.manual_seed(0)
    model = Toy()
    path = export_onnx(model, torch.randn(2, 3, 16, 16), tmp_path / "toy.onnx")
    report = check_onnx_parity(model, path, torch.randn(7, 3, 16, 16))
    assert report.passed and report.batch_size == 7 and report.max_abs_diff < 1e-5
    assert report.as_metrics()["export/max_abs_diff"] == report.max_abs_diff


def test_parity_check_fails_above_the_tolerance(tmp_path):
    torch.manual_seed(0)
    model = Toy()
    path = export_onnx(model, torch.randn(2, 3, 16, 16), tmp_path / "toy.onnx")
    with torch.no_grad():
        model.head.bias.add_(0.5)  # the PyTorch model drifts away from the exported one
    with pytest.raises(ParityError, match="max abs difference"):
        check_onnx_parity(model, path, torch.randn(3, 3, 16, 16), tolerance=1e-3)
    report = check_onnx_parity(model, path, torch.randn(3, 3, 16, 16), tolerance=1e-3, raise_on_failure=False)
    assert not report.passed and report.max_abs_diff == pytest.approx(0.5, abs=1e-4)


def test_timing_helpers():
    calls = []
    timing = time_callable(lambda: calls.append(1), warmup=2, repeats=3)
    assert len(calls) == 5 and len(timing.samples) == 3
    assert timing.minimum <= timing.median <= timing.maximum
    assert throughput(100, 2.0) == 50.0 and throughput(1, 0) == 0.0
    table = format_table([{"model": "a", "acc": 0.91234}])
    assert table.splitlines()[0] == "| model | acc |" and "0.9123" in table


def test_bench_loads_no_torch_and_still_runs_the_parity_experiment():
    import subprocess
    import sys

    check = "import sys, pentad_core.bench; print('torch' in sys.modules, 'pytorch_lightning' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert loaded.stdout.split() == ["False", "False"]
    usage = subprocess.run(
        [sys.executable, "-m", "pentad_core.bench", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert usage.startswith("usage: python -m pentad_core.bench")
    assert all(option in usage for option in ("--repeats", "--bare-lightning", "--lightning-module-base"))


def test_median_interval_uses_the_binomial_order_statistics():
    # P(Binomial(21, 1/2) <= 5) = 0.0133 <= 0.025 < P(<= 6): the 6th to the 16th of 21 values
    assert median_interval(range(1, 22)) == (6, 16)
    assert median_interval([9, 1, 8, 2, 7, 3, 6, 4, 5]) == (2, 8)  # P(<= 1) = 0.0195, P(<= 2) = 0.0898
    assert median_interval(range(1, 101)) == (40, 61)  # the textbook ranks for n = 100
    assert median_interval([5, 1, 3]) == (1, 5)  # too few values for 95 %: the whole range
    assert median_interval(range(1, 22), confidence=0.5) == (9, 13)
    with pytest.raises(ValueError):
        median_interval([])


def test_trainer_parity_benchmark_pairs_rounds_and_reports_the_median_ratio():
    result = trainer_parity(samples=128, batch_size=32, epochs=1, repeats=3)
    assert result["steps_per_run"] == 4 and len(result["round_ratios"]) == 3
    assert result["pentad_steps_per_s"] > 0 and result["hand_written_steps_per_s"] > 0
    assert result["ratio"] == pytest.approx(statistics.median(result["round_ratios"]))
    assert result["ratio_q1"] <= result["ratio"] <= result["ratio_q3"]
    assert (result["ratio_low"], result["ratio_high"]) == (min(result["round_ratios"]), max(result["round_ratios"]))
    assert math.isfinite(result["overhead_ms_per_step"])
    from pentad_core.training import TrainerConfig

    assert result["log_every_n_steps"] == TrainerConfig.log_every_n_steps  # the trainer's default unless given
    with pytest.raises(ValueError, match="repeats"):
        trainer_parity(samples=64, repeats=0)


def test_trainer_parity_can_also_time_bare_lightning(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a bare Trainer's default root folder; it must write nothing there
    result = trainer_parity(samples=128, batch_size=32, epochs=1, repeats=3, bare_lightning=True)
    assert len(result["bare_lightning_round_ratios"]) == 3 and result["bare_lightning_steps_per_s"] > 0
    assert result["bare_lightning_ratio"] == pytest.approx(statistics.median(result["bare_lightning_round_ratios"]))
    assert result["bare_lightning_ratio_low"] <= result["bare_lightning_ratio"] <= result["bare_lightning_ratio_high"]
    assert result["pentad_vs_bare_lightning"] > 0
    assert list(tmp_path.iterdir()) == []
    assert "bare_lightning_ratio" not in trainer_parity(samples=64, batch_size=32, epochs=1, repeats=1)


def test_trainer_parity_can_also_time_the_pentad_trainer_on_lightnings_module_base():
    result = trainer_parity(samples=128, batch_size=32, epochs=1, repeats=3, lightning_module_base=True)
    gains = result["pentad_module_gain_round_ratios"]
    assert len(gains) == 3 and all(gain > 0 for gain in gains)
    assert result["pentad_module_gain"] == pytest.approx(statistics.median(gains))
    assert result["pentad_module_gain_low"] <= result["pentad_module_gain"] <= result["pentad_module_gain_high"]
    assert "pentad_module_gain" not in trainer_parity(samples=64, batch_size=32, epochs=1, repeats=1)
    # the two sides differ in their module base only
    assert issubclass(_parity_module_class(True), PentadModule)
    assert not issubclass(_parity_module_class(False), PentadModule)
