"""`vigil bench models` and `vigil export` on a small registered network."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from models.bench import count_flops, format_report, peak_tflops
from models.checkpoint import save_checkpoint
from models.export import load_export
from models.registry import create_model, register_model, unregister_model
from vigil.cli import main


@pytest.fixture
def small() -> Iterator[str]:
    @register_model("test-small", example=lambda batch: (torch.randn(batch, 3, 8, 8),))
    def build(width: int = 4) -> nn.Module:
        """A convolution and a linear layer, for the benchmark's tests."""
        return nn.Sequential(nn.Conv2d(3, width, 3), nn.Flatten(), nn.Linear(width * 36, 2))

    yield "test-small"
    unregister_model("test-small")


def test_flops_are_two_per_multiply_add() -> None:
    conv = nn.Conv2d(3, 4, 3)  # 6×6 outputs × 4 channels × 27 MACs each
    assert count_flops(conv, (torch.randn(1, 3, 8, 8),)) == 2 * 36 * 4 * 27
    assert count_flops(nn.Linear(10, 20), (torch.randn(5, 10),)) == 2 * 5 * 10 * 20


def test_peak_lookup_by_device_name() -> None:
    assert peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.4
    assert peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.5
    assert peak_tflops("NVIDIA H200", "fp32") == 494.7
    assert peak_tflops("Some Other GPU", "bf16") is None


def test_bench_models_reports_size_flops_and_cpu_latency(small: str, capsys) -> None:
    assert main(["bench", "models", "--model", small, "--repeats", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["name"] == small
    assert report["params"] == 3 * 4 * 9 + 4 + 4 * 36 * 2 + 2
    assert report["input_shapes"] == [[3, 8, 8]]
    assert report["gflops_per_clip"] * 1e9 == pytest.approx(2 * (36 * 4 * 27 + 144 * 2))
    assert report["cpu_ms_batch1"] > 0 and report["gpu"] == []
    assert main(["bench", "models", "--model", small, "--repeats", "1"]) == 0
    assert "test-small" in capsys.readouterr().out
    if not torch.cuda.is_available():
        assert main(["bench", "models", "--model", small, "--gpu-batches", "2"]) == 2


def test_format_report_names_each_gpu_configuration() -> None:
    from models.bench import GpuRun, ModelBench

    report = ModelBench("net", 10, [[3, 8, 8]], 1.0, 2.0, "NVIDIA H200",
                        [GpuRun(8, "bf16", True, True, 500.0, 0.5, 0.002)])
    lines = format_report([report])
    assert any("bf16+channels-last+compile" in line and "500.0 clips/s" in line
               and "0.2 % of peak" in line for line in lines)


def test_export_from_a_name_and_from_a_checkpoint(small: str, tmp_path: Path) -> None:
    assert main(["export", small, str(tmp_path / "random.pt2")]) == 0
    assert load_export(tmp_path / "random.pt2").module()(torch.randn(5, 3, 8, 8)).shape == (5, 2)
    torch.manual_seed(3)
    model = create_model(small, width=6)
    save_checkpoint(tmp_path / "small.pt", model, small, {"width": 6})
    assert main(["export", str(tmp_path / "small.pt"), str(tmp_path / "trained.pt2")]) == 0
    x = torch.randn(3, 3, 8, 8)
    exported = load_export(tmp_path / "trained.pt2").module()(x)
    assert torch.allclose(exported, model.eval()(x), atol=1e-5)
    assert main(["export", "no-such-model", str(tmp_path / "x.pt2")]) == 2
    assert not (tmp_path / "x.pt2").exists()


def test_an_export_that_differs_from_eager_is_caught(small: str) -> None:
    import copy

    from models.export import compare_export, export_model

    torch.manual_seed(0)
    model = create_model(small).eval()
    inputs = (torch.randn(2, 3, 8, 8),)
    program = export_model(model, inputs)
    assert compare_export(model, program, inputs).within_tolerance
    drifted = copy.deepcopy(model)  # (the program holds the model's own parameters)
    with torch.no_grad():
        drifted[2].bias.add_(1e-3)
    check = compare_export(drifted, program, inputs)
    assert not check.within_tolerance
    assert check.max_abs_difference == pytest.approx(1e-3, rel=1e-2)
