"""`videoscene weights import-official` on small random stand-ins of the authors' release: a
CogVideoX-I2V-shaped diffusers base folder, a distilled transformer state dict (one tensor missing, one
extra), a prompt embedding `.pt` and a Lightning MVSplat checkpoint. The folder it writes runs `videoscene
generate`, and its one-step output equals a literal transcription of the release's inference steps (render
latent → noise to t = 549 → one transformer call → x̂₀ → decode) written with diffusers' classes alone, on
the same weights, noise and inputs."""

import json
from dataclasses import replace

import pytest
import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from safetensors.torch import load_file, save_file
from weights_factory import lightning_checkpoint, tiny_video_config

from videoscene.cli import main
from videoscene.pipeline import VideoScenePipeline
from videoscene.prior.config import TINY
from videoscene.prior.encoder import GaussianEncoder
from videoscene.types import Cameras

pytestmark = pytest.mark.usefixtures("one_thread")

FRAMES, HEIGHT, WIDTH = 9, 32, 48
LEFT_OUT = "norm_final.weight"  # a tensor the distilled state dict lacks: it keeps the base's value
EXTRA = "lora.extra.weight"  # a tensor the transformer lacks: ignored


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """Random stand-ins of the release's four files, in their formats."""
    from videoscene.video.models import VideoBackbone

    root = tmp_path_factory.mktemp("release")
    base_config = tiny_video_config(FRAMES, HEIGHT, WIDTH)
    # CogVideoX-5B-I2V compresses 4× in time, patches 2×2 and has learned positions beside the 3D RoPE: the
    # stand-in does the same.
    config = replace(
        base_config,
        vae=replace(base_config.vae, block_out_channels=(16, 32, 32), temporal_compression_ratio=4),
        denoiser=replace(base_config.denoiser, patch_size=2, use_learned_positional_embeddings=True),
    )
    torch.manual_seed(0)
    base = VideoBackbone.build(config)
    # CogVideoX-5B-I2V's VAE config says 480×720, which sets its tiles (half of that): no tiling here.
    vae = AutoencoderKLCogVideoX(**{**config.vae_kwargs(), "sample_height": 480, "sample_width": 720})
    vae.load_state_dict(base.vae.state_dict())
    vae.save_pretrained(root / "base" / "vae")
    base.transformer.save_pretrained(root / "base" / "transformer")
    schedule = config.schedule
    CogVideoXDDIMScheduler(
        num_train_timesteps=schedule.num_train_timesteps,
        beta_start=schedule.beta_start,
        beta_end=schedule.beta_end,
        beta_schedule=schedule.beta_schedule,
        rescale_betas_zero_snr=True,
        prediction_type="v_prediction",
        timestep_spacing="trailing",
        clip_sample=False,
        set_alpha_to_one=True,
    ).save_pretrained(root / "base" / "scheduler")
    distilled = CogVideoXTransformer3DModel(**config.transformer_kwargs()).state_dict()
    del distilled[LEFT_OUT]
    save_file({**distilled, EXTRA: torch.zeros(3)}, root / "model.safetensors")
    torch.save(0.5 * torch.randn(1, config.text.num_tokens, config.text.dim), root / "prompt_embeds.pt")
    lightning_checkpoint(root / "re10k.ckpt", GaussianEncoder(TINY).state_dict())
    return root


def import_argv(release, out, *extra):
    return [
        "weights",
        "import-official",
        "--base",
        str(release / "base"),
        "--transformer",
        str(release / "model.safetensors"),
        "--prompt-embeds",
        str(release / "prompt_embeds.pt"),
        "--mvsplat",
        str(release / "re10k.ckpt"),
        "--mvsplat-config",
        "tiny",
        "--out",
        str(out),
        *extra,
    ]


@pytest.fixture(scope="module")
def imported(release):
    out = release / "weights"
    assert main(import_argv(release, out)) == 0
    return out


