"""Speed and memory of the video backbone (issue 4).

    python benchmarks/bench_video.py                   # tiny preset on CPU: VAE encode/decode, one denoiser
                                                       # forward
    python benchmarks/bench_video.py --vae-candidates  # also time the tiny-VAE candidates the preset was
                                                       # chosen from
    python benchmarks/bench_video.py --paper           # CogVideoX-5B-I2V architecture, random bf16 weights,
                                                       # CUDA only

Prints a table and writes benchmarks/results/video.json. Times are the best of --repeats runs after one
warm-up (the shared CPU is loaded by other jobs; the minimum is the least disturbed estimate); CPU memory is
the peak growth of the process's resident set during the stage (sampled every 2 ms), GPU memory is
torch.cuda.max_memory_allocated. Numbers depend on the machine and its load: compare ratios.
"""

from __future__ import annotations

import argparse
import logging
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import psutil
import torch

from videoscene.io_utils import write_json_atomic
from videoscene.video.config import PRESETS, VAEConfig, VideoModelConfig
from videoscene.video.models import VideoBackbone

logger = logging.getLogger("bench_video")
RESULTS = Path(__file__).resolve().parent / "results" / "video.json"

# Tiny-VAE candidates at 17×64×96 (the chosen preset is "16-32-32 c8 (4x)"): widths, latent channels, blocks.
VAE_CANDIDATES = {
    "32-64-64-64 c16 lpb2 (8x)": VAEConfig(
        block_out_channels=(32, 64, 64, 64),
        latent_channels=16,
        layers_per_block=2,
        norm_num_groups=8,
        scaling_factor=1.0,
    ),
    "16-32-64-64 c16 (8x)": VAEConfig(
        block_out_channels=(16, 32, 64, 64),
        latent_channels=16,
        layers_per_block=1,
        norm_num_groups=8,
        scaling_factor=1.0,
    ),
    "16-32-32-32 c16 (8x)": VAEConfig(
        block_out_channels=(16, 32, 32, 32),
        latent_channels=16,
        layers_per_block=1,
        norm_num_groups=8,
        scaling_factor=1.0,
    ),
    "32-64-64 c8 (4x)": VAEConfig(
        block_out_channels=(32, 64, 64),
        latent_channels=8,
        layers_per_block=1,
        norm_num_groups=8,
        scaling_factor=1.0,
    ),
    "16-32-32 c8 (4x)": VAEConfig(
        block_out_channels=(16, 32, 32),
        latent_channels=8,
        layers_per_block=1,
        norm_num_groups=8,
        scaling_factor=1.0,
    ),
    "8-16-32 c8 (4x)": VAEConfig(
        block_out_channels=(8, 16, 32),
        latent_channels=8,
        layers_per_block=1,
        norm_num_groups=4,
        scaling_factor=1.0,
    ),
}


class PeakRSS:
    """Peak growth of resident memory while the block runs (a sampling thread; CPU allocations are not tracked
    by torch, so this is the honest upper bound the OS sees)."""

    def __init__(self, interval: float = 0.002):
        self.process, self.interval, self.peak, self._stop = psutil.Process(), interval, 0, threading.Event()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.start) / 2**20


def _time(fn: Callable[[], object], repeats: int, cuda: bool) -> tuple[float, float]:
    """Best-of-`repeats` seconds after one warm-up, and the peak memory (MiB) of one more run."""
    fn()
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        memory = torch.cuda.max_memory_allocated() / 2**20
    else:
        with PeakRSS() as rss:
            fn()
        memory = rss.growth_mib
    return min(times), memory


