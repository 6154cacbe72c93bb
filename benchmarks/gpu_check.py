"""GPU check at the paper's scale with random weights (docs/results.md, Table 6), sized for 8 minutes
on one H100.

1. Rasterizer: gsplat against the torch renderer on a small scene, images (colour, alpha, alpha·depth) and the
   gradients of the means, SH colours, opacities, scales and rotations, as max abs / rel errors; and the torch
   renderer against its brute-force twin. gsplat runs in a child process under `--gsplat-timeout`, since it
   may JIT-compile its CUDA code first (nvcc); if it is missing, fails or runs out of time, the JSON says why
   and the pipeline renders with the torch backend.
2. The paper architecture, built from configs/video_paper.json (CogVideoX-5B-I2V VAE + transformer) and
   configs/prior_mvsplat.json (the prior at MVSplat widths) with RANDOM weights (nothing is downloaded or
   loaded), the video model in bf16 (the prior in float32, as `VideoScenePipeline.from_pretrained` has it),
   at 49 frames of 480x720: the one-step student end to end through `VideoScenePipeline`, per-stage seconds
   (the pipeline's own timings) and peak GPU memory (torch.cuda.max_memory_allocated, reset per stage);
   the 50-step classifier-free-guidance teacher's denoiser timed over a few steps and extrapolated; the
   MVSplat prior alone at its training resolution.

    python benchmarks/gpu_check.py                 # CUDA: table + benchmarks/results/gpu_check.json
    python benchmarks/gpu_check.py --dry-run       # the same code on the CPU, tiny and float32 (< 1 min)

The teacher's other stages (prior, render, VAE encode/decode) are the student run's: the pipeline runs the
same code for both. Times are medians of `--repeats` pipeline calls after `--warmup` calls. Random weights
give meaningless pictures and meaningful speed and memory. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from bench_rasterizer import surface_scene

from videoscene.demo import DEMO_ASSETS
from videoscene.distill.config import LeapConfig
from videoscene.distill.student import DistilledStudent
from videoscene.gaussians.rasterizer import gsplat_available, render, render_reference
from videoscene.generate import load_cameras_file, load_image
from videoscene.geometry.image_ops import crop_to_aspect_and_resize
from videoscene.io_utils import write_json_atomic
from videoscene.pipeline import PipelineConfig, VideoSceneOutput, VideoScenePipeline
from videoscene.policy.ddpnet import DDPNet, DDPNetConfig, PolicyConfig
from videoscene.prior.config import EncoderConfig
from videoscene.prior.encoder import GaussianEncoder
from videoscene.prior.render import RENDER_SH_DEGREE
from videoscene.prior.train import PriorTrainConfig
from videoscene.types import Cameras, Views
from videoscene.video.config import VideoModelConfig
from videoscene.video.models import VideoBackbone
from videoscene.video.sampling import SamplingConfig, sample_latents

logger = logging.getLogger("gpu_check")
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
STAGES = ("prior", "render", "vae_encode", "policy", "denoise", "vae_decode")
GRADIENTS = ("means", "harmonics", "opacities", "scales", "rotations")


@dataclass(frozen=True)
class Scale:
    """What one run builds and measures."""

    name: str
    video: VideoModelConfig
    prior: EncoderConfig
    prior_image_size: tuple[int, int]  # where the prior is timed alone (its training resolution)
    dtype: torch.dtype  # of the video model
    gsplat_scene: tuple[int, int, int, int]  # Gaussians, views, height, width
    reference_scene: tuple[int, int, int, int]  # the brute-force twin is slow: a few hundred Gaussians


def paper_scale(video_config: Path, prior_config: Path) -> Scale:
    prior = PriorTrainConfig.load(prior_config)
    return Scale(
        name="paper",
        video=VideoModelConfig.load_json(video_config),
        prior=prior.encoder_config,
        prior_image_size=prior.image_size,
        dtype=torch.bfloat16,
        gsplat_scene=(20_000, 3, 128, 192),
        reference_scene=(200, 2, 32, 48),
    )


def dry_run_scale(paper: Scale) -> Scale:
    """The paper's configs cut down to seconds on a CPU: same structure (VAE blocks, learned positions, text
    from a file), a one-block transformer with narrow widths, 9 frames of 32x48, float32."""
    video, vae, denoiser = paper.video, paper.video.vae, paper.video.denoiser
    return Scale(
        name="dry-run",
        video=replace(
            video,
            name=f"{video.name}-dry-run",
            num_frames=9,
            height=32,
            width=48,
            vae=replace(
                vae,
                block_out_channels=(8,) * len(vae.block_out_channels),
                layers_per_block=1,
                norm_num_groups=4,
                enable_tiling=False,  # tiles are half the video size: 16x24 pixels cannot be downsampled 8x
            ),
            denoiser=replace(
                denoiser, num_layers=1, num_attention_heads=2, attention_head_dim=16, time_embed_dim=16
            ),
            text=replace(video.text, num_tokens=4, dim=16),
        ),
        prior=paper.prior.replace(
            cnn_channels=(8, 8, 16),
            cnn_blocks_per_stage=1,
            d_feature=16,
            transformer_blocks=1,
            num_depth_candidates=4,
            costvolume_unet_feat_dim=16,
            costvolume_unet_channel_mult=(1, 1),
            costvolume_unet_attn_res=(2,),
            depth_unet_feat_dim=8,
            depth_unet_channel_mult=(1, 1),
            depth_unet_attn_res=(2,),
            unet_attention_head_channels=8,
        ),
        prior_image_size=(32, 32),
        dtype=torch.float32,
        gsplat_scene=(200, 2, 32, 48),
        reference_scene=(60, 2, 16, 24),
    )


# --------------------------------------------------------------------------------------------------------
# 1. Rasterizer agreement
# --------------------------------------------------------------------------------------------------------


def _errors(got: torch.Tensor, want: torch.Tensor) -> dict[str, float]:
    """Max abs error; rel = max abs error / max |want|; norm_rel = ‖got − want‖ / ‖want‖."""
    got, want = got.detach().double(), want.detach().double()
    difference = (got - want).abs()
    return {
        "max_abs": difference.max().item(),
        "rel": (difference.max() / want.abs().max().clamp_min(1e-30)).item(),
        "norm_rel": ((got - want).norm() / want.norm().clamp_min(1e-30)).item(),
    }


def compare_renderers(
    candidate: Callable[..., object],
    reference: Callable[..., object],
    scene: tuple[int, int, int, int],
    device: torch.device,
) -> dict:
    """Render one scene with both (forward and gradients of a fixed random weighting of colour, alpha and
    alpha·depth, so that every output pixel and channel is tested) and report their errors."""
    count, views, height, width = scene
    gaussians, extrinsics, intrinsics = surface_scene(count, views, sh_degree=RENDER_SH_DEGREE)
    gaussians, extrinsics, intrinsics = gaussians.to(device), extrinsics.to(device), intrinsics.to(device)
    parameters = [getattr(gaussians, name).requires_grad_() for name in GRADIENTS]
    background = torch.tensor([[0.2, 0.4, 0.6]], device=device)
    generator = torch.Generator().manual_seed(1)
    weights = [torch.randn(1, views, 3, height, width, generator=generator).to(device)] + [
        torch.randn(1, views, height, width, generator=generator).to(device) for _ in range(2)
    ]
    outputs, gradients = [], []
    for renderer in (candidate, reference):
        output = renderer(gaussians, extrinsics, intrinsics, (height, width), background, near=0.01)
        images = (output.color, output.alpha, output.alpha * output.depth)
        loss = sum((image * weight).sum() for image, weight in zip(images, weights))
        outputs.append(images)
        gradients.append(torch.autograd.grad(loss, parameters))
    return {
        "scene": {"gaussians": count, "views": views, "height": height, "width": width},
        "coverage": outputs[1][1].mean().item(),
        "images": {
            name: _errors(got, want)
            for name, got, want in zip(("color", "alpha", "alpha_depth"), *outputs, strict=True)
        },
        "gradients": {
            name: _errors(got, want) for name, got, want in zip(GRADIENTS, *gradients, strict=True)
        },
    }


def _with_backend(backend: str) -> Callable[..., object]:
    def renderer(*args, **kwargs):
        return render(*args, backend=backend, **kwargs)

    return renderer


def gsplat_check(scene: tuple[int, int, int, int]) -> dict:
    """gsplat against the torch backend on CUDA; runs in the child process (`--gsplat-child`)."""
    if not torch.cuda.is_available():
        return {"available": False, "reason": "no CUDA device"}
    if not gsplat_available():
        return {"available": False, "reason": "gsplat is not installed (pip install 'videoscene[cuda]')"}
    start = time.perf_counter()  # the first gsplat call may JIT-compile its CUDA code
    result = compare_renderers(_with_backend("gsplat"), _with_backend("torch"), scene, torch.device("cuda"))
    return {
        "available": True,
        "version": importlib.metadata.version("gsplat"),
        "seconds_including_build": time.perf_counter() - start,
        **result,
    }


class GsplatChild:
    """`gsplat_check` in a child process, started early so that a JIT build overlaps the model building,
    and killed (with its compiler processes) when it runs past the timeout."""

    def __init__(self, scene: tuple[int, int, int, int], timeout: float):
        self.timeout, self.start = timeout, time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--gsplat-child", json.dumps(scene)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: a timeout kills the compiler too
        )

    def result(self) -> dict:
        remaining = max(0.0, self.timeout - (time.monotonic() - self.start))
        try:
            stdout, stderr = self.process.communicate(timeout=remaining)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):  # it may have ended just now
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.communicate()
            return {
                "available": False,
                "reason": f"the gsplat check did not finish in {self.timeout:g} s (still building its CUDA "
                "code?); a killed build may leave a stale lock under ~/.cache/torch_extensions",
            }
        lines = stdout.strip().splitlines()
        if self.process.returncode != 0 or not lines:
            last = (stderr.strip().splitlines() or ["no output"])[-1]
            return {"available": False, "reason": f"the gsplat check failed: {last}"}
        return json.loads(lines[-1])


@contextmanager
def without_gsplat(block: bool) -> Iterator[None]:
    """While `block`, `import gsplat` fails in this process and `gsplat_available()` is false, so the
    renderer's "auto" backend takes torch (a None entry in sys.modules is Python's way to block an import)."""
    if not block:
        yield
        return
    saved = sys.modules.get("gsplat")
    sys.modules["gsplat"] = None
    try:
        yield
    finally:
        if saved is None:
            del sys.modules["gsplat"]
        else:
            sys.modules["gsplat"] = saved


# --------------------------------------------------------------------------------------------------------
# 2. The pipeline at scale
# --------------------------------------------------------------------------------------------------------


class StageRecorder:
    """Seconds and peak memory of the stages measured here (the pipeline reports its own stages' peaks in
    `VideoSceneOutput.peak_memory`). On CUDA: torch.cuda.max_memory_allocated, reset when a stage starts;
    on the CPU: the process's peak resident set so far (a dry run checks the plumbing, not the number)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.peak_mib: dict[str, float] = {}

    @contextmanager
    def stage(self, timings: dict[str, float], name: str) -> Iterator[None]:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        yield
        if self.cuda:
            torch.cuda.synchronize()
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
        self.record(name, peak_memory_mib(self.cuda))

    def record(self, name: str, mib: float) -> None:
        self.peak_mib[name] = max(self.peak_mib.get(name, 0.0), mib)

    def record_pipeline(self, output: VideoSceneOutput) -> None:
        """The pipeline's per-stage peaks on CUDA; on the CPU, the process's peak so far for each stage."""
        for name in output.timings:
            if name != "total":
                cpu = peak_memory_mib(False)
                self.record(name, output.peak_memory[name] / 2**20 if self.cuda else cpu)


