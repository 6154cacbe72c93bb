"""video/config.py: the presets and their JSON files, the latent geometry of the 8k+1 frame rule, one clear
error per invalid config, the JSON round trip, and the diffusers constructor arguments derived from it."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel

from videoscene.errors import VideoSceneError
from videoscene.video.config import (
    PRESETS,
    TINY_DENOISER,
    TINY_VAE,
    DenoiserConfig,
    ScheduleConfig,
    VAEConfig,
    VideoModelConfig,
    preset,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY, PAPER = PRESETS["tiny"], PRESETS["paper"]


# CogVideoX's geometry (4× time, 4× space here, patch 2) for the frame-rule and validation cases; the tiny
# preset compresses 2× in space and time.
VAE_4X = replace(TINY_VAE, block_out_channels=(16, 32, 32), temporal_compression_ratio=4)
DENOISER_P2 = replace(TINY_DENOISER, patch_size=2)


def tiny(**changes) -> VideoModelConfig:
    values = dict(name="t", num_frames=9, height=32, width=48, vae=VAE_4X, denoiser=DENOISER_P2)
    values.update(changes)
    return VideoModelConfig(**values)


def test_presets_have_the_documented_latent_geometry():
    # tiny: 17 frames at 64×96 → 9 latent frames of 8 channels × 32×48 (2× space, 2× time).
    assert (TINY.num_frames, TINY.height, TINY.width) == (17, 64, 96)
    assert (TINY.latent_frames, TINY.latent_channels, TINY.latent_height, TINY.latent_width) == (9, 8, 32, 48)
    # paper (CogVideoX-5B-I2V): 49 frames at 480×720 → 13 latent frames of 16×60×90.
    assert (PAPER.latent_frames, PAPER.latent_channels, PAPER.latent_height, PAPER.latent_width) == (
        13,
        16,
        60,
        90,
    )
    assert (
        PAPER.denoiser.num_layers,
        PAPER.denoiser.num_attention_heads,
        PAPER.denoiser.attention_head_dim,
    ) == (42, 48, 64)
    assert (
        PAPER.denoiser.inner_dim == 3072
        and PAPER.vae.spatial_compression == 8
        and TINY.vae.spatial_compression == 2
    )


@pytest.mark.parametrize("name", ["tiny", "paper"])
def test_presets_load_by_name_and_equal_their_json_files(name):
    assert preset(name) is PRESETS[name]
    assert preset(str(CONFIGS / f"video_{name}.json")) == PRESETS[name]


def test_unknown_preset_names_the_choices():
    with pytest.raises(
        VideoSceneError, match=r"unknown video preset 'huge'; choose one of \['paper', 'tiny'\]"
    ):
        preset("huge")


@pytest.mark.parametrize(("frames", "latent_frames"), [(1, 1), (9, 3), (17, 5), (25, 7), (49, 13)])
def test_latent_frames_follow_the_8k_plus_1_rule(frames, latent_frames):
    config = tiny(num_frames=frames)
    assert config.latent_frames == latent_frames
    # The VAE's 4× temporal compression decodes L latent frames to 4(L − 1) + 1 frames: the same count.
    assert 4 * (config.latent_frames - 1) + 1 == frames


@pytest.mark.parametrize("frames", [0, 5, 8, 13, 16, 48])
def test_frame_counts_off_the_8k_plus_1_rule_are_refused(frames):
    with pytest.raises(VideoSceneError, match=rf"video config 't': num_frames={frames} must be 8k\+1"):
        tiny(num_frames=frames)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(height=36), r"36x48 must be positive and divisible by 8 \(VAE ×4 times patch 2\)"),
        (dict(width=44), "32x44 must be positive and divisible by 8"),
        (dict(height=0), "0x48 must be positive"),
        (dict(width=-8), "32x-8 must be positive"),
        (
            dict(denoiser=replace(DENOISER_P2, attention_head_dim=24)),
            "attention_head_dim=24 must be divisible by 16",
        ),
        (
            dict(
                denoiser=replace(
                    DENOISER_P2,
                    use_rotary_positional_embeddings=False,
                    use_learned_positional_embeddings=True,
                )
            ),
            "learned positional embeddings need rotary ones too",
        ),
        (
            dict(vae=replace(VAE_4X, block_out_channels=(16, 32))),
            "temporal_compression_ratio=4 needs at least 3 VAE blocks, got 2",
        ),
        (
            dict(vae=replace(VAE_4X, latents_mean=(0.0,) * 8)),
            "latents_mean and latents_std must both be given",
        ),
        (
            dict(vae=replace(VAE_4X, latents_mean=(0.0,) * 8, latents_std=(1.0,) * 7 + (0.0,))),
            "positive stds",
        ),
        (
            dict(vae=replace(VAE_4X, block_out_channels=(16, 32, 36))),
            "VAE width 36 is not divisible by norm_num_groups=8",
        ),
    ],
)
def test_invalid_configs_raise_one_line_naming_the_config(changes, message):
    with pytest.raises(VideoSceneError, match=message) as error:
        tiny(**changes)
    assert str(error.value).startswith("video config 't': ") and "\n" not in str(error.value)


def test_with_size_keeps_the_model_and_checks_the_new_size():
    small = TINY.with_size(num_frames=9, height=32, width=48)
    assert (small.latent_frames, small.latent_height, small.latent_width) == (5, 16, 24)
    assert (small.vae, small.denoiser, small.text, small.schedule, small.name) == (
        TINY.vae,
        TINY.denoiser,
        TINY.text,
        TINY.schedule,
        "tiny",
    )
    with pytest.raises(VideoSceneError, match="4k\\+1"):
        TINY.with_size(num_frames=11, height=32, width=48)
    with pytest.raises(VideoSceneError, match="divisible by 8"):
        TINY.with_size(num_frames=9, height=30, width=48)


def test_config_json_round_trip_and_validation(tmp_path):
    for config in PRESETS.values():
        config.save_json(tmp_path / f"{config.name}.json")
        assert VideoModelConfig.load_json(tmp_path / f"{config.name}.json") == config
        assert VideoModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    data = json.loads((tmp_path / "tiny.json").read_text())
    assert data["format"] == "videoscene.video/1" and data["vae"]["block_out_channels"] == [16, 32]
    data["num_frames"] = 15
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(VideoSceneError, match="4k\\+1"):
        VideoModelConfig.load_json(tmp_path / "bad.json")
    measured = replace(TINY, vae=replace(TINY_VAE, latents_mean=tuple(range(8)), latents_std=(0.5,) * 8))
    assert (
        VideoModelConfig.from_dict(json.loads(json.dumps(measured.to_dict()))) == measured
    )  # lists back to tuples


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d | {"learning_rate": 1.0}, "malformed .*unexpected keyword argument 'learning_rate'"),
        (lambda d: d | {"vae": d["vae"] | {"depth": 3}}, "malformed .*'depth'"),
        (lambda d: {k: v for k, v in d.items() if k != "name"}, "malformed .*'name'"),
        (lambda d: d | {"num_frames": "17"}, "'num_frames' must be a whole number, got '17'"),
        (lambda d: d | {"height": 64.0}, "'height' must be a whole number, got 64.0"),
        (lambda d: d | {"vae": "small"}, "'vae' must be a JSON object, got 'small'"),
        (
            lambda d: d | {"vae": d["vae"] | {"latent_channels": "8"}},
            "video config: vae: 'latent_channels' must be a whole number",
        ),
        (
            lambda d: d | {"text": d["text"] | {"kind": "clip"}},
            "text: 'kind' must be one of 'learned', 'file', 't5'",
        ),
        (lambda d: [d], "video config .* must hold a JSON object"),
    ],
)
def test_malformed_json_is_one_clear_error(tmp_path, edit, message):
    path = tmp_path / "video.json"
    path.write_text(json.dumps(edit(TINY.to_dict())))
    with pytest.raises(VideoSceneError, match=message) as error:
        VideoModelConfig.load_json(path)
    assert "\n" not in str(error.value)


def test_unreadable_files_are_one_clear_error(tmp_path):
    with pytest.raises(VideoSceneError, match="not found; pass a JSON file such as configs/video_tiny.json"):
        VideoModelConfig.load_json(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text('{"name": ')
    with pytest.raises(VideoSceneError, match="is not valid JSON"):
        VideoModelConfig.load_json(tmp_path / "broken.json")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00{")
    with pytest.raises(VideoSceneError, match="cannot be read .*give a UTF-8 JSON file"):
        VideoModelConfig.load_json(tmp_path / "binary.json")


def test_transformer_kwargs_derive_the_geometry_from_the_video_size_and_the_vae():
    kwargs = PAPER.transformer_kwargs()
    assert (
        kwargs["in_channels"],
        kwargs["out_channels"],
        kwargs["num_layers"],
        kwargs["num_attention_heads"],
    ) == (32, 16, 42, 48)
    assert (kwargs["sample_frames"], kwargs["sample_height"], kwargs["sample_width"]) == (49, 60, 90)
    for config in (TINY, PAPER, TINY.with_size(num_frames=9, height=32, width=48)):
        kwargs = config.transformer_kwargs()
        assert (
            kwargs["in_channels"] == 2 * config.latent_channels
            and kwargs["out_channels"] == config.latent_channels
        )
        assert (kwargs["sample_height"], kwargs["sample_width"]) == (
            config.latent_height,
            config.latent_width,
        )
        assert kwargs["sample_frames"] == config.num_frames  # pixel frames, as diffusers expects
        assert (kwargs["text_embed_dim"], kwargs["max_text_seq_length"]) == (
            config.text.dim,
            config.text.num_tokens,
        )
        assert kwargs["temporal_compression_ratio"] == config.vae.temporal_compression_ratio
        vae = config.vae_kwargs()
        assert (
            len(vae["down_block_types"]) == len(vae["up_block_types"]) == len(config.vae.block_out_channels)
        )
        assert (vae["sample_height"], vae["sample_width"], vae["latent_channels"]) == (
            config.height,
            config.width,
            config.latent_channels,
        )


@pytest.mark.parametrize("name", ["tiny", "paper"])
def test_diffusers_accepts_the_kwargs_and_reads_back_the_same_architecture(name):
    config = PRESETS[name]
    with torch.device("meta"):
        transformer = CogVideoXTransformer3DModel(**config.transformer_kwargs())
        vae = AutoencoderKLCogVideoX(**config.vae_kwargs())
    patch = config.denoiser.patch_size
    assert transformer.patch_embed.proj.weight.shape == (
        config.denoiser.inner_dim,
        2 * config.latent_channels,
        patch,
        patch,
    )
    assert len(transformer.transformer_blocks) == config.denoiser.num_layers
    assert len(vae.encoder.down_blocks) == len(config.vae.block_out_channels)
    loaded = VideoModelConfig.from_diffusers(
        name, dict(transformer.config), dict(vae.config), config.schedule, config.text.kind
    )
    assert (loaded.num_frames, loaded.height, loaded.width) == (
        config.num_frames,
        config.height,
        config.width,
    )
    assert loaded.denoiser.architecture() == config.denoiser.architecture()
    assert loaded.vae.architecture() == config.vae.architecture()
    assert (
        loaded.vae.scaling_factor == config.vae.scaling_factor
        and loaded.vae.enable_tiling
        and loaded.vae.enable_slicing
    )
    assert loaded.text == replace(config.text, prompt="")


def test_schedule_kwargs_build_the_cogvideox_ddim_scheduler_and_read_back():
    scheduler = CogVideoXDDIMScheduler(**ScheduleConfig().diffusers_kwargs())
    assert (
        scheduler.config.prediction_type == "v_prediction" and scheduler.config.timestep_spacing == "trailing"
    )
    assert ScheduleConfig.from_diffusers(dict(scheduler.config)) == ScheduleConfig()


def test_architecture_ignores_measured_scaling_and_memory_switches():
    trained = replace(
        TINY_VAE,
        scaling_factor=1.7,
        latents_mean=(0.1,) * 8,
        latents_std=(2.0,) * 8,
        enable_tiling=True,
        enable_slicing=True,
    )
    assert trained != TINY_VAE and trained.architecture() == TINY_VAE.architecture()
    assert replace(TINY_VAE, latent_channels=4).architecture() != TINY_VAE.architecture()
    assert replace(TINY_DENOISER, gradient_checkpointing=True).architecture() == TINY_DENOISER.architecture()
    assert replace(TINY_DENOISER, num_layers=2).architecture() != TINY_DENOISER.architecture()
    assert isinstance(trained.architecture(), VAEConfig) and isinstance(
        TINY_DENOISER.architecture(), DenoiserConfig
    )
