"""Training the teacher: v-loss goes down, resuming (with EMA) equals not stopping, the attention subset
trains only attention, validation writes an mp4 and scores the cross-fade correctly, bad inputs are one-line
errors. Uses the 9-frame 16×24 micro model and moving-pattern scenes of test_video_train_vae."""

import json
from dataclasses import replace

import imageio.v3 as iio
import pytest
import torch
from safetensors.torch import load_file, save_file
from test_video_train_vae import micro_data, micro_vae_config  # noqa: F401  (fixtures)

from videoscene.cli import main as cli_main
from videoscene.errors import VideoSceneError
from videoscene.video.config import VideoModelConfig, preset
from videoscene.video.models import ATTENTION_PARAMETERS, VideoBackbone
from videoscene.video.schedule import NoiseSchedule
from videoscene.video.train_teacher import (
    TeacherTrainConfig,
    build_latent_cache,
    build_teacher,
    check_same_architecture,
    draw_batch,
    evaluate_interpolation,
    linear_crossfade,
    train_teacher,
)
from videoscene.video.train_vae import held_out_clips, train_vae

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained_vae(micro_data, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("vae")
    train_vae(micro_vae_config(micro_data, steps=3), out)
    return out / "vae"


def micro_teacher_config(root, vae, tmp_path, **changes) -> TeacherTrainConfig:
    values = dict(
        video=str(root / "micro_video.json"),
        vae=vae and str(vae),
        train_data=[str(root / "train")],
        validation_data=[str(root / "test")],
        max_stride=1,
        clips_per_scene=2,
        cache_dir=str(tmp_path / "cache"),
        batch_size=2,
        steps=4,
        lr=2e-3,
        warmup_steps=1,
        checkpoint_every=2,
        validate_every=1000,
        validation_clips=1,
        validation_steps=2,
        log_every=1,
    )
    values.update(changes)
    return TeacherTrainConfig(**values)


def test_teacher_steps_reduce_the_v_loss_on_a_fixed_batch(micro_data, trained_vae, tmp_path):  # noqa: F811
    config = micro_teacher_config(micro_data, trained_vae, tmp_path)
    backbone = build_teacher(config)
    cache = build_latent_cache(config, backbone.vae)
    batch = draw_batch(
        backbone,
        NoiseSchedule(backbone.config.schedule),
        cache,
        [0, 1, 2],
        torch.Generator().manual_seed(0),
        0.0,
    )
    optimizer = torch.optim.AdamW([p for p in backbone.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for _ in range(10):
        loss = (
            (backbone.predict_v(batch.noisy, batch.condition, batch.timesteps) - batch.v_target)
            .square()
            .mean()
        )
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    assert not any(p.requires_grad for p in backbone.vae.parameters())


def test_teacher_latents_are_standardised_per_channel(micro_data, trained_vae, tmp_path):  # noqa: F811
    config = micro_teacher_config(micro_data, trained_vae, tmp_path)
    backbone = build_teacher(config)
    assert backbone.config.vae.latents_mean is not None
    z = torch.randn(2, 3, 4, 4, 6)
    assert torch.allclose(backbone.denormalize_latents(backbone.normalize_latents(z)), z, atol=1e-5)
    cache = build_latent_cache(config, backbone.vae)
    # The statistics describe posterior samples (this barely trained VAE's posterior is still wide).
    latents = backbone.normalize_latents(cache.mean + cache.std * torch.randn(cache.std.shape))
    per_channel = latents.transpose(0, 2).flatten(1)
    assert (
        per_channel.mean(1).abs().max() < 0.5
        and ((per_channel.std(1) > 0.5) & (per_channel.std(1) < 2)).all()
    )
    # Encoding through the backbone applies the same standardisation.
    clip = held_out_clips(config.validation_data, backbone.config, (1, 1), None, 0)[0]
    encoded = backbone.encode_video(clip[None], sample_posterior=False)
    posterior = (
        backbone.vae.encode(clip[None].permute(0, 2, 1, 3, 4) * 2 - 1)
        .latent_dist.mode()
        .permute(0, 2, 1, 3, 4)
    )
    assert torch.allclose(encoded, backbone.normalize_latents(posterior), atol=1e-5)


def test_latent_cache_is_built_once_and_holds_every_clip(micro_data, trained_vae, tmp_path):  # noqa: F811
    config = micro_teacher_config(micro_data, trained_vae, tmp_path)
    backbone = build_teacher(config)
    cache = build_latent_cache(config, backbone.vae)
    assert (
        len(cache) == 3 * 2
        and cache.mean.shape[1:] == (3, 4, 4, 6)
        and cache.ends.shape[1:] == (2, 3, 16, 24)
    )
    assert (cache.std > 0).all()
    again = build_latent_cache(config, backbone.vae)
    assert torch.equal(cache.mean, again.mean) and torch.equal(cache.ends, again.ends)
    assert len(list((tmp_path / "cache").iterdir())) == 1


def test_resume_with_ema_continues_identically(micro_data, trained_vae, tmp_path):  # noqa: F811
    config = micro_teacher_config(micro_data, trained_vae, tmp_path, ema_decay=0.9, condition_dropout=0.3)
    train_teacher(config, tmp_path / "straight")
    train_teacher(config, tmp_path / "resumed", stop_after=2)
    assert not (tmp_path / "resumed" / "teacher").exists()
    train_teacher(config, tmp_path / "resumed", resume=True)
    for name in ("transformer", "prompt_embedding"):
        a = load_file(tmp_path / "straight" / "teacher" / f"{name}.safetensors")
        b = load_file(tmp_path / "resumed" / "teacher" / f"{name}.safetensors")
        assert all(torch.equal(a[key], b[key]) for key in a)
    # The export is the EMA, not the last online weights.
    online = load_file(tmp_path / "straight" / "checkpoints" / "step_0000004" / "transformer.safetensors")
    exported = load_file(tmp_path / "straight" / "teacher" / "transformer.safetensors")
    assert any(not torch.equal(online[key], exported[key]) for key in online)

    teacher = VideoBackbone.from_pretrained(tmp_path / "straight" / "teacher")
    vae = load_file(trained_vae / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(teacher.vae.state_dict()[key], vae[key]) for key in vae)
    assert teacher.scaling_factor == pytest.approx(
        json.loads((trained_vae / "config.json").read_text())["scaling_factor"]
    )
    run = json.loads((tmp_path / "straight" / "run.json").read_text())
    assert run["held_out"]["clips"] == 1 and (tmp_path / "straight" / "validation" / "final.mp4").is_file()


def test_attention_subset_trains_only_attention(micro_data, trained_vae, tmp_path):  # noqa: F811
    config = micro_teacher_config(micro_data, trained_vae, tmp_path, trainable="attention", steps=2)
    train_teacher(config, tmp_path / "run")
    initial = build_teacher(config).transformer.state_dict()
    trained = load_file(tmp_path / "run" / "teacher" / "transformer.safetensors")
    changed = {key for key in trained if not torch.equal(trained[key], initial[key])}
    assert changed and all(ATTENTION_PARAMETERS.match(key) for key in changed)


def test_validation_writes_an_mp4_and_scores_the_crossfade(micro_data, trained_vae, tmp_path):  # noqa: F811
    config = micro_teacher_config(micro_data, trained_vae, tmp_path)
    backbone = build_teacher(config)
    clips = held_out_clips(config.validation_data, backbone.config, (1, 1), None, 0)
    # A clip that *is* a cross-fade: the baseline is exact there (PSNR at the 1e-10 MSE floor).
    first, last = clips[0][0], clips[0][-1]
    fade = linear_crossfade(first[None], last[None], 9)[0]
    assert torch.equal(fade[0], first) and torch.allclose(fade[-1], last)
    scores = evaluate_interpolation(backbone, [fade], num_steps=2, video_path=tmp_path / "v.mp4")
    assert scores["crossfade_psnr"] == pytest.approx(100.0) and scores["teacher_psnr"] < 60
    video = iio.imread(tmp_path / "v.mp4")
    assert video.shape == (9, 16, 3 * 24, 3)


def test_init_teacher_fine_tunes_the_given_model_in_either_folder_format(
    micro_data,  # noqa: F811
    trained_vae,
    tmp_path,
):
    train_teacher(micro_teacher_config(micro_data, trained_vae, tmp_path, steps=2), tmp_path / "first")
    first = VideoBackbone.from_pretrained(tmp_path / "first" / "teacher")
    # The same weights as a diffusers CogVideoX I2V folder (as CogVideoX-5b-I2V ships) + a prompt embedding
    # file.
    diffusers_folder = tmp_path / "as_diffusers"
    first.vae.save_pretrained(diffusers_folder / "vae")
    # A diffusers folder loads with VAE tiling on, tiles sized sample_height/2 × sample_width/2: give the
    # config CogVideoX's 480×720 so that the 16×24 micro clips are encoded whole, as the other folder does.
    vae_config = json.loads((diffusers_folder / "vae" / "config.json").read_text())
    (diffusers_folder / "vae" / "config.json").write_text(
        json.dumps({**vae_config, "sample_height": 480, "sample_width": 720})
    )
    first.transformer.save_pretrained(diffusers_folder / "transformer")
    save_file(
        {"prompt_embeds": first.prompt_embedding(1).detach().contiguous()},
        diffusers_folder / "prompt.safetensors",
    )
    for folder, prompt in (
        (tmp_path / "first" / "teacher", None),
        (diffusers_folder, diffusers_folder / "prompt.safetensors"),
    ):
        config = micro_teacher_config(
            micro_data,
            None,
            tmp_path,
            init_teacher=str(folder),
            init_prompt_embeds=prompt and str(prompt),
            lr=1e-9,
            steps=2,
        )
        start = build_teacher(config)
        for name in ("vae", "transformer"):
            reference = getattr(first, name).state_dict()
            assert all(
                torch.equal(value, reference[key]) for key, value in getattr(start, name).state_dict().items()
            )
        assert not any(p.requires_grad for p in start.vae.parameters())
    # Fine-tuning continues from those weights (at lr 1e-9 it barely moves); a new teacher starts elsewhere.
    train_teacher(config, tmp_path / "tuned")
    tuned = load_file(tmp_path / "tuned" / "teacher" / "transformer.safetensors")
    reference = first.transformer.state_dict()
    assert all(torch.allclose(tuned[key], reference[key], atol=1e-6) for key in tuned)
    fresh = build_teacher(micro_teacher_config(micro_data, trained_vae, tmp_path)).transformer.state_dict()
    assert any(not torch.allclose(fresh[key], reference[key], atol=1e-3) for key in fresh)


def test_init_teacher_must_match_the_video_config(micro_data, trained_vae, tmp_path):  # noqa: F811
    from test_video_train_vae import REPO_ROOT

    with pytest.raises(VideoSceneError, match="not both"):
        micro_teacher_config(micro_data, trained_vae, tmp_path, init_teacher=str(tmp_path))
    with pytest.raises(VideoSceneError, match="not both"):
        micro_teacher_config(micro_data, None, tmp_path)
    with pytest.raises(VideoSceneError, match="set init_teacher too"):
        micro_teacher_config(micro_data, trained_vae, tmp_path, init_prompt_embeds="p.safetensors")
    bundled = REPO_ROOT / "src" / "videoscene" / "weights" / "tiny" / "teacher"
    with pytest.raises(
        VideoSceneError, match="differs from the video config in its clip size and VAE and transformer"
    ):
        build_teacher(micro_teacher_config(micro_data, None, tmp_path, init_teacher=str(bundled)))


def test_bad_inputs_are_one_line_errors(micro_data, trained_vae, tmp_path, capsys):  # noqa: F811
    with pytest.raises(VideoSceneError, match="trainable"):
        micro_teacher_config(micro_data, trained_vae, tmp_path, trainable="mlp")
    with pytest.raises(VideoSceneError, match="trained VAE folder"):
        build_teacher(micro_teacher_config(micro_data, tmp_path / "nowhere", tmp_path))
    config_path = tmp_path / "teacher.json"
    config_path.write_text(json.dumps({"vae": str(trained_vae), "batch": 3}))
    assert cli_main(["train", "teacher", "--config", str(config_path), "--out", str(tmp_path / "bad")]) == 2
    error = capsys.readouterr().err.strip()
    assert "unknown keys" in error and "\n" not in error


def test_repository_config_parses(monkeypatch):
    from test_video_train_vae import REPO_ROOT

    monkeypatch.chdir(REPO_ROOT)
    config = TeacherTrainConfig.load("configs/teacher_tiny_train.json")
    assert config.video_config.name == "tiny" and config.trainable == "all"
    finetune = TeacherTrainConfig.load("configs/teacher_tiny_finetune.json")
    assert finetune.init_teacher == "src/videoscene/weights/tiny/teacher" and finetune.vae is None
    # The paper's warm-up (its implementation details): CogvideoX-Interpolation, attention layers, 900
    # steps, lr 3e-5, batch 2.
    warmup = TeacherTrainConfig.load("configs/teacher_paper_warmup.json")
    assert warmup.video_config.name == "paper" and warmup.trainable == "attention" and warmup.vae is None
    assert (warmup.steps, warmup.lr, warmup.batch_size) == (900, 3e-5, 2)


def test_a_cogvideox_5b_i2v_folder_passes_the_paper_preset_check():
    """What `VideoBackbone.from_pretrained` reads from a CogVideoX-5b-I2V folder's configs (here: the configs
    diffusers builds from the paper preset) is the paper preset's architecture."""
    paper = preset("paper")
    loaded = VideoModelConfig.from_diffusers(
        "CogVideoX-5b-I2V", paper.transformer_kwargs(), paper.vae_kwargs(), paper.schedule, "file"
    )
    check_same_architecture(loaded, paper, "CogVideoX-5b-I2V")
    assert (loaded.num_frames, loaded.height, loaded.width, loaded.latent_channels) == (49, 480, 720, 16)
    with pytest.raises(VideoSceneError, match="in its transformer"):
        check_same_architecture(
            replace(loaded, denoiser=replace(loaded.denoiser, num_layers=30)), paper, "CogVideoX-2b"
        )
