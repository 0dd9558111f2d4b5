"""Every registered network and variant: forward, backward and no NaN on tiny inputs; an
export that matches the eager model; inputs of the deployed size for the benchmarks."""

from __future__ import annotations

import pytest
import torch

from models import create_model, list_models
from models.export import compare_export, export_model, load_export, save_export
from tests.models.cases import TINY_CASES, TinyCase

CASE_IDS = [case.id for case in TINY_CASES]


def test_every_registered_model_has_tiny_cases_and_deployment_inputs() -> None:
    assert {e.name for e in list_models()} == {case.name for case in TINY_CASES}
    for entry in list_models():
        inputs = entry.example_inputs(2)
        assert inputs and all(x.shape[0] == 2 for x in inputs)


@pytest.mark.parametrize("case", TINY_CASES, ids=CASE_IDS)
def test_forward_backward_no_nan(case: TinyCase) -> None:
    torch.manual_seed(0)
    model = create_model(case.name, **case.overrides)
    out = model(*case.inputs(2))
    assert torch.isfinite(out).all()
    out.float().pow(2).mean().backward()
    trained = [p for p in case.trained(model).parameters() if p.requires_grad]
    assert trained and all(p.grad is not None and torch.isfinite(p.grad).all() for p in trained)


@pytest.mark.parametrize("case", TINY_CASES, ids=CASE_IDS)
def test_export_matches_eager(case: TinyCase, tmp_path) -> None:
    torch.manual_seed(0)
    model = create_model(case.name, **case.overrides).eval()
    program = export_model(model, case.inputs(2))
    save_export(program, tmp_path / "model.pt2")
    loaded = load_export(tmp_path / "model.pt2")
    # Another batch size than traced: the batch dimension stayed dynamic.
    assert compare_export(model, loaded, case.inputs(3)).within_tolerance
