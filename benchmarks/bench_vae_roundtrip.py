"""How much the VAE's round trip costs, on ground truth and on coarse renders (issue 17, lever 1).

    python benchmarks/bench_vae_roundtrip.py --data outputs/synth64_test/test \
        --vae src/videoscene/weights/tiny/teacher outputs/vae_s2t2_2500/vae [--clips 24]

One 17-frame clip per held-out scene (target stride --stride, deterministic). The coarse render is the bundled
prior's Gaussians from the clip's first and last frames rendered at its cameras (what the video model starts
from, `distill.cache.encode_clip`). Per VAE folder (the `vae/` of a `videoscene train vae` run, or of a
video model folder such as weights/tiny/teacher), over all frames of all clips:

- ground truth → VAE → x̂: PSNR/SSIM of x̂ against the ground truth (the ceiling of anything decoded);
- render → VAE → r̂: PSNR of r̂ against the render (what the round trip alone changes), and of r̂ against
  the ground truth beside the render's own PSNR (what the round trip costs the render).

A VAE is near-lossless for this purpose when its round trip costs the render much less than the render's own
error. Prints a table and writes benchmarks/results/vae_roundtrip.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKLCogVideoX

from videoscene.data.dataset import ClipDataset, ClipSamplerConfig
from videoscene.distill.cache import encode_clip, frames_to_float
from videoscene.io_utils import write_json_atomic
from videoscene.metrics.image import psnr, ssim
from videoscene.prior.encoder import GaussianEncoder
from videoscene.video.models import VideoBackbone
from videoscene.video.train_vae import reconstruct

RESULTS = Path(__file__).resolve().parent / "results" / "vae_roundtrip.json"
WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "videoscene" / "weights" / "tiny"


def mean(values: list[torch.Tensor]) -> float:
    return torch.cat([value.flatten() for value in values]).mean().item()


@torch.no_grad()
def clips_and_renders(args: argparse.Namespace) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Ground-truth clips and their coarse renders, [frames, 3, H, W] in [0, 1] at the video model's size."""
    backbone = VideoBackbone.from_pretrained(WEIGHTS / "teacher").eval()  # only sizes and the clip encode
    prior = GaussianEncoder.load(WEIGHTS / "prior").eval()
    config = backbone.config
    sampler = ClipSamplerConfig(config.num_frames, args.stride, args.stride, args.near, args.far)
    dataset = ClipDataset(args.data, sampler, seed=args.seed, deterministic=True)
    truths, renders = [], []
    for number in range(min(args.clips, len(dataset))):
        clip = encode_clip(dataset[number], prior, backbone, torch.Generator().manual_seed(number))
        truths.append(frames_to_float(clip.target_frames))
        renders.append(frames_to_float(clip.render_frames))
    return truths, renders


@torch.no_grad()
def round_trip_scores(folder: Path, truths: list[torch.Tensor], renders: list[torch.Tensor]) -> dict:
    if (folder / "config.json").is_file():  # a `train vae` run's vae/ (diffusers layout)
        vae = AutoencoderKLCogVideoX.from_pretrained(folder, local_files_only=True).eval()
    else:  # a video model folder of a weights folder (its VAE inside)
        vae = VideoBackbone.from_pretrained(folder).vae.eval()
    scores: dict[str, list[torch.Tensor]] = {name: [] for name in ("gt", "gt_ssim", "render", "render_vs_gt")}
    for truth, render in zip(truths, renders):
        truth_out, render_out = reconstruct(vae, truth[None])[0], reconstruct(vae, render[None])[0]
        scores["gt"].append(psnr(truth_out, truth))
        scores["gt_ssim"].append(ssim(truth_out, truth))
        scores["render"].append(psnr(render_out, render))
        scores["render_vs_gt"].append(psnr(render_out, truth))
    return {
        "vae": str(folder),
        "parameters": sum(p.numel() for p in vae.parameters()),
        "block_out_channels": list(vae.config.block_out_channels),
        "latent_channels": vae.config.latent_channels,
        "temporal_compression_ratio": vae.config.temporal_compression_ratio,
        "gt_round_trip_psnr": mean(scores["gt"]),
        "gt_round_trip_ssim": mean(scores["gt_ssim"]),
        "render_round_trip_psnr": mean(scores["render"]),
        "render_round_trip_vs_gt_psnr": mean(scores["render_vs_gt"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", required=True, help="held-out split folders")
    parser.add_argument("--vae", nargs="+", type=Path, required=True, help="VAE folders to compare")
    parser.add_argument("--clips", type=int, default=24, help="at most this many clips (one per scene)")
    parser.add_argument("--stride", type=int, default=3, help="frames between consecutive clip frames")
    parser.add_argument("--near", type=float, default=0.5)
    parser.add_argument("--far", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    tic = time.perf_counter()
    truths, renders = clips_and_renders(args)
    render_psnr = mean([psnr(render, truth) for render, truth in zip(renders, truths)])
    rows = [round_trip_scores(folder, truths, renders) for folder in args.vae]
    results = {
        "data": args.data,
        "clips": len(truths),
        "frames": int(truths[0].shape[0]),
        "stride": args.stride,
        "render_psnr": render_psnr,
        "vaes": rows,
        "seconds": round(time.perf_counter() - tic, 1),
    }
    shape = tuple(truths[0].shape)
    print(f"{len(truths)} held-out clips of {shape}; the render itself: {render_psnr:.2f} dB\n")
    print("| VAE | GT round trip dB | SSIM | render round trip dB | round-tripped render vs GT dB |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['vae']} | {row['gt_round_trip_psnr']:.2f} | {row['gt_round_trip_ssim']:.3f} | "
            f"{row['render_round_trip_psnr']:.2f} | {row['render_round_trip_vs_gt_psnr']:.2f} |"
        )
    write_json_atomic(RESULTS, results)
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