def peak_memory_mib(cuda: bool) -> float:
    if cuda:
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_random_pipeline(scale: Scale, device: torch.device, seed: int) -> VideoScenePipeline:
    """The pipeline with randomly initialised components of the configured architectures: one video model
    serves as the teacher and as the student (with a DDPNet), which changes no timing."""
    torch.manual_seed(seed)
    video = scale.video
    prompt = 0.02 * torch.randn(1, video.text.num_tokens, video.text.dim)
    with torch.device(device):  # initialised where they run: 5B parameters are slow to draw on a CPU
        backbone = VideoBackbone.build(video, prompt_embeds=prompt)
        prior = GaussianEncoder(scale.prior)
        ddpnet = DDPNet(DDPNetConfig.from_policy(PolicyConfig(), video.latent_frames, video.latent_channels))
    backbone = backbone.to(device, scale.dtype).eval()  # the prompt was drawn on the CPU
    student = DistilledStudent(backbone, ddpnet.to(device).eval(), LeapConfig())
    config = PipelineConfig(num_frames=video.num_frames, height=video.height, width=video.width)
    return VideoScenePipeline(config, prior.to(device), distilled=student, teacher=backbone, device=device)


def demo_inputs() -> tuple[torch.Tensor, Cameras, float, float]:
    images = torch.stack([load_image(DEMO_ASSETS / "view_0.png"), load_image(DEMO_ASSETS / "view_1.png")])
    cameras, _, near, far = load_cameras_file(DEMO_ASSETS / "cams.json", tuple(images.shape[-2:]))
    return images, cameras, near, far


