"""The shared training loop on a toy trainer (least squares): resuming equals not stopping, logs keep one
line per step, a run is never mixed into a non-empty folder, and a checkpoint of another experiment is
refused."""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from videoscene.errors import VideoSceneError
from videoscene.io_utils import load_state
from videoscene.training.checkpoints import checkpoint_folders
from videoscene.training.loop import LoopSettings, Optimisation, Trainer


@dataclass
class ToyConfig:
    width: int


class LeastSquares(Trainer):
    name, export_name, checkpoint_files = "toy", "model.json", ("model",)

    def __init__(self, out: Path, steps: int = 6, width: int = 3, resume: bool = False):
        self.width = width
        super().__init__(ToyConfig(width), LoopSettings(steps, 0, 1.0, 2, 2, validate_every=3), out, resume)

    def build(self) -> Optimisation:
        self.net = nn.Linear(self.width, 1)
        optimizer = torch.optim.AdamW(self.net.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + step))
        return Optimisation(self.net, optimizer, list(self.net.parameters()), scheduler)

    def identity(self):
        return {"width": self.width}

    def loss(self, generator):
        x = torch.randn(8, self.width, generator=generator)
        y = x.sum(1, keepdim=True)
        return (self.model(x) - y).square().mean(), {"batch_mean": x.mean()}

    def validate(self, final):
        return {"weight_sum": self.net.weight.sum().item(), "final": final}

    def checkpoint_tensors(self):
        return {"model": self.net.state_dict()}

    def restore(self, tensors, state, folder):
        load_state(self.net, tensors["model"], folder / "model.safetensors", "checkpoint weights")

    def export(self, summary, validation):
        (self.out / "model.json").write_text(json.dumps(self.net.weight.tolist()))
        return {**summary, "validation": validation}


def log_steps(out: Path, name: str = "train_log.jsonl") -> list[int]:
    return [json.loads(line)["step"] for line in (out / name).read_text().splitlines()]


def test_resume_in_slices_equals_one_run(tmp_path):
    straight = LeastSquares(tmp_path / "straight")
    summary = straight.train()
    assert summary["step"] == 6 and summary["validation"] == {
        "step": 6,
        "weight_sum": pytest.approx(straight.net.weight.sum().item()),
        "final": True,
    }
    LeastSquares(tmp_path / "sliced").train(stop_after=3)  # checkpoints at 2 and 3 (the slice's end)
    assert [step for step, _ in checkpoint_folders(tmp_path / "sliced")] == [2, 3]
    resumed = LeastSquares(tmp_path / "sliced", resume=True)
    assert resumed.step == 3
    resumed.train()
    assert torch.equal(straight.net.weight, resumed.net.weight) and torch.equal(
        straight.net.bias, resumed.net.bias
    )
    assert log_steps(tmp_path / "sliced") == list(range(1, 7))
    assert log_steps(tmp_path / "sliced", "validation.jsonl") == [3, 6]
    record = json.loads((tmp_path / "sliced" / "train_log.jsonl").read_text().splitlines()[-1])
    assert {"step", "loss", "batch_mean", "lr", "grad_norm", "seconds_per_step"} <= set(record)
    assert record["lr"] == pytest.approx(0.1 / 7)  # the schedule resumed too
    # A finished run returns its summary without training again.
    assert LeastSquares(tmp_path / "sliced", resume=True).train()["step"] == 6


def test_refusals(tmp_path):
    (tmp_path / "someone").mkdir()
    (tmp_path / "someone" / "notes.txt").write_text("mine")
    with pytest.raises(VideoSceneError, match="not empty"):
        LeastSquares(tmp_path / "someone")
    assert (tmp_path / "someone" / "notes.txt").read_text() == "mine"
    LeastSquares(tmp_path / "run").train(stop_after=2)
    with pytest.raises(VideoSceneError, match="different width"):
        LeastSquares(tmp_path / "run", width=4, resume=True)
