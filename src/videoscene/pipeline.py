"""VideoScenePipeline: two posed views in; the coarse video, the generated video and the Gaussians out.

The steps follow the paper's inference (docs/method.md §6): feed-forward Gaussians from the two views, a
coarse render along the camera path, its VAE latent x₀ʳ forward-noised to a timestep t (DDPNet's choice or
fixed) and denoised in one step by the distilled student, then decoded. The same call runs the multi-step
teacher (from the render or from pure noise) for comparison.

A weights folder holds:
    pipeline.json                       resolution, frame count, near/far, fallback timestep
    prior/                              prior.safetensors + prior_config.json
    teacher/                            the multi-step video model (VideoBackbone folder), optional
    distilled/                          `videoscene train distill` output: student/, ddpnet.safetensors, ...
    distilled_noleap/                   the --no-leap ablation, optional
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from videoscene.arguments import resolve_device
from videoscene.config_json import check_json_types
from videoscene.distill.student import DistilledStudent, load_distilled, start_timestep
from videoscene.errors import VideoSceneError
from videoscene.geometry.cameras import check_rigid
from videoscene.geometry.image_ops import (
    crop_to_aspect_and_resize,
    crop_to_aspect_and_resize_intrinsics,
    render_skip,
)
from videoscene.geometry.image_ops import resize as stretch_to_size
from videoscene.geometry.trajectory import interpolate_cameras
from videoscene.image_io import ImageLike, as_image_tensor
from videoscene.io_utils import read_json_object
from videoscene.outputs import VideoSceneOutput
from videoscene.policy.ddpnet import policy_inputs
from videoscene.prior.encoder import GaussianEncoder
from videoscene.prior.render import render_coarse_with_alpha
from videoscene.types import Cameras, Gaussians, Views, check_finite
from videoscene.video.conditioning import encode_condition_frames
from videoscene.video.models import VideoBackbone
from videoscene.video.sampling import SamplingConfig, sample_latents

logger = logging.getLogger(__name__)

PIPELINE_CONFIG = "pipeline.json"
# How input images reach the model's resolution: centre-crop to its aspect ratio then resize, or resize
# anisotropically ("stretch", the authors' preprocessing: RealEstate10K's 640×360 frames to 720×480).
RESIZE_MODES = ("crop", "stretch")
BUNDLED_WEIGHTS = Path(__file__).parent / "weights" / "tiny"


@dataclass(frozen=True)
class PipelineConfig:
    num_frames: int = 17
    height: int = 64
    width: int = 96
    near: float = 0.5
    far: float = 20.0
    # Used when timestep="auto" but the student has no DDPNet (the authors' release uses a fixed 549).
    fallback_timestep: int = 549
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    resize: Literal["crop", "stretch"] = "crop"  # the default of `__call__`'s `resize` for these weights
    # Decode only the denoiser's change to the render: video = render + D(x̂₀) − D(x₀ʳ), so pixels the
    # student leaves alone keep the render's detail and colour instead of the VAE's round trip of it (a
    # pixel-space skip from the render past the latent, the role of Difix3D+'s decoder skip connections).
    render_skip: bool = False
    # With the render skip, low-pass the change (Gaussian, σ in pixels) where the render has content, weighted
    # by its opacity; in its holes the change stays whole. There the decoded change's finest detail is the
    # VAE's noise rather than the scene's: it costs SSIM (docs/results.md §Levers). 0 = off.
    render_skip_sigma: float = 0.0

    def __post_init__(self) -> None:
        if self.render_skip_sigma < 0:
            raise VideoSceneError(f"pipeline render_skip_sigma={self.render_skip_sigma} must be ≥ 0 (pixels)")
        if self.render_skip_sigma > 0 and not self.render_skip:
            raise VideoSceneError(
                "pipeline render_skip_sigma filters the render skip's change: set render_skip: true"
            )
        if self.resize not in RESIZE_MODES:
            raise VideoSceneError(f"pipeline resize {self.resize!r} is not one of {', '.join(RESIZE_MODES)}")

    @classmethod
    def load(cls, path: str | os.PathLike) -> PipelineConfig:
        raw = read_json_object(path, "pipeline config")
        check_json_types(cls, raw, f"pipeline config {path}")
        try:
            return cls(**{**raw, "background": tuple(raw.get("background", cls.background))})
        except TypeError as error:
            raise VideoSceneError(f"pipeline config {path} has unknown fields ({error})") from None


class VideoScenePipeline:
    def __init__(
        self,
        config: PipelineConfig,
        prior: GaussianEncoder,
        distilled: DistilledStudent | None = None,
        teacher: VideoBackbone | None = None,
        distilled_noleap: DistilledStudent | None = None,
        device: torch.device | str = "cpu",
    ):
        if distilled is None and teacher is None:
            raise VideoSceneError("a pipeline needs a distilled student or a teacher video model")
        self.config = config
        self.prior = prior.eval()
        self.distilled = distilled
        self.teacher = teacher
        self.distilled_noleap = distilled_noleap
        self.device = torch.device(device)

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike | None = None,
        device: str | torch.device | None = "cpu",
        torch_dtype: torch.dtype | None = None,
    ) -> VideoScenePipeline:
        """Load a weights folder (default: the bundled tiny weights). bf16 by default on CUDA."""
        folder = Path(folder) if folder is not None else BUNDLED_WEIGHTS
        device = resolve_device(device)
        torch_dtype = torch_dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        if not (folder / PIPELINE_CONFIG).is_file():
            raise VideoSceneError(
                f"{folder} is not a VideoScene weights folder (no {PIPELINE_CONFIG}); pass --weights "
                "DIR holding "
                "pipeline.json, prior/, distilled/ and/or teacher/"
            )
        config = PipelineConfig.load(folder / PIPELINE_CONFIG)
        if not (folder / "prior").is_dir():
            raise VideoSceneError(f"{folder} has no prior/ folder (prior.safetensors + prior_config.json)")
        prior = GaussianEncoder.load(folder / "prior").to(device)

        def optional_distilled(name: str) -> DistilledStudent | None:
            return load_distilled(folder / name, device, torch_dtype) if (folder / name).is_dir() else None

        teacher = None
        if (folder / "teacher").is_dir():
            teacher = (
                VideoBackbone.from_pretrained(folder / "teacher", torch_dtype=torch_dtype).to(device).eval()
            )
        return cls(
            config,
            prior,
            optional_distilled("distilled"),
            teacher,
            optional_distilled("distilled_noleap"),
            device,
        )

    def to(self, device: str | torch.device) -> VideoScenePipeline:
        """Move every component to `device` (like a diffusers pipeline); returns the pipeline."""
        self.device = resolve_device(device)
        self.prior.to(self.device)
        for student in (self.distilled, self.distilled_noleap):
            if student is not None:
                student.student.to(self.device)
                if student.ddpnet is not None:
                    student.ddpnet.to(self.device)
        if self.teacher is not None:
            self.teacher.to(self.device)
        return self

    # --------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        images: Float[Tensor, "2 3 height width"] | Sequence[ImageLike],
        cameras: Cameras | None = None,
        target_cameras: Cameras | None = None,
        num_frames: int | None = None,
        timestep: int | Literal["auto"] | None = "auto",
        num_steps: int = 1,
        model: Literal["student", "student-noleap", "teacher"] = "student",
        seed: int = 0,
        near: float | None = None,
        far: float | None = None,
        resize: Literal["crop", "stretch"] | None = None,
        vae_tiling: bool | None = None,
    ) -> VideoSceneOutput:
        """Generate the video between two views.

        `images`: a [2, 3, H, W] tensor in [0, 1], or two images as PIL images, paths, [H, W, 3] arrays or
        [3, H, W] tensors (`image_io.as_image_tensor`). `cameras`: the two views' cameras (OpenCV
        camera-to-world, normalised intrinsics), or None to estimate them from the pair (SIFT, essential
        matrix, 60° field of view, baseline 1; near and far from the estimate unless given). `target_cameras`:
        the F cameras to render (F = 8k+1, both views included), or None for an interpolated path of
        `num_frames`. `timestep`: "auto" (DDPNet), an int t (start from the render noised to t), or None
        (start from pure noise: the plain teacher / the no-leap ablation). `resize`: "crop" (centre-crop to
        the model's aspect ratio, then resize) or "stretch" (resize to the model's size whatever the aspect
        ratio, as the authors do; normalised intrinsics are unchanged by it); None: the weights'
        `pipeline.json` (crop unless it says otherwise). `vae_tiling`: encode and decode
        in spatial tiles (True) or whole frames (False, the authors' setting, more memory); None keeps the
        weights' setting.
        """
        timings: dict[str, float] = {}
        peak_memory: dict[str, int] = {}
        generator = torch.Generator().manual_seed(seed)
        height, width = self.config.height, self.config.width

        # 1. Check inputs (and estimate the cameras of an unposed pair)
        backbone = self._backbone(model, num_steps)
        if not isinstance(images, Tensor):
            images = torch.stack([as_image_tensor(image) for image in images])
        if cameras is None:
            from videoscene.geometry.relative_pose import estimate_cameras  # OpenCV only for unposed input

            if target_cameras is not None:
                raise VideoSceneError("target cameras need the views' cameras too; pass cameras")
            self._check_images(images)
            estimate = estimate_cameras(images.float().cpu())
            cameras = estimate.cameras
            near = estimate.near if near is None else near
            far = estimate.far if far is None else far
        self._check_inputs(images, cameras, target_cameras)
        near = self.config.near if near is None else near
        far = self.config.far if far is None else far
        if not 0 < near < far:
            raise VideoSceneError(f"need 0 < near < far, got near={near}, far={far}")
        resize = self.config.resize if resize is None else resize
        if resize not in RESIZE_MODES:
            raise VideoSceneError(f"unknown resize mode {resize!r}; choose one of {', '.join(RESIZE_MODES)}")
        backbone.check_video_size(height, width)

        # 2. Bring the views to the model's resolution (the intrinsics follow a crop; a resize keeps them)
        bring_to_size = stretch_to_size if resize == "stretch" else crop_to_aspect_and_resize
        context_images, context_intrinsics = bring_to_size(
            images.float(), cameras.intrinsics.float(), (height, width)
        )
        context = Views(
            image=context_images[None],
            extrinsics=cameras.extrinsics.float()[None],
            intrinsics=context_intrinsics[None],
            near=torch.full((1, 2), near),
            far=torch.full((1, 2), far),
        ).to(self.device)

        # 3. The camera path the video follows
        path = self._camera_path(
            cameras, context_intrinsics, target_cameras, num_frames, tuple(images.shape[-2:]), resize
        )
        check_memory(len(path), height, width, self.device)
        path_cameras = Cameras(path.extrinsics[None], path.intrinsics[None]).to(self.device)

        # 4. Coarse 3D: feed-forward Gaussians from the two views (their cameras were checked in step 1)
        with _timed(timings, peak_memory, "prior"):
            gaussians = self.prior(context, assume_rigid=True).gaussians

        # 5. Coarse video: render the Gaussians along the path
        with _timed(timings, peak_memory, "render"):
            background = torch.tensor([self.config.background], device=self.device)
            coarse, opacity = render_coarse_with_alpha(
                gaussians, context, path_cameras, (height, width), background
            )
            coarse = coarse.clamp(0, 1)

        # 6. Encode the render (x₀ʳ) and the two views (condition latents [first, 0, …, 0, last])
        with _timed(timings, peak_memory, "vae_encode"), backbone.vae_tiling(vae_tiling):
            dtype = backbone.vae.dtype
            render_latents = backbone.encode_video(coarse.to(dtype), generator=generator)
            condition = encode_condition_frames(
                backbone,
                context.image[:, 0].to(dtype),
                context.image[:, 1].to(dtype),
                render_latents.shape[1],
                generator=generator,
            )

        # 7. Choose where the denoising starts (DDPNet reads x₀ʳ and, if trained so, the views' disagreement)
        with _timed(timings, peak_memory, "policy"):
            start = self._start_timestep(
                backbone, model, timestep, render_latents, gaussians, context, path_cameras
            )
        start_t = None if start is None else int(start[0])

        # 8. Denoise: one student step from the leap, or the multi-step teacher
        with _timed(timings, peak_memory, "denoise"):
            if model == "teacher":
                sampling = SamplingConfig(num_steps=num_steps, start_timestep=start_t)
                start_latents = None if start is None else render_latents
                latents = sample_latents(
                    backbone, condition, sampling, generator=generator, start_latents=start_latents
                )
            else:
                latents = self._student(model).generate(render_latents, condition, start, generator=generator)

        # 9. Decode (with the render skip: only the change the denoiser made to x₀ʳ)
        with _timed(timings, peak_memory, "vae_decode"), backbone.vae_tiling(vae_tiling):
            frames = backbone.decode_latents(latents)
            if self.config.render_skip:
                frames = render_skip(
                    coarse.to(frames.dtype),
                    frames,
                    backbone.decode_latents(render_latents),
                    opacity.to(frames.dtype),
                    self.config.render_skip_sigma,
                )
        timings["total"] = sum(timings.values())

        method = model if model != "teacher" else f"teacher{'' if start is None else '-leap'}@{num_steps}"
        return VideoSceneOutput(
            frames=frames[0].float().cpu(),
            coarse_frames=coarse[0].float().cpu(),
            gaussians=gaussians.select(0).to("cpu"),
            cameras=Cameras(path.extrinsics.cpu(), path.intrinsics.cpu()),
            timestep=start_t,
            method=method,
            inputs=context.image[0].float().cpu(),
            timings=timings,
            peak_memory=peak_memory,
        )

    # --------------------------------------------------------------------------------------------------------
    def _student(self, model: str) -> DistilledStudent:
        student = self.distilled_noleap if model == "student-noleap" else self.distilled
        if student is None:
            folder = "distilled_noleap/" if model == "student-noleap" else "distilled/"
            raise VideoSceneError(
                f"the weights folder has no {folder} (a `videoscene train distill` output) for model "
                f"{model!r}"
            )
        return student

    def _backbone(self, model: str, num_steps: int) -> VideoBackbone:
        if model == "teacher":
            if self.teacher is None:
                raise VideoSceneError("the weights folder has no teacher/ video model; use model='student'")
            return self.teacher
        if model not in ("student", "student-noleap"):
            raise VideoSceneError(f"unknown model {model!r}; use student, student-noleap or teacher")
        if num_steps != 1:
            raise VideoSceneError(
                f"the distilled student takes exactly one step (got {num_steps}); use the teacher for more"
            )
        return self._student(model).student

    @staticmethod
    def _check_images(images: Tensor) -> None:
        if images.ndim != 4 or images.shape[0] != 2 or images.shape[1] != 3:
            raise VideoSceneError(
                f"need exactly two RGB images as a [2, 3, H, W] tensor, got shape {list(images.shape)}"
            )
        check_finite("images", images)
        if images.min() < 0 or images.max() > 1:
            raise VideoSceneError("images must be floats in [0, 1]")

    def _check_inputs(self, images: Tensor, cameras: Cameras, target_cameras: Cameras | None) -> None:
        self._check_images(images)
        if cameras.extrinsics.shape != (2, 4, 4) or cameras.intrinsics.shape != (2, 3, 3):
            raise VideoSceneError(
                "need two cameras: extrinsics [2, 4, 4] and intrinsics [2, 3, 3], got "
                f"{list(cameras.extrinsics.shape)} "
                f"and {list(cameras.intrinsics.shape)}"
            )
        # The one rigidity check of this call: the prior and the camera path trust it.
        check_rigid(cameras.extrinsics, "camera extrinsics")
        check_finite("camera intrinsics", cameras.intrinsics)
        if torch.dist(cameras.extrinsics[0, :3, 3], cameras.extrinsics[1, :3, 3]) < 1e-6:
            raise VideoSceneError(
                "the two cameras are at the same position; two views with some baseline are needed"
            )
        if target_cameras is not None:
            count = len(target_cameras)
            if count < 9 or (count - 1) % 8:
                raise VideoSceneError(
                    f"target cameras must number 8k+1 (9, 17, 25, 49) so the VAE round-trips, got {count}"
                )
            check_rigid(target_cameras.extrinsics, "target camera extrinsics")

    def _camera_path(
        self,
        cameras: Cameras,
        context_intrinsics: Tensor,
        target_cameras: Cameras | None,
        num_frames: int | None,
        input_shape: tuple[int, int],
        resize: str,
    ) -> Cameras:
        size = (self.config.height, self.config.width)
        if target_cameras is not None:
            # Target intrinsics are given for the input image size; apply the same crop and resize as the
            # views (a stretch leaves normalised intrinsics as they are).
            intrinsics = target_cameras.intrinsics.float()
            if resize == "crop":
                intrinsics = crop_to_aspect_and_resize_intrinsics(intrinsics, input_shape, size)
            return Cameras(target_cameras.extrinsics.float(), intrinsics)
        count = self.config.num_frames if num_frames is None else num_frames
        if count < 9 or (count - 1) % 8:
            raise VideoSceneError(
                f"--frames must be 8k+1 (9, 17, 25, 49) so the VAE round-trips, got {count}"
            )
        extrinsics, intrinsics = interpolate_cameras(
            cameras.extrinsics[0].float(),
            cameras.extrinsics[1].float(),
            context_intrinsics[0],
            context_intrinsics[1],
            count,
            assume_rigid=True,
        )
        return Cameras(extrinsics, intrinsics)

    def _start_timestep(
        self,
        backbone: VideoBackbone,
        model: str,
        timestep: int | Literal["auto"] | None,
        render_latents: Tensor,
        gaussians: Gaussians,
        context: Views,
        path_cameras: Cameras,
    ) -> Tensor | None:
        """`start_timestep` for this call ([1]), or None to start from pure noise: the plain teacher, and the
        no-leap student (its own `start_timestep` gives T−1). "auto" is the leap student's DDPNet (for the
        teacher too), else the weights' fallback t."""
        if model != "teacher" and self._student(model).leap.no_leap:
            return None
        if timestep is None:
            if model != "teacher":
                raise VideoSceneError(
                    "the leap student starts from the render: give timestep='auto' or an int t"
                )
            return None
        policy = self.distilled.ddpnet if timestep == "auto" and self.distilled is not None else None
        disagreement = None
        if policy is not None and policy.config.view_disagreement:
            vae = self.distilled.student.config.vae
            disagreement = policy_inputs(
                gaussians,
                context,
                path_cameras,
                (self.config.height, self.config.width),
                vae.temporal_compression_ratio,
                vae.spatial_compression,
            )
        fixed = self.config.fallback_timestep if timestep == "auto" else timestep
        num_train_timesteps = backbone.config.schedule.num_train_timesteps
        return start_timestep(policy, fixed, False, num_train_timesteps, render_latents.float(), disagreement)

    def describe(self) -> dict:
        return {
            "config": asdict(self.config),
            "has_teacher": self.teacher is not None,
            "has_student": self.distilled is not None,
            "has_ddpnet": self.distilled is not None and self.distilled.ddpnet is not None,
            "has_student_noleap": self.distilled_noleap is not None,
        }


