"""The authors' released weights -> a weights folder that `VideoScenePipeline.from_pretrained` opens.

The authors' release is inference-only (docs/method.md) and ships
    base            the first/last-frame interpolation fine-tune of CogVideoX-5B-I2V, a diffusers folder
                    (vae/, transformer/, scheduler/)
    transformer     `model.safetensors`: the distilled transformer's state dict, applied non-strictly over the
                    base transformer
    prompt embeds   `prompt_embeds.pt`: the T5 embedding of the one fixed prompt (the text is not released)
    mvsplat         MVSplat's RealEstate10K checkpoint `re10k.ckpt`, the 3D Gaussian prior
and runs the student once from the render latent noised to a fixed t = 549 (no DDPNet, no guidance), on 49
frames at 480×720 resized from RealEstate10K's 640×360 by stretching.

The folder written here:
    pipeline.json             the base transformer's sample size (49 × 480 × 720 for CogVideoX-5B-I2V),
                              near 1 and far 100 (RealEstate10K), the fixed t, black background, stretch
    prior/                    MVSplat's encoder (importers/mvsplat.py)
    teacher/                  linked to the base folder with the prompt embedding: the multi-step model
    distilled/student/        linked to the base folder, with the distilled transformer weights
    distilled/distill_config.json   the one-step rule: from x₀ʳ noised to t, x̂₀ = √ᾱ·x_t − √(1−ᾱ)·v̂
                              (v-prediction, docs/conventions.md).
                              Our student also applies the consistency boundary scalings c_skip, c_out
                              (σ_data 0.5, timestep scaling 10), which the release omits: at t = 549 they
                              are 8e-9 and 1 − 4e-9, so the outputs agree to float rounding.
    distilled/ddpnet.safetensors    only when a DDPNet is given (the release has none)
    import.json               the source files, and the transformer's missing and unexpected tensor names
The base model is linked by absolute path, not copied (it is tens of GB): keep it where it was.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from accelerate import init_empty_weights
from diffusers import CogVideoXTransformer3DModel

from videoscene.distill.config import CONFIG_FORMAT, LeapConfig
from videoscene.distill.student import CONFIG_FILE, STUDENT_FOLDER
from videoscene.errors import InputError
from videoscene.importers.mvsplat import load_mvsplat
from videoscene.importers.state_dict import read_state_dict
from videoscene.io_utils import read_json_object, staged_output_dir, write_json_atomic
from videoscene.pipeline import PIPELINE_CONFIG, PipelineConfig
from videoscene.policy.ddpnet import WEIGHTS_FILE as DDPNET_FILE
from videoscene.policy.ddpnet import DDPNet
from videoscene.prior.config import encoder_config
from videoscene.video.config import ScheduleConfig, VideoModelConfig
from videoscene.video.models import (
    VideoBackbone,
    load_prompt_embedding_file,
    match_transformer_weights,
)

AUTHORS_TIMESTEP = 549  # the release's noise_timestep = 550, of which it uses t − 1
REALESTATE10K_NEAR, REALESTATE10K_FAR = 1.0, 100.0
PREFIX = "transformer."  # a state dict saved from the whole pipeline names the transformer's tensors so


@dataclass(frozen=True)
class ImportReport:
    out: Path
    loaded: int  # transformer tensors taken from the distilled state dict
    missing: list[str]  # the transformer's tensors the state dict lacks: they keep the base's values
    unexpected: list[str]  # the state dict's tensors the transformer lacks: ignored
    num_frames: int
    height: int
    width: int
    timestep: int


def base_model_config(base: Path) -> tuple[VideoModelConfig, dict]:
    """Our view of a diffusers CogVideoX I2V folder, read from its configs alone (nothing is loaded)."""
    if not (base / "vae" / "config.json").is_file() or not (base / "transformer" / "config.json").is_file():
        raise InputError(
            f"--base {base} is not a diffusers CogVideoX I2V folder (needs vae/config.json and "
            "transformer/config.json); give the CogvideoX-Interpolation or CogVideoX-5b-I2V folder"
        )
    transformer = read_json_object(base / "transformer" / "config.json", "transformer config")
    vae = read_json_object(base / "vae" / "config.json", "VAE config")
    scheduler_file = base / "scheduler" / "scheduler_config.json"
    schedule = (
        ScheduleConfig.from_diffusers(read_json_object(scheduler_file, "scheduler config"))
        if scheduler_file.is_file()
        else ScheduleConfig()
    )
    try:
        config = VideoModelConfig.from_diffusers(base.name, transformer, vae, schedule, "file")
    except KeyError as error:
        raise InputError(f"--base {base}: its configs lack {error}; is it a CogVideoX folder?") from None
    if transformer.get("in_channels") != 2 * config.latent_channels:
        raise InputError(
            f"--base {base}: transformer in_channels={transformer.get('in_channels')} is not 2 × the VAE's "
            f"{config.latent_channels} latent channels; give an image-to-video (first/last-frame) model"
        )
    return config, transformer


def import_official(
    base: str | Path,
    transformer: str | Path,
    prompt_embeds: str | Path,
    mvsplat: str | Path,
    out: str | Path,
    timestep: int = AUTHORS_TIMESTEP,
    ddpnet: str | Path | None = None,
    mvsplat_config: str = "mvsplat",
    overwrite: bool = False,
) -> ImportReport:
    """Check every input, then write the weights folder atomically (module docstring)."""
    # 1. The base model's architecture and operating size, from its configs
    base = Path(base).resolve()
    config, transformer_config = base_model_config(base)
    last = config.schedule.num_train_timesteps - 1
    if not 1 <= timestep <= last:
        raise InputError(f"--timestep must be a whole number from 1 to {last}, got {timestep}")

    # 2. The prompt embedding must fit the transformer's text input
    prompt = load_prompt_embedding_file(prompt_embeds)
    if prompt.shape[1:] != (config.text.num_tokens, config.text.dim):
        raise InputError(
            f"--prompt-embeds {prompt_embeds} has shape {tuple(prompt.shape[1:])}; the base transformer takes"
            f" ({config.text.num_tokens}, {config.text.dim})"
        )

    # 3. The distilled transformer against the base transformer's names and shapes (built on the meta device)
    state = read_state_dict(transformer, "the distilled transformer's model.safetensors")
    if all(key.startswith(PREFIX) for key in state):
        state = {key[len(PREFIX) :]: value for key, value in state.items()}
    with init_empty_weights():
        empty = CogVideoXTransformer3DModel.from_config(transformer_config)
    common, missing, unexpected = match_transformer_weights(empty.state_dict(), state, transformer)

    # 4. The prior and the optional DDPNet load before anything is written
    prior = load_mvsplat(mvsplat, encoder_config(mvsplat_config))
    if ddpnet is not None:
        DDPNet.load(ddpnet)  # a file that is not a DDPNet is refused before anything is written

    # 5. Write the folder
    pipeline = PipelineConfig(
        num_frames=config.num_frames,
        height=config.height,
        width=config.width,
        near=REALESTATE10K_NEAR,
        far=REALESTATE10K_FAR,
        fallback_timestep=timestep,
        background=(0.0, 0.0, 0.0),
        resize="stretch",
    )
    with staged_output_dir(out, overwrite) as stage:
        write_json_atomic(stage / PIPELINE_CONFIG, asdict(pipeline))
        (stage / "prior").mkdir()
        prior.save(stage / "prior")
        VideoBackbone.save_linked(stage / "teacher", base, prompt)
        distilled = stage / "distilled"
        distilled.mkdir()
        VideoBackbone.save_linked(
            distilled / STUDENT_FOLDER, base, prompt, {key: state[key] for key in common}
        )
        write_json_atomic(
            distilled / CONFIG_FILE,
            {
                "format": CONFIG_FORMAT,
                "leap": asdict(LeapConfig()),
                "imported_from": str(Path(transformer).resolve()),
            },
        )
        if ddpnet is not None:
            shutil.copyfile(ddpnet, distilled / DDPNET_FILE)
        sources = {
            "base": str(base),
            "transformer": str(Path(transformer).resolve()),
            "prompt_embeds": str(Path(prompt_embeds).resolve()),
            "mvsplat": str(Path(mvsplat).resolve()),
            "ddpnet": None if ddpnet is None else str(Path(ddpnet).resolve()),
        }
        write_json_atomic(
            stage / "import.json",
            {"sources": sources, "loaded": len(common), "missing": missing, "unexpected": unexpected},
        )
    return ImportReport(
        Path(out), len(common), missing, unexpected, config.num_frames, config.height, config.width, timestep
    )