def time_student(pipe: VideoScenePipeline, recorder: StageRecorder, warmup: int, repeats: int) -> dict:
    """The one-step student end to end; seconds per stage are medians over the repeats."""
    images, cameras, near, far = demo_inputs()
    samples = []
    for call in range(warmup + repeats):
        output = pipe(images, cameras, near=near, far=far, model="student", timestep="auto", seed=call)
        recorder.record_pipeline(output)
        if call >= warmup:
            samples.append(output.timings)
    seconds = {stage: statistics.median(s[stage] for s in samples) for stage in STAGES}
    return {
        "steps": 1,
        "timestep": output.timestep,
        "seconds": seconds,
        "seconds_per_step": seconds["denoise"],
        "total_seconds": sum(seconds.values()),
        "finite_output": bool(torch.isfinite(output.frames).all()),
    }


def time_teacher(
    pipe: VideoScenePipeline,
    recorder: StageRecorder,
    student: dict,
    steps: int,
    timed_steps: int,
    guidance_scale: float,
) -> dict:
    """The multi-step teacher from pure noise with classifier-free guidance (both branches in one batch):
    one warm-up step, then `timed_steps` steps timed and extrapolated to `steps`."""
    backbone, video = pipe.teacher, pipe.teacher.config
    shape = (1, video.latent_frames, video.latent_channels, video.latent_height, video.latent_width)
    condition = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(pipe.device)
    timings: dict[str, float] = {}
    for name, count in (("teacher_warmup", 1), ("teacher_denoise", timed_steps)):
        sampling = SamplingConfig(num_steps=count, guidance_scale=guidance_scale)
        with recorder.stage(timings, name):
            sample_latents(backbone, condition, sampling, generator=torch.Generator().manual_seed(0))
    per_step = timings["teacher_denoise"] / timed_steps
    # The teacher from noise needs no DDPNet; every other stage is the pipeline's, as for the student.
    seconds = {**student["seconds"], "policy": 0.0, "denoise": steps * per_step}
    return {
        "steps": steps,
        "guidance_scale": guidance_scale,
        "timed_steps": timed_steps,
        "extrapolated": timed_steps != steps,
        "seconds": seconds,
        "seconds_per_step": per_step,
        "total_seconds": sum(seconds.values()),
    }


