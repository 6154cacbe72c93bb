"""Quality of the tiny video backbone on held-out clips (issue 4 acceptance).

    python benchmarks/bench_teacher_quality.py --model src/videoscene/weights/tiny/teacher \
        --data outputs/synth64_test/test [--prior src/videoscene/weights/tiny/prior] [--clips 24]

Rows (PSNR / SSIM against ground truth, one clip of the model's frame count per held-out scene):
- VAE reconstruction (posterior mean, all frames): acceptance ≥ 28 dB.
- In-between frames: the 50-step DDIM teacher from pure noise, conditioned on the first and last frames,
  against the linear cross-fade of those frames: acceptance teacher > cross-fade.
- With --prior: the coarse render of the prior's Gaussians at the target cameras, against the teacher
  started from the render forward-noised to --start-timestep (DDIM, same stride as 50 steps): acceptance
  teacher-from-render > render.

Prints a table and writes benchmarks/results/teacher_quality.json.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch

from videoscene.data.dataset import ClipDataset, ClipSamplerConfig
from videoscene.distill.cache import encode_clip, frames_to_float
from videoscene.io_utils import write_json_atomic
from videoscene.metrics.image import psnr, ssim
from videoscene.prior.encoder import GaussianEncoder
from videoscene.video.models import VideoBackbone
from videoscene.video.sampling import SamplingConfig, sample_video
from videoscene.video.train_teacher import evaluate_interpolation
from videoscene.video.train_vae import evaluate_reconstruction, fit_frames

logger = logging.getLogger("bench_teacher_quality")
RESULTS = Path(__file__).resolve().parent / "results" / "teacher_quality.json"


@torch.no_grad()
def render_comparison(
    backbone: VideoBackbone, prior: GaussianEncoder, examples, num_steps: int, start_timestep: int, seed: int
) -> dict:
    """Coarse render vs the teacher from the noised render, PSNR/SSIM of the in-between frames."""
    scores: dict[str, list[torch.Tensor]] = {
        "render_psnr": [],
        "teacher_from_render_psnr": [],
        "render_ssim": [],
        "teacher_from_render_ssim": [],
    }
    sampling = SamplingConfig(num_steps=num_steps, start_timestep=start_timestep)
    for number, example in enumerate(examples):
        clip = encode_clip(
            example, prior, backbone, torch.Generator().manual_seed(seed + number), store_frames=True
        )
        render, truth = frames_to_float(clip.render_frames)[None], frames_to_float(clip.target_frames)[None]
        refined = sample_video(
            backbone, truth[:, 0], truth[:, -1], sampling, seed=seed + number, start_video=render
        ).cpu()
        inner = slice(1, truth.shape[1] - 1)
        for name, video in (("render", render), ("teacher_from_render", refined)):
            scores[f"{name}_psnr"].append(psnr(video[:, inner], truth[:, inner]).flatten())
            scores[f"{name}_ssim"].append(ssim(video[:, inner], truth[:, inner]).flatten())
    return {name: torch.cat(values).mean().item() for name, values in scores.items()} | {
        "start_timestep": start_timestep
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", type=Path, default=Path("src/videoscene/weights/tiny/teacher"), help="VideoBackbone folder"
    )
    parser.add_argument("--data", nargs="+", required=True, help="held-out split folders")
    parser.add_argument(
        "--prior", type=Path, help="prior folder (prior.safetensors + prior_config.json) for the render rows"
    )
    parser.add_argument("--clips", type=int, help="at most this many held-out clips (default: one per scene)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument(
        "--start-timestep",
        type=int,
        default=549,
        help="noise level of the render start (the released inference uses 549)",
    )
    parser.add_argument("--min-stride", type=int, default=1)
    parser.add_argument("--max-stride", type=int, default=3)
    parser.add_argument("--near", type=float, default=0.5)
    parser.add_argument("--far", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy 2-core machine)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    backbone = VideoBackbone.from_pretrained(args.model).eval()
    video = backbone.config
    sampler = ClipSamplerConfig(video.num_frames, args.min_stride, args.max_stride, args.near, args.far)
    dataset = ClipDataset(args.data, sampler, seed=args.seed, deterministic=True)
    count = len(dataset) if args.clips is None else min(args.clips, len(dataset))
    examples = [dataset[i] for i in range(count)]
    clips = [fit_frames(example.target.image, (video.height, video.width)) for example in examples]

    results: dict = {
        "model": str(args.model),
        "data": args.data,
        "clips": count,
        "frames": video.num_frames,
        "steps": args.steps,
    }
    tic = time.perf_counter()
    results["vae"] = evaluate_reconstruction(backbone.vae, clips)
    results["interpolation"] = evaluate_interpolation(backbone, clips, args.steps, args.seed)
    if args.prior is not None:
        prior = GaussianEncoder.load(args.prior).eval()
        results["render"] = render_comparison(
            backbone, prior, examples, args.steps, args.start_timestep, args.seed
        )
    results["seconds"] = round(time.perf_counter() - tic, 1)

    rows = [
        ("VAE reconstruction (all frames)", results["vae"]["psnr"], results["vae"]["ssim"]),
        (
            f"teacher {args.steps} steps from noise (in-between)",
            results["interpolation"]["teacher_psnr"],
            results["interpolation"]["teacher_ssim"],
        ),
        (
            "linear cross-fade (in-between)",
            results["interpolation"]["crossfade_psnr"],
            results["interpolation"]["crossfade_ssim"],
        ),
    ]
    if "render" in results:
        rows += [
            (
                "coarse render (in-between)",
                results["render"]["render_psnr"],
                results["render"]["render_ssim"],
            ),
            (
                f"teacher from render t={args.start_timestep} (in-between)",
                results["render"]["teacher_from_render_psnr"],
                results["render"]["teacher_from_render_ssim"],
            ),
        ]
    print(f"{count} held-out clips of {video.num_frames}×{video.height}×{video.width}\n")
    print(f"| {'method':<46} | PSNR (dB) | SSIM  |\n|{'-' * 48}|-----------|-------|")
    for name, value, structure in rows:
        print(f"| {name:<46} | {value:9.2f} | {structure:.3f} |")
    write_json_atomic(RESULTS, results)
    logger.info("wrote %s", RESULTS)


if __name__ == "__main__":
    main()
