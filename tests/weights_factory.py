"""Builders shared by several test files (plain functions; the fixtures are in conftest.py).

- `make_tiny_weights`: a weights folder laid out as `VideoScenePipeline.from_pretrained` expects, with tiny
  randomly initialised components (prior, teacher, distilled student + DDPNet): for tests that need a whole
  pipeline but not trained weights.
- `tiny_video_config` (one transformer block) and `SMALL_VIDEO` (the tiny preset's four): video models at
  9×32×48.
- `make_context` and `random_rotation`: context views and rotations for the Gaussian prior.
- `lightning_checkpoint`: an encoder state dict saved in the layout PyTorch Lightning saves MVSplat in.
"""

import json
import math
from dataclasses import replace
from pathlib import Path

import torch

from videoscene.policy.ddpnet import DDPNet, DDPNetConfig
from videoscene.prior.config import encoder_config
from videoscene.prior.encoder import GaussianEncoder
from videoscene.types import Views
from videoscene.video.config import PRESETS, VideoModelConfig

HEIGHT, WIDTH, FRAMES = 32, 48, 9
DDPNET_TIMESTEPS = (199, 399, 599)

# The tiny preset (four transformer blocks) at 9 frames of 32×48 → latents [3, 8, 8, 12].
SMALL_VIDEO = PRESETS["tiny"].with_size(num_frames=FRAMES, height=HEIGHT, width=WIDTH)


def tiny_video_config(frames: int = FRAMES, height: int = HEIGHT, width: int = WIDTH) -> VideoModelConfig:
    """The tiny preset named "test" at frames×height×width with one transformer block (9×32×48 → latents [3,
    8, 8, 12])."""
    base = PRESETS["tiny"]
    return replace(
        base,
        name="test",
        num_frames=frames,
        height=height,
        width=width,
        denoiser=replace(base.denoiser, num_layers=1),
    )


def random_rotation(generator=None, dtype=torch.float32) -> torch.Tensor:
    """A rotation matrix (det +1) from the QR decomposition of a Gaussian matrix, drawn in float64."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.to(dtype)


def make_context(batch=2, views=2, height=HEIGHT, width=WIDTH, baseline=0.3) -> Views:
    """Prior context views: cameras on a line (x = baseline · view + 0.1 · batch) turned by 0.1 rad per view
    about y, so that they look roughly at the same point; random images; near 1, far 20."""
    extrinsics = torch.eye(4).repeat(batch, views, 1, 1)
    for b in range(batch):
        for v in range(views):
            angle = 0.1 * (v - (views - 1) / 2)
            extrinsics[b, v, :3, :3] = torch.tensor(
                [[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]]
            )
            extrinsics[b, v, 0, 3] = baseline * v + 0.1 * b
    intrinsics = torch.tensor([[0.9, 0, 0.5], [0, 1.35, 0.5], [0, 0, 1]]).repeat(batch, views, 1, 1)
    return Views(
        image=torch.rand(batch, views, 3, height, width),
        extrinsics=extrinsics,
        intrinsics=intrinsics,
        near=torch.full((batch, views), 1.0),
        far=torch.full((batch, views), 20.0),
    )


def make_tiny_weights(
    folder: Path, height: int = HEIGHT, width: int = WIDTH, frames: int = FRAMES, seed: int = 0
) -> Path:
    """Write pipeline.json, prior/, teacher/ and distilled/ (student = the teacher's weights, with a
    DDPNet)."""
    from videoscene.video.models import VideoBackbone  # diffusers: imported only by the tests that build one

    torch.manual_seed(seed)
    folder = Path(folder)
    video_config = tiny_video_config(frames, height, width)
    teacher = VideoBackbone.build(video_config).eval()
    teacher.save_pretrained(folder / "teacher")
    teacher.save_pretrained(folder / "distilled" / "student")
    (folder / "distilled" / "distill_config.json").write_text(
        json.dumps(
            {
                "format": "videoscene.distill/1",
                "teacher": "unused",
                "data": {"train_cache": "unused", "val_cache": "unused"},
            }
        )
    )
    DDPNet(DDPNetConfig(video_config.latent_frames, video_config.latent_channels, DDPNET_TIMESTEPS, 8)).save(
        folder / "distilled" / "ddpnet.safetensors"
    )
    GaussianEncoder(encoder_config("tiny")).save(folder / "prior")
    (folder / "pipeline.json").write_text(
        json.dumps({"num_frames": frames, "height": height, "width": width, "near": 0.5, "far": 20.0})
    )
    return folder


def lightning_checkpoint(path, state):
    """A checkpoint in the layout PyTorch Lightning saves MVSplat in."""
    torch.save(
        {
            "epoch": 3,
            "global_step": 300000,
            "state_dict": {
                **{f"encoder.{k}": v for k, v in state.items()},
                "losses.1.lpips.net.slice1.0.weight": torch.zeros(4, 3, 3, 3),
            },
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-4}]}],
            "lr_schedulers": [],
        },
        path,
    )