@torch.no_grad()
def time_prior_alone(pipe: VideoScenePipeline, recorder: StageRecorder, size: tuple[int, int]) -> dict:
    images, cameras, near, far = demo_inputs()
    resized, intrinsics = crop_to_aspect_and_resize(images, cameras.intrinsics, size)
    context = Views(
        image=resized[None],
        extrinsics=cameras.extrinsics[None],
        intrinsics=intrinsics[None],
        near=torch.full((1, 2), near),
        far=torch.full((1, 2), far),
    ).to(pipe.device)
    timings: dict[str, float] = {}
    for name in ("prior_alone_warmup", "prior_alone"):
        with recorder.stage(timings, name):
            pipe.prior(context, assume_rigid=True)
    return {
        "image_size": list(size),
        "seconds": timings["prior_alone"],
        "peak_memory_mib": recorder.peak_mib["prior_alone"],
    }


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------


def table(results: dict) -> str:
    student, teacher, peak = results["student"], results["teacher"], results["peak_memory_mib"]
    video, prior_alone = results["video"], results["prior_alone"]
    extrapolated = f" (extrapolated from {teacher['timed_steps']})" if teacher["extrapolated"] else ""
    lines = [
        f"GPU check '{results['scale']}': {video[0]}x{video[1]}x{video[2]} video, {results['dtype']}, "
        f"on {results['device']}; render backend {results['render_backend']}; peak memory = "
        f"{results['memory_kind']}",
        f"{'stage':<12}{'student s':>12}{'peak MiB':>10}{'teacher s':>12}{'peak MiB':>10}",
    ]
    for stage in STAGES:
        teacher_peak = peak["teacher_denoise"] if stage == "denoise" else peak[stage]
        lines.append(
            f"{stage:<12}{student['seconds'][stage]:>12.3f}{peak[stage]:>10.0f}"
            f"{teacher['seconds'][stage]:>12.3f}{teacher_peak:>10.0f}"
        )
    lines += [
        f"{'total':<12}{student['total_seconds']:>12.3f}{'':>10}{teacher['total_seconds']:>12.3f}",
        f"denoiser step: student {student['seconds_per_step']:.3f} s x 1; teacher with CFG (w = "
        f"{teacher['guidance_scale']:g}) {teacher['seconds_per_step']:.3f} s x {teacher['steps']}"
        + extrapolated,
        f"teacher / student total: {results['ratio_total']:.1f}x",
        f"prior alone at {prior_alone['image_size'][0]}x{prior_alone['image_size'][1]}: "
        f"{prior_alone['seconds']:.3f} s, {prior_alone['peak_memory_mib']:.0f} MiB",
    ]
    for name, check in results["rasterizer"].items():
        if not check.get("available", True):
            lines.append(f"{name}: unavailable ({check['reason']})")
            continue
        errors = {**check["images"], **check["gradients"]}
        lines.append(
            f"{name} max abs / rel: "
            + ", ".join(f"{key} {value['max_abs']:.1e}/{value['rel']:.1e}" for key, value in errors.items())
        )
    lines.append(f"wall {results['wall_seconds']:.1f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU in float32")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/gpu_check*.json)")
    parser.add_argument("--video-config", type=Path, default=REPO / "configs" / "video_paper.json")
    parser.add_argument("--prior-config", type=Path, default=REPO / "configs" / "prior_mvsplat.json")
    parser.add_argument("--warmup", type=int, default=1, help="untimed pipeline calls first")
    parser.add_argument("--repeats", type=int, default=1, help="timed pipeline calls (median)")
    parser.add_argument("--teacher-steps", type=int, default=50)
    parser.add_argument("--timed-teacher-steps", type=int, default=3)
    parser.add_argument("--guidance-scale", type=float, default=6.0, help="CogVideoX-5B-I2V's default")
    parser.add_argument(
        "--gsplat-timeout", type=float, default=240.0, help="seconds for gsplat, build included"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--gsplat-child", help=argparse.SUPPRESS)  # internal: gsplat_check, JSON on stdout
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.gsplat_child:
        sys.stdout.write(json.dumps(gsplat_check(tuple(json.loads(args.gsplat_child)))) + "\n")
        return {}
    if not args.dry_run and not torch.cuda.is_available():
        parser.error("the GPU check needs CUDA; use --dry-run on a CPU")
    if min(args.warmup, args.repeats - 1, args.teacher_steps - 1, args.timed_teacher_steps - 1) < 0:
        parser.error("--warmup must be >= 0 and --repeats, --teacher-steps, --timed-teacher-steps >= 1")
    start = time.perf_counter()
    scale = paper_scale(args.video_config, args.prior_config)
    scale = dry_run_scale(scale) if args.dry_run else scale
    device = torch.device("cpu" if args.dry_run else "cuda")

    # 1. Rasterizers: gsplat in a child (it may build first), the brute-force twin here
    child = GsplatChild(scale.gsplat_scene, args.gsplat_timeout)
    rasterizer = {
        "torch_vs_reference": compare_renderers(
            _with_backend("torch"), render_reference, scale.reference_scene, device
        )
    }

    # 2. Random weights of the configured architectures
    pipe = build_random_pipeline(scale, device, args.seed)
    rasterizer["gsplat_vs_torch"] = child.result()
    use_gsplat = rasterizer["gsplat_vs_torch"]["available"]
    backend = "gsplat" if use_gsplat else "torch"
    logger.info("built in %.1f s; rendering with %s", time.perf_counter() - start, backend)

    # 3. Student end to end, teacher steps, prior alone
    recorder = StageRecorder(device)
    resident_mib = torch.cuda.memory_allocated() / 2**20 if recorder.cuda else peak_memory_mib(False)
    with without_gsplat(block=not use_gsplat):
        student = time_student(pipe, recorder, args.warmup, args.repeats)
    teacher = time_teacher(
        pipe, recorder, student, args.teacher_steps, args.timed_teacher_steps, args.guidance_scale
    )
    prior_alone = time_prior_alone(pipe, recorder, scale.prior_image_size)

    video = scale.video
    results = {
        "scale": scale.name,
        "device": torch.cuda.get_device_name() if recorder.cuda else platform.processor() or "cpu",
        "dtype": str(scale.dtype).removeprefix("torch."),
        "prior_dtype": str(next(pipe.prior.parameters()).dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "video": [video.num_frames, video.height, video.width],
        "latent": [video.latent_frames, video.latent_channels, video.latent_height, video.latent_width],
        "parameters": {
            "vae": parameter_count(pipe.teacher.vae),
            "transformer": parameter_count(pipe.teacher.transformer),
            "prior": parameter_count(pipe.prior),
        },
        "render_backend": backend,
        "memory_kind": "cuda_max_memory_allocated_mib" if recorder.cuda else "cpu_peak_rss_mib_so_far",
        "weights_resident_mib": resident_mib,
        "peak_memory_mib": recorder.peak_mib,
        "student": student,
        "teacher": teacher,
        "ratio_total": teacher["total_seconds"] / student["total_seconds"],
        "prior_alone": prior_alone,
        "rasterizer": rasterizer,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "wall_seconds": time.perf_counter() - start,
    }
    out = args.out or RESULTS / ("gpu_check_dry_run.json" if args.dry_run else "gpu_check.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, results)
    print(table(results))
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main()