def two_views():
    from videoscene.data.synthetic import render_scene

    frames, extrinsics, intrinsics, _ = render_scene(5, 0, 9, HEIGHT, WIDTH)
    images = torch.as_tensor(frames[[0, 8]]).permute(0, 3, 1, 2).float() / 255
    cameras = Cameras(
        torch.as_tensor(extrinsics[[0, 8]]).float(), torch.as_tensor(intrinsics[[0, 8]]).float()
    )
    return images, cameras


def test_import_writes_a_complete_folder_and_reports_the_keys(imported, release, capsys):
    pipeline = json.loads((imported / "pipeline.json").read_text())
    assert (pipeline["num_frames"], pipeline["height"], pipeline["width"]) == (FRAMES, HEIGHT, WIDTH)
    assert (pipeline["fallback_timestep"], pipeline["near"], pipeline["far"]) == (549, 1.0, 100.0)
    assert pipeline["resize"] == "stretch"
    report = json.loads((imported / "import.json").read_text())
    assert report["missing"] == [LEFT_OUT] and report["unexpected"] == [EXTRA]
    link = json.loads((imported / "distilled" / "student" / "base_model.json").read_text())
    assert (
        link["base"] == str((release / "base").resolve()) and link["transformer"] == "transformer.safetensors"
    )
    assert not (imported / "distilled" / "ddpnet.safetensors").exists()
    student = load_file(imported / "distilled" / "student" / "transformer.safetensors")
    assert EXTRA not in student and LEFT_OUT not in student


def test_the_linked_student_has_the_distilled_weights_and_the_base_for_the_rest(imported, release):
    pipe = VideoScenePipeline.from_pretrained(imported)
    distilled = load_file(release / "model.safetensors")
    base = CogVideoXTransformer3DModel.from_pretrained(release / "base" / "transformer").state_dict()
    student = pipe.distilled.student.transformer.state_dict()
    teacher = pipe.teacher.transformer.state_dict()
    name = "transformer_blocks.0.attn1.to_q.weight"
    assert torch.equal(student[name], distilled[name]) and torch.equal(teacher[name], base[name])
    assert not torch.equal(student[name], teacher[name])
    assert torch.equal(student[LEFT_OUT], base[LEFT_OUT])
    prompt = torch.load(release / "prompt_embeds.pt", weights_only=True)
    assert torch.equal(pipe.distilled.student.prompt_embedding.value, prompt)
    assert pipe.distilled.ddpnet is None


