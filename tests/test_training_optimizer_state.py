"""Optimizer state in safetensors (training.save_optimizer / load_optimizer): exact round trip, old files
refused."""

import pytest
import torch
from safetensors.torch import save_file

from videoscene.errors import VideoSceneError
from videoscene.training.checkpoints import load_optimizer, save_optimizer


def stepped_adam() -> tuple[torch.nn.Linear, torch.optim.AdamW]:
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=1e-2, betas=(0.8, 0.95))
    for _ in range(3):
        layer(torch.randn(4, 3)).square().sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    return layer, optimizer


def test_round_trip_restores_every_tensor_and_scalar(tmp_path):
    layer, optimizer = stepped_adam()
    save_optimizer(tmp_path / "optimizer.safetensors", optimizer)
    restored = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=1.0)
    load_optimizer(tmp_path / "optimizer.safetensors", restored)
    want, got = optimizer.state_dict(), restored.state_dict()
    # JSON has no tuples: betas come back as a list, which AdamW indexes the same way
    assert [{**g, "betas": tuple(g["betas"])} for g in got["param_groups"]] == want["param_groups"]
    for index, values in want["state"].items():
        for key, value in values.items():
            assert torch.equal(torch.as_tensor(got["state"][index][key]), torch.as_tensor(value)), (
                index,
                key,
            )


def test_a_file_without_the_metadata_is_a_one_line_error(tmp_path):
    save_file({"0.exp_avg": torch.zeros(2)}, str(tmp_path / "old.safetensors"))
    _, optimizer = stepped_adam()
    with pytest.raises(VideoSceneError, match="older format") as error:
        load_optimizer(tmp_path / "old.safetensors", optimizer)
    assert "\n" not in str(error.value)