# Peak memory of one generation grows linearly with frames × pixels: measured on the tiny weights (fp32, CPU)
# at 17-385 frames of 64×96, 153 MB → 1.8 GB, i.e. about 750 bytes per output pixel and frame.
BYTES_PER_PIXEL_FRAME = 750


def available_memory(device: torch.device) -> int:
    """Bytes free for a generation on `device`: CUDA's free memory, else the system's MemAvailable."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_memory(num_frames: int, height: int, width: int, device: torch.device) -> None:
    """Refuse, before any work, a frame count whose generation would not fit in memory."""
    needed = BYTES_PER_PIXEL_FRAME * num_frames * height * width
    free = available_memory(device)
    if needed > free:
        fitting = max(9, (free // (BYTES_PER_PIXEL_FRAME * height * width) - 1) // 8 * 8 + 1)
        raise VideoSceneError(
            f"{num_frames} frames at {width}x{height} need about {needed / 1024**3:.1f} GiB but "
            f"{free / 1024**3:.1f} GiB "
            f"is free on {device}; ask for at most {fitting} frames"
        )


@contextmanager
def _timed(timings: dict[str, float], peak_memory: dict[str, int], name: str) -> Iterator[None]:
    """Add the stage's seconds to `timings[name]`; on CUDA, also its peak allocated memory."""
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    yield
    if cuda:
        torch.cuda.synchronize()
        peak_memory[name] = max(peak_memory.get(name, 0), torch.cuda.max_memory_allocated())
    timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
