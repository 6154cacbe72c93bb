"""VideoBackbone: real diffusers CogVideoX components at toy size, plus the paper architecture on the meta
device."""

from dataclasses import replace

import pytest
import torch
from shape_checks import unchecked
from weights_factory import SMALL_VIDEO, tiny_video_config

from videoscene.errors import VideoSceneError
from videoscene.video.config import PRESETS, preset
from videoscene.video.models import (
    VAE_TILE_LATENTS,
    VideoBackbone,
    load_prompt_embedding_file,
    rope_crop_region,
    set_vae_tiles,
)
from videoscene.video.schedule import NoiseSchedule


@pytest.mark.parametrize("frames", [9, 17])
def test_encode_decode_shapes_round_trip_the_frame_count(frames):
    torch.manual_seed(0)
    model = VideoBackbone.build(PRESETS["tiny"]).eval()
    video = torch.rand(1, frames, 3, 64, 96)
    with torch.no_grad():
        latents = model.encode_video(video, generator=torch.Generator().manual_seed(0))
        decoded = model.decode_latents(latents)
    assert latents.shape == (1, (frames - 1) // 2 + 1, 8, 32, 48)  # 2× time, 2× space
    assert decoded.shape == video.shape
    assert decoded.min() >= 0 and decoded.max() <= 1


def test_encode_rejects_frame_counts_that_do_not_decode_back(video_backbone):
    with torch.no_grad():
        assert video_backbone.encode_video(torch.rand(2, 1, 3, 32, 48)).shape == (2, 1, 8, 16, 24)
        with pytest.raises(VideoSceneError, match="4k\\+1"):
            video_backbone.encode_video(torch.rand(1, 11, 3, 32, 48))
        # 2x VAE times 4x4 patches: sides must be multiples of 8, and the message names the nearest sizes.
        with pytest.raises(VideoSceneError, match="divisible by 8 .*e.g. 24x48 or 32x48"):
            video_backbone.encode_video(torch.rand(1, 9, 3, 30, 48))
        with pytest.raises(VideoSceneError, match="divisible by 8"):
            video_backbone.encode_video(torch.rand(1, 9, 3, 36, 52))  # latent 18x26: no whole patches


def test_tiled_vae_stitches_a_size_that_is_no_multiple_of_the_tile_step_back_to_whole_latents():
    """Issue 16: diffusers derives its tiles from the VAE's sample size and stitched a model built at 240x368
    from 31x47 latents (tiles stepping fewer pixels than the latents they keep). Here tiles of 4x6 latents
    (8x12 pixels, stepping 6x8) cut 32x48 into 6 rows, the last one partial, and 6 columns."""
    height, width = 32, 48
    torch.manual_seed(0)
    config = tiny_video_config(9, height, width)
    model = VideoBackbone.build(replace(config, vae=replace(config.vae, enable_tiling=True))).eval()
    assert model.vae.tile_sample_min_height == VAE_TILE_LATENTS[0] * 2  # the same tiles at every size
    set_vae_tiles(model.vae, (4, 6), (1 / 4, 1 / 3))
    video = torch.rand(1, 1, 3, height, width)
    with torch.no_grad():
        tiled = model.encode_video(video, sample_posterior=False)
        with model.vae_tiling(False):
            whole = model.encode_video(video, sample_posterior=False)
        assert model.vae.use_tiling, "the setting is restored after the block"
        decoded = model.decode_latents(tiled)
    assert tiled.shape == whole.shape == (1, 1, 8, height // 2, width // 2)
    assert not torch.equal(tiled, whole), "the tiles were not used"
    assert decoded.shape == video.shape
    with pytest.raises(VideoSceneError, match="whole number of latents"):
        set_vae_tiles(model.vae, (4, 6), (1 / 6, 1 / 5))  # a 0-latent overlap: 13-pixel steps, 4-latent tiles


def test_posterior_sampling_is_seeded(video_backbone):
    video = torch.rand(1, 9, 3, 32, 48)
    with torch.no_grad():
        a = video_backbone.encode_video(video, generator=torch.Generator().manual_seed(3))
        b = video_backbone.encode_video(video, generator=torch.Generator().manual_seed(3))
        c = video_backbone.encode_video(video, generator=torch.Generator().manual_seed(4))
        mean = video_backbone.encode_video(video, sample_posterior=False)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c) and not torch.equal(a, mean)


def test_predict_v_shape_and_dependence_on_the_condition(video_backbone):
    noisy = torch.randn(2, 3, 8, 8, 12)
    condition = torch.randn(2, 3, 8, 8, 12)
    with torch.no_grad():
        v = video_backbone.predict_v(noisy, condition, torch.tensor([100, 900]))
        v_other = video_backbone.predict_v(noisy, torch.zeros_like(condition), torch.tensor([100, 900]))
        v_scalar_t = video_backbone.predict_v(noisy[:1], condition[:1], 100)
    assert v.shape == noisy.shape and v.dtype == torch.float32
    assert not torch.allclose(v, v_other)
    torch.testing.assert_close(v_scalar_t, v[:1], atol=1e-5, rtol=1e-5)
    with unchecked(), pytest.raises(VideoSceneError, match="differ"):
        video_backbone.predict_v(noisy, condition[:, :2], 100)


def test_rotary_embedding_covers_every_video_token(video_backbone):
    cos, sin = video_backbone.rotary_embedding(3, 16, 24)  # 4×4 patches
    assert cos.shape == sin.shape == (3 * 4 * 6, 32)
    # Grid equal to the base grid → crop is the whole grid; a wider grid fills the base width, centred.
    assert rope_crop_region(30, 45, 30, 45) == ((0, 0), (30, 45))
    assert rope_crop_region(4, 12, 4, 6) == ((1, 0), (3, 6))


def test_bf16_forward_is_close_to_fp32():
    # CogVideoX's 2×2 patches: on CPU, PyTorch 2.13's bf16 Conv2d with the tiny preset's 4×4 stride-4 patch
    # kernel is wrong (relative error 1.1 against fp32, measured on a bare nn.Conv2d), so bf16 is for CUDA.
    torch.manual_seed(0)
    patch_2 = replace(SMALL_VIDEO, denoiser=replace(SMALL_VIDEO.denoiser, patch_size=2))
    model = VideoBackbone.build(patch_2).eval()
    noisy, condition = torch.randn(1, 5, 8, 16, 24), torch.randn(1, 5, 8, 16, 24)
    with torch.no_grad():
        reference = model.predict_v(noisy, condition, 500)
        model.transformer.to(torch.bfloat16)
        model.prompt_embedding.to(torch.bfloat16)
        half = model.predict_v(noisy, condition, 500)
    assert half.dtype == torch.float32
    assert (half - reference).abs().max() < 0.1 * reference.abs().max()


def test_save_load_round_trip_gives_identical_outputs(video_backbone, tmp_path):
    video_backbone.set_scaling_factor(0.8)
    try:
        video_backbone.save_pretrained(tmp_path / "ckpt")
    finally:
        video_backbone.set_scaling_factor(SMALL_VIDEO.vae.scaling_factor)
    loaded = VideoBackbone.from_pretrained(tmp_path / "ckpt").eval()
    assert loaded.config.vae.scaling_factor == 0.8 and loaded.vae.config.scaling_factor == 0.8
    assert isinstance(loaded.prompt_embedding.value, torch.nn.Parameter)
    video = torch.rand(1, 9, 3, 32, 48)
    with torch.no_grad():
        latents = loaded.encode_video(video, sample_posterior=False)
        torch.testing.assert_close(latents, video_backbone.encode_video(video, sample_posterior=False) * 0.8)
        noisy = torch.randn_like(latents)
        torch.testing.assert_close(
            loaded.predict_v(noisy, latents, 300),
            video_backbone.predict_v(noisy, latents, 300),
            rtol=0,
            atol=0,
        )
    # Same VAE weights, different latent scale: latents scaled by 0.8 decode to the same video.
    with torch.no_grad():
        z = torch.randn(1, 3, 8, 8, 12)
        torch.testing.assert_close(loaded.decode_latents(z * 0.8), video_backbone.decode_latents(z))
    with pytest.raises(VideoSceneError, match="not empty"):
        video_backbone.save_pretrained(tmp_path / "ckpt")


def test_loads_a_diffusers_folder_with_a_prompt_embedding_file(video_backbone, tmp_path):
    folder = tmp_path / "CogVideoX-tiny-I2V"
    video_backbone.vae.save_pretrained(folder / "vae")
    video_backbone.transformer.save_pretrained(folder / "transformer")
    NoiseSchedule().make_solver().save_pretrained(folder / "scheduler")
    prompt = torch.randn(1, 8, 32)
    torch.save(prompt, tmp_path / "prompt_embeds.pt")
    loaded = VideoBackbone.from_pretrained(folder, prompt_embeds_path=tmp_path / "prompt_embeds.pt").eval()
    assert loaded.config.num_frames == 9 and (loaded.config.height, loaded.config.width) == (32, 48)
    assert loaded.config.schedule == SMALL_VIDEO.schedule
    assert loaded.vae.use_tiling and loaded.vae.use_slicing
    noisy, condition = torch.randn(1, 5, 8, 16, 24), torch.randn(1, 5, 8, 16, 24)
    with torch.no_grad():
        expected = video_backbone.predict_v(noisy, condition, 700, prompt_embeds=prompt)
        torch.testing.assert_close(loaded.predict_v(noisy, condition, 700), expected)
    with pytest.raises(VideoSceneError, match="text_encoder"):
        VideoBackbone.from_pretrained(folder)


def test_missing_folders_and_files_give_one_clear_line(tmp_path):
    with pytest.raises(VideoSceneError) as error:
        VideoBackbone.from_pretrained(tmp_path / "CogVideoX-5b-I2V")
    message = str(error.value)
    assert "\n" not in message and "vae/, transformer/ and scheduler/" in message
    with pytest.raises(VideoSceneError, match="not found"):
        load_prompt_embedding_file(tmp_path / "prompt_embeds.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a tensor file")
    with pytest.raises(VideoSceneError, match="cannot read"):
        load_prompt_embedding_file(tmp_path / "bad.pt")


def test_paper_preset_on_the_meta_device_has_the_cogvideox_5b_i2v_layout():
    config = preset("paper")
    with torch.device("meta"):
        model = VideoBackbone.build(config, prompt_embeds=torch.zeros(1, 226, 4096))
    weights = model.transformer.state_dict()
    assert weights["patch_embed.proj.weight"].shape == (3072, 32, 2, 2)
    assert weights["patch_embed.text_proj.weight"].shape == (3072, 4096)
    assert weights["patch_embed.pos_embedding"].shape == (1, 226 + 13 * 30 * 45, 3072)  # learned positions
    assert weights["time_embedding.linear_1.weight"].shape == (512, 3072)
    assert weights["proj_out.weight"].shape == (2 * 2 * 16, 3072)
    assert weights["transformer_blocks.41.attn1.to_q.weight"].shape == (3072, 3072)
    assert "transformer_blocks.42.attn1.to_q.weight" not in weights
    assert len(model.transformer.transformer_blocks) == 42
    count = sum(p.numel() for p in model.transformer.parameters())
    assert 5.4e9 < count < 5.7e9
    vae = model.vae.state_dict()
    assert vae["encoder.conv_in.conv.weight"].shape == (128, 3, 3, 3, 3)
    assert vae["encoder.conv_out.conv.weight"].shape == (
        32,
        512,
        3,
        3,
        3,
    )  # mean and log-variance of 16 channels
    assert vae["decoder.conv_in.conv.weight"].shape == (512, 16, 3, 3, 3)
    assert vae["decoder.conv_out.conv.weight"].shape == (3, 128, 3, 3, 3)
    assert model.vae.config.scaling_factor == 0.7 and model.vae.use_tiling and model.vae.use_slicing
    assert (config.latent_frames, config.latent_height, config.latent_width) == (13, 60, 90)
    cos, _ = model.rotary_embedding(13, 60, 90)
    assert cos.shape == (13 * 30 * 45, 64)
    with pytest.raises(VideoSceneError, match="learned positions"):
        model.predict_v(
            torch.zeros(1, 13, 16, 30, 46, device="meta"), torch.zeros(1, 13, 16, 30, 46, device="meta"), 1
        )
