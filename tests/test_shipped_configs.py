"""Every training and model config the repository ships loads with its own loader, so a renamed or
removed field cannot leave a README or docs/results.md command broken."""

from __future__ import annotations

from pathlib import Path

import pytest

from videoscene.distill.config import DistillConfig
from videoscene.prior.train import PriorTrainConfig
from videoscene.video.config import VideoModelConfig
from videoscene.video.train_teacher import TeacherTrainConfig
from videoscene.video.train_vae import VAETrainConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
LOADERS = {
    "distill": DistillConfig.load_json,
    "prior": PriorTrainConfig.load,
    "teacher": TeacherTrainConfig.load,
    "vae": VAETrainConfig.load,
    "video": VideoModelConfig.load_json,
}


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.json")), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_shipped_config_loads(path, monkeypatch):
    monkeypatch.chdir(CONFIGS.parent)  # configs name each other relative to the repository root
    kind = path.name.split("_")[0]
    assert kind in LOADERS, f"{path.name}: no loader for configs named {kind}_*"
    assert LOADERS[kind](path) is not None