def authors_one_step(release, render, first, last, timestep, seed):
    """The release's inference steps on a render, written with diffusers' classes and nothing of ours:
    6b encode the render (posterior sample × scaling factor); 6c noise-augment the two views in pixel space
    with one σ = exp(N(−3, 0.5²)) and encode each; 6d condition [first, zeros, last]; 6e x_t = √ᾱ·x₀ʳ +
    √(1−ᾱ)·ε; 6f [x_t ‖ condition] on channels; 6g 3D RoPE of the token grid; 6h one transformer call, no
    guidance; 6i x̂₀ from the scheduler's get_velocity with its arguments swapped, as the release does; 6j
    divide by the scaling factor and decode. The random draws come from one generator in the order our
    pipeline draws them (the release draws from the global RNG)."""
    base = release / "base"
    vae = AutoencoderKLCogVideoX.from_pretrained(base / "vae")
    transformer = CogVideoXTransformer3DModel.from_pretrained(base / "transformer")
    transformer.load_state_dict(load_file(release / "model.safetensors"), strict=False)
    scheduler = CogVideoXDDIMScheduler.from_pretrained(base / "scheduler")
    prompt_embeds = torch.load(release / "prompt_embeds.pt", weights_only=True)
    scale = vae.config.scaling_factor
    generator = torch.Generator().manual_seed(seed)
    t = torch.tensor([timestep])
    with torch.no_grad():
        video = render[None].permute(0, 2, 1, 3, 4) * 2 - 1  # [1, 3, F, H, W]
        x0 = (vae.encode(video).latent_dist.sample(generator=generator) * scale).permute(0, 2, 1, 3, 4)
        sigma = torch.exp(torch.randn((1,), generator=generator) * 0.5 - 3)
        images = torch.stack([first, last])[None] * 2 - 1
        images = images + sigma * torch.randn(images.shape, generator=generator)
        image_latents = vae.encode(images[0][:, :, None]).latent_dist.sample(generator=generator) * scale
        image_latents = image_latents.permute(0, 2, 1, 3, 4)  # [2, 1, C, h, w]
        frames, channels, height, width = x0.shape[1:]
        zeros = torch.zeros(1, frames - 2, channels, height, width)
        condition = torch.cat([image_latents[:1], zeros, image_latents[1:]], dim=1)
        noise = torch.randn(x0.shape, generator=generator)
        x_t = scheduler.add_noise(x0, noise, t)
        hidden_states = torch.cat([x_t, condition], dim=2)
        patch = transformer.config.patch_size
        grid = (height // patch, width // patch)  # the base grid itself: the crop region is all of it
        rotary = get_3d_rotary_pos_embed(
            transformer.config.attention_head_dim, ((0, 0), grid), grid, frames, device="cpu"
        )
        v = transformer(
            hidden_states=hidden_states,
            encoder_hidden_states=prompt_embeds,
            timestep=t,
            image_rotary_emb=rotary,
            return_dict=False,
        )[0]
        x0_hat = scheduler.get_velocity(v, x_t, t)
        pixels = vae.decode((x0_hat / scale).permute(0, 2, 1, 3, 4)).sample
    return ((pixels + 1) / 2).clamp(0, 1).permute(0, 2, 1, 3, 4)[0]


def test_the_one_step_output_equals_the_authors_inference_steps(imported, release):
    pipe = VideoScenePipeline.from_pretrained(imported)
    images, cameras = two_views()
    output = pipe(images, cameras, timestep="auto", seed=7)
    assert output.timestep == 549 and output.method == "student"
    reference = authors_one_step(release, output.coarse_frames, images[0], images[1], 549, seed=7)
    # Float rounding only: our VAE runs its 3D convolutions through oneDNN on CPU, and our student applies
    # the consistency boundary scalings (c_skip = 8e-9 at t = 549) that the release omits.
    assert (output.frames - reference).abs().max() < 1e-4
    # The comparison is sharp: another seed draws other noise and gives another video.
    other = authors_one_step(release, output.coarse_frames, images[0], images[1], 549, seed=8)
    assert (output.frames - other).abs().max() > 1e-2


def test_generate_runs_the_imported_folder(imported, tmp_path):
    from test_pipeline import write_inputs

    images, cameras = two_views()
    paths, cams = write_inputs(tmp_path / "in", images, cameras)
    out = tmp_path / "out"
    argv = ["generate", "--images", *paths, "--cameras", cams, "--weights", str(imported), "--out", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["timestep"] == 549 and report["num_frames"] == FRAMES
    assert (out / "video.mp4").is_file() and len(list((out / "frames").iterdir())) == FRAMES


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda r, a: a.__setitem__(a.index("--base") + 1, str(r)),
            "is not a diffusers CogVideoX I2V folder",
        ),
        (lambda r, a: a.__setitem__(a.index("--transformer") + 1, str(r / "re10k.ckpt")), "share no tensor"),
        (lambda r, a: a.__setitem__(a.index("--prompt-embeds") + 1, str(r / "model.safetensors")), "prompt"),
        (lambda r, a: a.extend(["--timestep", "1000"]), "--timestep must be"),
    ],
)
def test_bad_release_files_are_one_line_and_write_nothing(release, tmp_path, capsys, change, message):
    out = tmp_path / "weights"
    argv = import_argv(release, out)
    change(release, argv)
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