def _stages(model: VideoBackbone, config: VideoModelConfig, repeats: int, cuda: bool) -> list[dict]:
    device = model.device
    video = torch.rand(1, config.num_frames, 3, config.height, config.width, device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    latents = model.encode_video(video, generator=generator)
    condition = torch.zeros_like(latents)
    rows = []
    for stage, fn in [
        ("VAE encode", lambda: model.encode_video(video, generator=generator)),
        ("VAE decode", lambda: model.decode_latents(latents)),
        ("denoiser forward", lambda: model.predict_v(latents, condition, 549)),
    ]:
        seconds, memory = _time(fn, repeats, cuda)
        rows.append({"stage": stage, "seconds": seconds, "peak_memory_mib": memory})
        logger.info("%s: %.4f s", stage, seconds)
    return rows


def _parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def bench_tiny(repeats: int) -> dict:
    config = PRESETS["tiny"]
    torch.manual_seed(0)
    model = VideoBackbone.build(config).eval()
    return {
        "preset": "tiny",
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "video": [config.num_frames, config.height, config.width],
        "latent": [config.latent_frames, config.latent_channels, config.latent_height, config.latent_width],
        "vae_parameters": _parameters(model.vae),
        "denoiser_parameters": _parameters(model.transformer),
        "stages": _stages(model, config, repeats, cuda=False),
    }


@torch.no_grad()
def bench_vae_candidates(repeats: int) -> list[dict]:
    rows = []
    for name, vae in VAE_CANDIDATES.items():
        config = replace(PRESETS["tiny"], vae=vae)
        torch.manual_seed(0)
        model = VideoBackbone.build(config).eval()
        video = torch.rand(1, config.num_frames, 3, config.height, config.width)
        latents = model.encode_video(video, sample_posterior=False)
        encode, _ = _time(lambda: model.encode_video(video, sample_posterior=False), repeats, cuda=False)
        decode, _ = _time(lambda: model.decode_latents(latents), repeats, cuda=False)
        compression = (3 * config.num_frames * config.height * config.width) / latents[0].numel()
        rows.append(
            {
                "candidate": name,
                "vae_parameters": _parameters(model.vae),
                "latent": list(latents.shape[1:]),
                "compression": compression,
                "encode_seconds": encode,
                "decode_seconds": decode,
            }
        )
        logger.info("%s: encode %.3f s, decode %.3f s", name, encode, decode)
    return rows


@torch.no_grad()
def bench_paper(repeats: int) -> dict:
    config = PRESETS["paper"]
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = VideoBackbone.build(
            config, prompt_embeds=torch.zeros(1, config.text.num_tokens, config.text.dim)
        )
    model = model.to(torch.bfloat16).eval()
    return {
        "preset": "paper",
        "device": torch.cuda.get_device_name(),
        "dtype": "bfloat16",
        "vae_tiling": model.vae.use_tiling,
        "vae_slicing": model.vae.use_slicing,
        "video": [config.num_frames, config.height, config.width],
        "vae_parameters": _parameters(model.vae),
        "denoiser_parameters": _parameters(model.transformer),
        "stages": _stages(model, config, repeats, cuda=True),
    }


def _print_table(title: str, rows: list[dict], columns: list[str]) -> None:
    print(f"\n{title}")
    print(" | ".join(columns))
    for row in rows:
        cells = []
        for column in columns:
            value = row[column]
            cells.append(f"{value:.4g}" if isinstance(value, float) else str(value))
        print(" | ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vae-candidates", action="store_true", help="also time the tiny-VAE candidates")
    parser.add_argument("--paper", action="store_true", help="paper-scale random bf16 weights on CUDA")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    results: dict = {
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__}
    }
    results["tiny"] = bench_tiny(args.repeats)
    _print_table(
        f"tiny preset on CPU ({results['tiny']['threads']} threads), video {results['tiny']['video']}, "
        f"VAE {results['tiny']['vae_parameters'] / 1e6:.2f}M, denoiser "
        f"{results['tiny']['denoiser_parameters'] / 1e6:.2f}M params",
        results["tiny"]["stages"],
        ["stage", "seconds", "peak_memory_mib"],
    )
    if args.vae_candidates:
        results["vae_candidates"] = bench_vae_candidates(args.repeats)
        _print_table(
            "tiny-VAE candidates at 17x64x96 (random weights; speed only)",
            results["vae_candidates"],
            ["candidate", "vae_parameters", "compression", "encode_seconds", "decode_seconds"],
        )
    if args.paper:
        if torch.cuda.is_available():
            results["paper"] = bench_paper(max(1, args.repeats - 1))
            _print_table(
                f"paper preset on {results['paper']['device']} (bf16, random weights)",
                results["paper"]["stages"],
                ["stage", "seconds", "peak_memory_mib"],
            )
        else:
            logger.warning("--paper needs CUDA; skipped")
            results["paper"] = {"skipped": "no CUDA device"}
    write_json_atomic(args.out, results)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
