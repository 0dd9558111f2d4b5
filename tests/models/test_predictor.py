"""The inference wrapper the workers call: per-driver clips in, per-driver outputs out."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from models import ModelError, create_model
from models.checkpoint import save_checkpoint
from models.predictor import ClipPredictor


@pytest.fixture(scope="module")
def satnet() -> nn.Module:
    torch.manual_seed(0)
    return create_model("satnet", aus=4).eval()


def clips(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {f"driver-{i}": torch.randn(3, 3, 32, 32, generator=g) for i in range(n)}


def test_each_driver_gets_its_own_clips_output(satnet: nn.Module) -> None:
    predictor = ClipPredictor(satnet)
    drivers = clips(3)
    result = predictor.predict(drivers)
    assert result.rejected == {}
    assert set(result.outputs) == set(drivers)
    for driver, clip in drivers.items():
        with torch.no_grad():
            alone = torch.sigmoid(satnet(clip[None]))[0]
        probabilities = result.outputs[driver]["probabilities"]
        assert probabilities.shape == (3, 4)  # (T, K) for this driver alone
        assert torch.allclose(probabilities, alone, atol=1e-5)
    assert predictor.predict({}).outputs == {}


def test_fatigue_readout_is_a_score_in_0_1() -> None:
    torch.manual_seed(0)
    predictor = ClipPredictor(create_model("fatigue-nonlocal-r3d18", bins=5))
    result = predictor.predict({"a": torch.randn(3, 16, 32, 32), "b": torch.randn(3, 16, 32, 32)})
    for out in result.outputs.values():
        assert 0.0 <= out["score"].item() <= 1.0
        assert out["bin_probabilities"].shape == (5,)
        assert torch.isclose(out["bin_probabilities"].sum(), torch.tensor(1.0))


def test_a_bad_clip_is_rejected_and_the_others_still_run(satnet: nn.Module) -> None:
    drivers = clips(2)
    broken = torch.randn(3, 3, 32, 32)
    broken[1, 0, 5, 5] = float("nan")
    drivers["nan-driver"] = broken
    drivers["flat-driver"] = torch.randn(3, 32, 32)  # a frame, not a sequence of frames
    result = ClipPredictor(satnet).predict(drivers)
    assert set(result.outputs) == {"driver-0", "driver-1"}
    assert result.rejected["nan-driver"] == "clip holds NaN or infinite values"
    assert "refused inputs of shape [(3, 32, 32)]" in result.rejected["flat-driver"]


def test_large_requests_are_split_into_max_batch_calls(satnet: nn.Module) -> None:
    sizes: list[int] = []
    handle = satnet.register_forward_hook(lambda m, args, out: sizes.append(args[0].shape[0]))
    try:
        result = ClipPredictor(satnet, max_batch=2).predict(clips(5))
    finally:
        handle.remove()
    assert sorted(sizes) == [1, 2, 2]
    assert len(result.outputs) == 5


def test_several_inputs_per_clip_are_batched_column_by_column() -> None:
    class TwoInputs(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a.sum(dim=1) * b[:, 0]

    result = ClipPredictor(TwoInputs()).predict({
        "x": (torch.ones(4), torch.tensor([2.0, 0.0])),
        "y": [torch.full((4,), 0.5), torch.tensor([3.0, 1.0])]})
    assert result.outputs["x"]["output"].item() == 8.0  # no readout: the raw output
    assert result.outputs["y"]["output"].item() == 6.0


def test_bf16_autocast_and_channels_last_on_cpu_agree_with_fp32(satnet: nn.Module) -> None:
    drivers = clips(2)
    reference = ClipPredictor(create_model("satnet", aus=4)).predict(drivers)  # fresh weights
    torch.manual_seed(1)
    model = create_model("satnet", aus=4)
    exact = ClipPredictor(model).predict(drivers)
    fast = ClipPredictor(model, precision="bf16", channels_last=True).predict(drivers)
    assert model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    for driver in drivers:
        a = exact.outputs[driver]["probabilities"]
        assert torch.allclose(fast.outputs[driver]["probabilities"], a, atol=0.05)
        assert fast.outputs[driver]["probabilities"].dtype == torch.float32
        assert not torch.allclose(reference.outputs[driver]["probabilities"], a, atol=1e-3)


def test_bad_options_are_clear_errors(satnet: nn.Module) -> None:
    with pytest.raises(ModelError, match="unknown precision 'int8'"):
        ClipPredictor(satnet, precision="int8")
    with pytest.raises(ModelError, match="fp16 autocast needs a CUDA device"):
        ClipPredictor(satnet, precision="fp16")
    with pytest.raises(ModelError, match="max_batch"):
        ClipPredictor(satnet, max_batch=0)
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="torch sees none"):
            ClipPredictor(satnet, device="cuda")


def test_from_checkpoint_keeps_the_preprocessing(satnet: nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "au.pt"
    preprocessing = {"clip_length": 3, "size": [32, 32], "mean": [0.5] * 3, "std": [0.25] * 3}
    save_checkpoint(path, satnet, "satnet", {"aus": 4}, preprocessing=preprocessing)
    predictor = ClipPredictor.from_checkpoint(path, max_batch=8)
    assert predictor.preprocessing == preprocessing
    drivers = clips(1)
    expected = ClipPredictor(satnet).predict(drivers).outputs["driver-0"]["probabilities"]
    got = predictor.predict(drivers).outputs["driver-0"]["probabilities"]
    assert torch.equal(got, expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_with_bf16_matches_cpu(satnet: nn.Module) -> None:
    drivers = clips(4)
    cpu = ClipPredictor(satnet).predict(drivers)
    model = create_model("satnet", aus=4)
    model.load_state_dict(satnet.state_dict())
    gpu = ClipPredictor(model, device="cuda", precision="bf16", channels_last=True
                        ).predict(drivers)
    for driver in drivers:
        out = gpu.outputs[driver]["probabilities"]
        assert out.device.type == "cpu"
        assert torch.allclose(out, cpu.outputs[driver]["probabilities"], atol=0.05)


def test_a_compiled_graph_is_checked_against_eager_inference() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    predictor = ClipPredictor(model, compile=True)
    x = torch.randn(2, 3, 4)
    assert predictor.check_compiled(x) <= 1e-3  # the real torch.compile on the CPU

    # A graph that reads differently from the model is refused, with by how much.
    predictor._forward = lambda inputs: model(inputs) + 0.5  # type: ignore[method-assign]
    with pytest.raises(ModelError, match=r"differs from eager inference by up to 0\.5"):
        predictor.check_compiled(x)
