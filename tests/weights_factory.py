"""A weights folder laid out as `VideoScenePipeline.from_pretrained` expects, with tiny randomly initialised
components (prior, teacher, distilled student + DDPNet): for tests that need a whole pipeline but not trained
weights."""

import json
from dataclasses import replace
from pathlib import Path

import torch

from videoscene.policy.ddpnet import DDPNet, DDPNetConfig
from videoscene.prior.config import encoder_config
from videoscene.prior.encoder import GaussianEncoder
from videoscene.video.config import PRESETS
from videoscene.video.models import VideoBackbone

HEIGHT, WIDTH, FRAMES = 32, 48, 9
DDPNET_TIMESTEPS = (199, 399, 599)


def make_tiny_weights(folder: Path, height: int = HEIGHT, width: int = WIDTH, frames: int = FRAMES, seed: int = 0) -> Path:
    """Write pipeline.json, prior/, teacher/ and distilled/ (student = the teacher's weights, with a DDPNet)."""
    torch.manual_seed(seed)
    folder = Path(folder)
    base = PRESETS["tiny"]
    video_config = replace(
        base, name="test", num_frames=frames, height=height, width=width, denoiser=replace(base.denoiser, num_layers=1)
    )
    teacher = VideoBackbone.build(video_config).eval()
    teacher.save_pretrained(folder / "teacher")
    teacher.save_pretrained(folder / "distilled" / "student")
    (folder / "distilled" / "distill_config.json").write_text(
        json.dumps({"format": "videoscene.distill/1", "teacher": "unused", "data": {"train_cache": "unused", "val_cache": "unused"}})
    )
    DDPNet(DDPNetConfig(video_config.latent_frames, video_config.latent_channels, DDPNET_TIMESTEPS, 8)).save(
        folder / "distilled" / "ddpnet.safetensors"
    )
    GaussianEncoder(encoder_config("tiny")).save(folder / "prior")
    (folder / "pipeline.json").write_text(
        json.dumps({"num_frames": frames, "height": height, "width": width, "near": 0.5, "far": 20.0})
    )
    return folder
