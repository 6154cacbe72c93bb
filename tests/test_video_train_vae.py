"""Training the tiny VAE: the loss goes down, resuming equals not stopping, the export carries 1/std as its
scaling factor and loads back, bad configs are one-line errors. Data: smooth moving patterns at 16×24."""

import json
import math
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLCogVideoX
from safetensors.torch import load_file
from shape_checks import unchecked

from videoscene.cli import main as cli_main
from videoscene.data.re10k import scene_from_frames, write_split
from videoscene.errors import VideoSceneError
from videoscene.training.checkpoints import checkpoint_folders
from videoscene.video.config import VideoModelConfig
from videoscene.video.train_vae import (
    FrameBank,
    Reconstruction,
    VAETrainConfig,
    to_vae_layout,
    train_vae,
    vae_loss,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
HEIGHT, WIDTH, SCENE_FRAMES = 16, 24, 12

# A 9-frame 16×24 model: three VAE blocks (4× spatial and temporal), one transformer layer.
MICRO_VIDEO = {
    "name": "micro",
    "num_frames": 9,
    "height": HEIGHT,
    "width": WIDTH,
    "vae": {
        "block_out_channels": [8, 8, 8],
        "latent_channels": 4,
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "temporal_compression_ratio": 4,
        "scaling_factor": 1.0,
    },
    "denoiser": {
        "num_layers": 1,
        "num_attention_heads": 2,
        "attention_head_dim": 16,
        "time_embed_dim": 16,
        "patch_size": 2,
        "use_rotary_positional_embeddings": True,
        "use_learned_positional_embeddings": False,
        "spatial_interpolation_scale": 1.0,
        "temporal_interpolation_scale": 1.0,
    },
    "text": {"kind": "learned", "num_tokens": 4, "dim": 16},
}


def moving_pattern_scene(key: str, phase: float):
    """A smooth colour pattern sliding sideways: what a camera trucking past a wall sees."""
    ys, xs = torch.meshgrid(torch.linspace(0, 1, HEIGHT), torch.linspace(0, 1, WIDTH), indexing="ij")
    frames = []
    for i in range(SCENE_FRAMES):
        x = xs + 0.04 * i + phase
        frames.append(
            torch.stack(
                [
                    0.5 + 0.4 * torch.sin(6 * x),
                    0.5 + 0.4 * torch.cos(5 * ys + 3 * x),
                    0.5 + 0.3 * torch.sin(4 * (x + ys)),
                ]
            )
        )
    intrinsics = torch.tensor([[1.0, 0, 0.5], [0, 1.5, 0.5], [0, 0, 1]]).repeat(SCENE_FRAMES, 1, 1)
    return scene_from_frames(
        key, torch.stack(frames).clamp(0, 1), torch.eye(4).repeat(SCENE_FRAMES, 1, 1), intrinsics
    )


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def micro_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("patterns")
    write_split(root / "train", [moving_pattern_scene(f"pattern-{i}", 0.3 * i) for i in range(3)])
    write_split(root / "test", [moving_pattern_scene("held-out", 1.7)])
    VideoModelConfig.from_dict(MICRO_VIDEO).save_json(root / "micro_video.json")
    return root


def micro_vae_config(root, **changes) -> VAETrainConfig:
    values = dict(
        video=str(root / "micro_video.json"),
        train_data=[str(root / "train")],
        validation_data=[str(root / "test")],
        num_frames=9,
        crop_size=(8, 16),
        max_stride=1,
        batch_size=2,
        steps=4,
        lr=3e-3,
        warmup_steps=1,
        checkpoint_every=2,
        validate_every=1000,
        validation_clips=1,
        scale_clips=2,
        log_every=1,
    )
    values.update(changes)
    return VAETrainConfig(**values)


def test_vae_steps_reduce_the_loss_on_a_fixed_batch(micro_data):
    config = micro_vae_config(micro_data, ssim_weight=0.2)
    torch.manual_seed(0)
    vae = AutoencoderKLCogVideoX(**config.video_config.vae_kwargs())
    model = Reconstruction(vae)
    bank = FrameBank(config.train_data, (HEIGHT, WIDTH))
    pixels = to_vae_layout(bank.draw(torch.Generator().manual_seed(0), [0, 1], 9, (1, 1), None, flip=False))
    optimizer = torch.optim.AdamW(vae.parameters(), lr=3e-3)
    losses = []
    for step in range(12):
        reconstruction, mean, logvar = model(pixels, generator=torch.Generator().manual_seed(step))
        terms = vae_loss(config, reconstruction, pixels, mean, logvar)
        assert -1 <= terms["ssim"] <= 1
        loss = terms["total"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_frame_bank_draws_are_a_function_of_the_generator(micro_data):
    bank = FrameBank([str(micro_data / "train")], (HEIGHT, WIDTH))
    draw = lambda seed: bank.draw(  # noqa: E731
        torch.Generator().manual_seed(seed), [0, 2, 0], 9, (1, 1), (8, 16), flip=True
    )
    assert draw(1).shape == (3, 9, 3, 8, 16)
    assert torch.equal(draw(1), draw(1))
    assert not torch.equal(draw(1), draw(2))


def test_resume_continues_identically_and_export_carries_the_scale(micro_data, tmp_path):
    config = micro_vae_config(micro_data)
    straight = train_vae(config, tmp_path / "straight")
    train_vae(config, tmp_path / "resumed", stop_after=2)
    assert [step for step, _ in checkpoint_folders(tmp_path / "resumed")] == [2]
    assert not (tmp_path / "resumed" / "vae").exists()
    resumed = train_vae(config, tmp_path / "resumed", resume=True)

    weights = load_file(tmp_path / "straight" / "vae" / "diffusion_pytorch_model.safetensors")
    again = load_file(tmp_path / "resumed" / "vae" / "diffusion_pytorch_model.safetensors")
    assert weights.keys() == again.keys()
    assert all(torch.equal(weights[key], again[key]) for key in weights)
    assert straight["scaling_factor"] == resumed["scaling_factor"]
    assert math.isclose(straight["scaling_factor"], 1 / straight["latent_std"])

    statistics = json.loads((tmp_path / "straight" / "vae" / "latent_statistics.json").read_text())
    assert statistics["latents_mean"] == straight["latents_mean"] and len(statistics["latents_std"]) == 4
    assert min(statistics["latents_std"]) > 0
    vae = AutoencoderKLCogVideoX.from_pretrained(tmp_path / "straight" / "vae")
    assert math.isclose(vae.config.scaling_factor, straight["scaling_factor"], rel_tol=1e-6)
    run = json.loads((tmp_path / "straight" / "run.json").read_text())
    assert run["held_out"]["clips"] == 1 and 0 < run["held_out"]["psnr"] < 60
    logged = [
        json.loads(line)["step"]
        for line in (tmp_path / "straight" / "train_log.jsonl").read_text().splitlines()
    ]
    assert logged == [1, 2, 3, 4]


def test_rerun_without_resume_is_refused(micro_data, tmp_path):
    train_vae(micro_vae_config(micro_data, steps=1), tmp_path / "run")
    with pytest.raises(VideoSceneError, match="--resume"):
        train_vae(micro_vae_config(micro_data, steps=1), tmp_path / "run")


def test_cli_trains_and_bad_configs_are_one_line_errors(micro_data, tmp_path, capsys):
    config_path = tmp_path / "vae.json"
    values = json.loads(json.dumps(micro_vae_config(micro_data, steps=2).__dict__))
    config_path.write_text(json.dumps(values))
    assert cli_main(["train", "vae", "--config", str(config_path), "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "vae" / "config.json").is_file()

    for change, message in (
        ({"crop_size": [7, 16]}, "crop_size"),
        ({"learning_rate": 1.0}, "unknown keys"),
        ({"num_frames": 8}, "8k+1"),
    ):
        config_path.write_text(json.dumps({**values, **change}))
        capsys.readouterr()
        assert cli_main(["train", "vae", "--config", str(config_path), "--out", str(tmp_path / "bad")]) == 2
        error = capsys.readouterr().err.strip()
        assert message in error and "\n" not in error


def test_repository_config_parses(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # the config names the video config relative to the repository
    config = VAETrainConfig.load("configs/vae_tiny_train.json")
    assert config.video_config.name == "tiny"


def test_latent_statistics_must_match_the_channels():
    bad = {**MICRO_VIDEO, "vae": {**MICRO_VIDEO["vae"], "latents_mean": [0.0], "latents_std": [1.0]}}
    with pytest.raises(VideoSceneError, match="latents_mean"):
        VideoModelConfig.from_dict(bad)
    good = {**MICRO_VIDEO, "vae": {**MICRO_VIDEO["vae"], "latents_mean": [0.0] * 4, "latents_std": [1.0] * 4}}
    assert VideoModelConfig.from_dict(good).vae.latents_std == (1.0,) * 4


def test_decoder_fine_tuning_keeps_the_encoder_and_its_latent_statistics(micro_data, tmp_path):
    base = train_vae(micro_vae_config(micro_data, steps=2), tmp_path / "base")
    config = micro_vae_config(
        micro_data,
        steps=3,
        init_vae=str(tmp_path / "base" / "vae"),
        trainable="decoder",
        crop_size=None,
        lr=1e-2,
    )
    tuned = train_vae(config, tmp_path / "tuned")

    before = load_file(tmp_path / "base" / "vae" / "diffusion_pytorch_model.safetensors")
    after = load_file(tmp_path / "tuned" / "vae" / "diffusion_pytorch_model.safetensors")
    encoder = [key for key in before if key.startswith(("encoder.", "quant_conv."))]
    decoder = [key for key in before if key.startswith(("decoder.", "post_quant_conv."))]
    assert encoder and decoder and len(encoder) + len(decoder) == len(before)
    assert all(torch.equal(before[key], after[key]) for key in encoder)  # the same latents for the same clip
    assert any(not torch.equal(before[key], after[key]) for key in decoder)
    statistics = [
        json.loads((tmp_path / run / "vae" / "latent_statistics.json").read_text())
        for run in ("base", "tuned")
    ]
    assert statistics[0] == statistics[1] and tuned["scaling_factor"] == base["scaling_factor"]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"trainable": "decoder"}, "set init_vae"),
        ({"trainable": "encoder"}, "trainable must be"),
        ({"init_vae": "/nonexistent/vae"}, "not a VAE folder"),
    ],
)
def test_bad_fine_tuning_settings_are_one_line_errors(micro_data, tmp_path, changes, message):
    with unchecked(), pytest.raises(VideoSceneError, match=message):
        train_vae(micro_vae_config(micro_data, steps=1, **changes), tmp_path / "run")


def test_repository_decoder_config_parses(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    config = VAETrainConfig.load("configs/vae_tiny_decoder.json")
    assert config.trainable == "decoder" and config.crop_size is None and config.num_frames == 17
