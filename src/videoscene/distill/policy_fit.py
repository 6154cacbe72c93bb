"""DDPNet fitted to a frozen student, on rewards of the output the user sees.

During distillation DDPNet ψ learns beside the student, from the latent error of x̂₀ (Sec. 3.3, Eq. 7). The
pipeline's video is not that latent: it is decoded and, with the render skip, it is
r + S_σ(D(x̂₀) − D(x₀ʳ)) (docs/method.md §3). Where the two disagree on the best t, ψ leaves quality behind,
and for a frozen student every reward can be computed once, ahead of the bandit:

    1. reward table   Q[n, k] = PSNR(output of clip n started at candidate k, ground truth), optionally
                      + w·SSIM in dB − λ·(the SSIM in dB it loses against the clip's coarse render)
                      (`score_table`; one noise draw per clip, shared by its K candidates; kept in the
                      cache folder, so a refit reads it back)
    2. bandit         the distillation's REINFORCE update (`BanditTrainer`), each pull's reward looked up in Q

Space "latent" scores x̂₀ against x₀ (the distillation's reward), "pixel" the decoded x̂₀, "pipeline" the
render-skip output with the low-pass σ of the pipeline's config.

    videoscene policy fit --weights RUN_DIR --out NEW_RUN_DIR --space pipeline --sigma 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm import tqdm

from videoscene.distill.cache import ClipCache, clip_generator, frames_to_float
from videoscene.distill.config import DistillConfig, LeapConfig
from videoscene.distill.leap import Denoiser, latent_mse, one_step_generate
from videoscene.distill.student import CONFIG_FILE, STUDENT_FOLDER, DistilledStudent, load_distilled
from videoscene.errors import VideoSceneError
from videoscene.geometry.image_ops import render_skip
from videoscene.io_utils import read_safetensors, save_safetensors, staged_output_dir, write_json_atomic
from videoscene.metrics.image import ssim
from videoscene.policy.ddpnet import WEIGHTS_FILE, BanditTrainer, DDPNet, PolicyConfig
from videoscene.training.checkpoints import module_fingerprint
from videoscene.video.models import VideoBackbone
from videoscene.video.schedule import NoiseSchedule

logger = logging.getLogger(__name__)

Space = Literal["latent", "pixel", "pipeline"]
SPACES = ("latent", "pixel", "pipeline")
FIT_FILE = "policy_fit.json"
SCORES_FORMAT = "videoscene.policy-scores/2"


def ssim_db(value: Tensor) -> Tensor:
    """SSIM on the decibel footing of PSNR: −10·log10(1 − SSIM)."""
    return -10 * (1 - value.double()).clamp_min(1e-20).log10()


@dataclass
class ScoreTable:
    """Per clip n and candidate k: the MSE of the one-step output and, for frames, its mean SSIM (and the
    coarse render's SSIM per clip)."""

    mse: Float[Tensor, "clips K"]
    ssim: Float[Tensor, "clips K"] | None = None
    render_ssim: Float[Tensor, " clips"] | None = None

    def quality(self, ssim_weight: float = 0.0, floor_weight: float = 0.0) -> Float[Tensor, "clips K"]:
        """The reward in dB: PSNR + w·SSIM_dB − λ·max(0, SSIM_dB(render) − SSIM_dB): SSIM counted with weight
        w, and every dB of SSIM the output loses against the clip's own render charged λ."""
        reward = -10 * self.mse.double().clamp_min(1e-20).log10()
        if ssim_weight == 0 and floor_weight == 0:
            return reward.float()
        if self.ssim is None or self.render_ssim is None:
            raise VideoSceneError("an SSIM reward needs frames: score the pixel or pipeline space")
        output = ssim_db(self.ssim)
        shortfall = (ssim_db(self.render_ssim)[:, None] - output).clamp_min(0)
        return (reward + ssim_weight * output - floor_weight * shortfall).float()


@torch.no_grad()
def score_table(
    student: VideoBackbone,
    cache: ClipCache,
    candidates: Sequence[int],
    leap: LeapConfig,
    seed: int = 0,
    max_clips: int | None = None,
    space: Space = "latent",
    sigma: float = 0.0,
) -> ScoreTable:
    """The one-step student from clip n's render noised to candidate k (same noise for all k), scored in
    `space` (module docstring; `sigma` is the render skip's low-pass, pipeline space only)."""
    if space not in SPACES:
        raise VideoSceneError(f"space must be one of {SPACES}, got {space!r}")
    if space != "latent" and not cache.has_frames:
        raise VideoSceneError(
            f"cache {cache.folder} stores no frames; use space latent or rebuild it with store_frames"
        )
    schedule = NoiseSchedule(student.config.schedule)
    denoiser: Denoiser = student.predict_v
    device = student.device
    count = len(cache) if max_clips is None else min(len(cache), max_clips)
    mse_rows, ssim_rows, render_ssim = [], [], []
    for index in tqdm(range(count), desc=f"scoring ({space})", unit="clip", disable=count < 8):
        clip = cache[index]
        if space == "pipeline" and clip.render_opacity is None:
            raise VideoSceneError(
                f"cache {cache.folder} predates the render's opacity; delete it to rebuild it"
            )
        shape = (len(candidates), *clip.latents.shape)
        noise = (
            torch.randn(clip.latents.shape, generator=clip_generator(seed, index)).expand(shape).to(device)
        )
        result = one_step_generate(
            denoiser,
            schedule,
            clip.render_latents.expand(shape).to(device),
            clip.condition_latents.expand(shape).to(device),
            torch.tensor(candidates, device=device),
            noise,
            leap,
        )
        if space == "latent":
            mse_rows.append(latent_mse(result, clip.latents.expand(shape).to(device)).cpu())
            continue
        video = student.decode_latents(result).cpu()
        coarse, target = frames_to_float(clip.render_frames), frames_to_float(clip.target_frames)
        if space == "pipeline":
            decoded_render = student.decode_latents(clip.render_latents[None].to(device)).cpu()
            opacity = clip.render_opacity[None].float() / 255
            video = render_skip(
                coarse[None].expand_as(video),
                video,
                decoded_render.expand_as(video),
                opacity.expand(video.shape[:2] + video.shape[-2:]),
                sigma,
            )
        mse_rows.append((video - target).square().flatten(1).mean(dim=1))
        ssim_rows.append(ssim(video, target.expand_as(video)).mean(dim=1))
        render_ssim.append(ssim(coarse, target).mean())
    if space == "latent":
        return ScoreTable(torch.stack(mse_rows))
    return ScoreTable(torch.stack(mse_rows), torch.stack(ssim_rows), torch.stack(render_ssim))


def cached_score_table(
    distilled: DistilledStudent, cache: ClipCache, space: Space, sigma: float, seed: int = 0
) -> ScoreTable:
    """`score_table` of every clip, kept in the cache folder beside the clips (keyed by the student, DDPNet's
    candidates, the space, σ and the seed): a second fit of the same student reads it back."""
    candidates = list(distilled.ddpnet.config.candidates)
    spec = {
        "format": SCORES_FORMAT,
        "student": module_fingerprint(distilled.student.transformer),
        "vae": module_fingerprint(distilled.student.vae),
        "leap": asdict(distilled.leap),
        "candidates": candidates,
        "space": space,
        "sigma": sigma,
        "seed": seed,
    }
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    path = cache.folder / f"scores-{key}.safetensors"
    if path.is_file():
        tensors, _ = read_safetensors(path, "reward table")
        logger.info("reusing reward table %s", path)
        return ScoreTable(tensors["mse"], tensors.get("ssim"), tensors.get("render_ssim"))
    table = score_table(distilled.student, cache, candidates, distilled.leap, seed, None, space, sigma)
    tensors = {
        key: value
        for key, value in (("mse", table.mse), ("ssim", table.ssim), ("render_ssim", table.render_ssim))
        if value is not None
    }
    save_safetensors(path, tensors, {"spec": json.dumps(spec)})
    return table


def fit_policy(
    net: DDPNet,
    quality: Float[Tensor, "clips K"],
    render_latents: Float[Tensor, "clips latent_frames channels latent_height latent_width"],
    disagreement: Float[Tensor, "clips latent_frames 2 latent_height latent_width"] | None,
    config: PolicyConfig,
    steps: int,
    seed: int = 0,
) -> list[float]:
    """`steps` bandit updates of `net` on `config.clips_per_step` random clips, `pulls_per_clip` pulls each,
    every reward read from `quality` (dB). Returns the mean reward of each update."""
    count = render_latents.shape[0]
    if quality.shape != (count, len(net.config.candidates)):
        raise VideoSceneError(
            f"reward table {tuple(quality.shape)} does not match {count} clips × "
            f"{len(net.config.candidates)} candidates"
        )
    candidates = net.candidates.cpu()
    bandit = BanditTrainer(net, config)
    generator = torch.Generator().manual_seed(seed)
    per_step = min(config.clips_per_step or count, count)
    groups = torch.arange(per_step).repeat_interleave(config.pulls_per_clip)
    history = []
    for _ in tqdm(range(steps), desc="fitting DDPNet", unit="step", disable=steps < 8):
        chosen = torch.randperm(count, generator=generator)[:per_step]
        pull_clip = chosen.repeat_interleave(config.pulls_per_clip)

        def reward(timesteps: Tensor, pull_clip: Tensor = pull_clip) -> Tensor:
            action = (timesteps.cpu()[:, None] == candidates[None]).float().argmax(dim=1)
            return quality[pull_clip, action]

        outcome = bandit.step(
            render_latents[pull_clip],
            reward,
            generator,
            groups=groups,
            disagreement=None if disagreement is None else disagreement[pull_clip],
        )
        history.append(outcome.rewards.mean().item())
    return history


def fit_distilled(
    distilled: DistilledStudent,
    policy: PolicyConfig,
    cache: ClipCache,
    space: Space,
    sigma: float,
    steps: int,
    ssim_weight: float = 0.0,
    floor_weight: float = 0.0,
    seed: int = 0,
) -> tuple[DDPNet, dict]:
    """Steps 1 and 2 of the module docstring for a distilled student: a fresh ψ of its DDPNet's architecture,
    fitted on every clip of `cache`."""
    if distilled.ddpnet is None:
        raise VideoSceneError("this student was distilled without the leap: it has no DDPNet to fit")
    candidates = list(distilled.ddpnet.config.candidates)
    # 1. Reward table, in dB
    table = cached_score_table(distilled, cache, space, sigma, seed)
    quality = table.quality(ssim_weight, floor_weight)

    # 2. A fresh DDPNet, bandit-trained on the table
    clips = [cache[i] for i in range(len(cache))]
    render_latents = torch.stack([clip.render_latents for clip in clips])
    disagreement = torch.stack([clip.view_disagreement for clip in clips])
    torch.manual_seed(seed)
    net = DDPNet(distilled.ddpnet.config)
    used_disagreement = disagreement if net.config.view_disagreement else None
    history = fit_policy(net, quality, render_latents, used_disagreement, policy, steps, seed)
    with torch.no_grad():
        choices = net.eval()(render_latents, used_disagreement).argmax(dim=-1)
    rows = torch.arange(len(clips))
    psnr = table.quality()

    def summary(choice: Tensor) -> dict[str, float]:
        scores = {"reward_db": quality[rows, choice].mean().item(), "psnr": psnr[rows, choice].mean().item()}
        if table.ssim is not None:
            scores["ssim"] = table.ssim[rows, choice].mean().item()
        return scores

    best_fixed = int(quality.mean(dim=0).argmax())
    report = {
        "space": space,
        "sigma": sigma,
        "ssim_weight": ssim_weight,
        "floor_weight": floor_weight,
        "steps": steps,
        "seed": seed,
        "clips": len(clips),
        "candidates": candidates,
        "mean_reward_last_50": sum(history[-50:]) / len(history[-50:]),
        "train_policy": summary(choices),
        "train_oracle": summary(quality.argmax(dim=1)),
        "train_best_fixed": {"t": candidates[best_fixed], **summary(torch.full_like(choices, best_fixed))},
        "train_choices": {str(t): int((choices == k).sum()) for k, t in enumerate(candidates)},
    }
    return net, report


# -- CLI -----------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, help="a `videoscene train distill` output folder")
    parser.add_argument("--out", required=True, help="new folder: the same student with the fitted DDPNet")
    parser.add_argument(
        "--cache",
        default=None,
        help="a training distillation cache folder (default: the run's own, built or reused from its "
        f"{CONFIG_FILE})",
    )
    parser.add_argument("--space", choices=SPACES, default="pipeline", help="where rewards are measured")
    parser.add_argument(
        "--sigma", type=float, default=0.0, help="the render skip's low-pass in pixels (pipeline space)"
    )
    parser.add_argument(
        "--ssim-weight",
        type=float,
        default=0.0,
        help="reward = PSNR + w·SSIM in dB (−10·log10(1 − SSIM)); pixel or pipeline space",
    )
    parser.add_argument(
        "--ssim-floor-weight",
        type=float,
        default=0.0,
        help="charge λ per dB of SSIM the output loses against the clip's coarse render; pixel or pipeline "
        "space",
    )
    parser.add_argument("--steps", type=int, default=None, help="bandit updates (default policy.train_steps)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace --out (a folder videoscene wrote)")


def run(args: argparse.Namespace) -> None:
    from videoscene.distill.train import prepare_caches

    weights = Path(args.weights)
    distilled = load_distilled(weights)
    config = DistillConfig.load_json(weights / CONFIG_FILE)
    if min(args.sigma, args.ssim_weight, args.ssim_floor_weight) < 0:
        raise VideoSceneError("--sigma, --ssim-weight and --ssim-floor-weight must be ≥ 0")
    if (args.ssim_weight > 0 or args.ssim_floor_weight > 0) and args.space == "latent":
        raise VideoSceneError("an SSIM reward scores frames: use --space pixel or pipeline")
    steps = config.policy.train_steps if args.steps is None else args.steps
    if steps < 1:
        raise VideoSceneError(f"--steps {steps} must be ≥ 1")
    out = Path(args.out)
    with staged_output_dir(out, args.overwrite) as stage:
        if args.cache is not None:
            cache = ClipCache(args.cache)
        else:
            training_only = replace(config, data=replace(config.data, val_dirs=()))
            cache, _ = prepare_caches(training_only, distilled.student)
        net, report = fit_distilled(
            distilled,
            config.policy,
            cache,
            args.space,
            args.sigma,
            steps,
            args.ssim_weight,
            args.ssim_floor_weight,
            args.seed,
        )
        shutil.copytree(weights / STUDENT_FOLDER, stage / STUDENT_FOLDER)
        shutil.copy2(weights / CONFIG_FILE, stage / CONFIG_FILE)
        net.save(stage / WEIGHTS_FILE)
        write_json_atomic(stage / FIT_FILE, {"weights": str(weights), "cache": str(cache.folder), **report})
    logger.info(
        "DDPNet fitted on %d clips (%s space): reward %.3f dB; best fixed t %.3f, oracle %.3f",
        report["clips"],
        args.space,
        report["train_policy"]["reward_db"],
        report["train_best_fixed"]["reward_db"],
        report["train_oracle"]["reward_db"],
    )
    print(f"wrote {out}")
