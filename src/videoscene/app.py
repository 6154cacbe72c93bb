"""`videoscene app`: a Gradio web app around `VideoScenePipeline` (docs/app.md).

Upload two photos (and optionally a cams.json; without one the cameras are estimated from the photos by
`geometry.relative_pose`, at a chosen field of view and baseline), or click an example; pick the frame count,
the camera path (between the views, or extended beyond both), the timestep ("auto" = DDPNet) and the seed,
and get the coarse render and the generated video side by side, the 3D Gaussians in a viewer, the timestep
used, the per-stage timings, and the videos, frames, Gaussians and cameras to download. With "3D
reconstruction steps" above 0 the app also fits 3D Gaussians to the generated video (`videoscene
reconstruct`, docs/reconstruct.md): the viewer then shows the fitted Gaussians, and a fly-through along a
path off the generated one and the fitted PLY join the downloads. The pipeline is
loaded once, when the app starts; the server binds to 127.0.0.1 unless --host says otherwise.

`VideoSceneApp.generate` is the whole request handler and needs no browser: tests call it directly.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import weakref
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from videoscene import arguments
from videoscene.arguments import resolve_device
from videoscene.demo import DEMO_ASSETS
from videoscene.errors import VideoSceneError
from videoscene.generate import load_cameras_file, load_image
from videoscene.geometry.cameras import check_rigid
from videoscene.geometry.relative_pose import estimate_cameras_for_files
from videoscene.geometry.trajectory import extended_cameras
from videoscene.image_io import MIN_IMAGE_SIDE
from videoscene.io_utils import atomic_path
from videoscene.reconstruct.cli import reconstruct_folder
from videoscene.reconstruct.optimize import ReconstructConfig
from videoscene.types import Cameras

try:
    import gradio as gr
except ImportError:  # the `demo` extra is optional; `videoscene app` says how to install it
    gr = None

logger = logging.getLogger(__name__)

FRAME_CHOICES = (9, 17, 25, 49)  # 8k + 1, so the VAE round-trips (docs/conventions.md)
# "extend" continues the path beyond each view by half the motion between them: twice as long, with the views
# at a quarter and three quarters of it, on frames exactly for every 8k + 1 count (`extended_cameras`).
TRAJECTORIES = ("interpolate", "extend")
DOWNLOADS = ("video.mp4", "coarse.mp4", "frames.zip", "gaussians.ply", "cameras.json")
# With a reconstruction, its files under names of their own (the download list shows file names only).
RECONSTRUCTION_DOWNLOADS = {"flythrough.mp4": "flythrough.mp4", "gaussians.ply": "gaussians_fitted.ply"}
MAX_RECONSTRUCT_STEPS = 2000
EXTEND = 0.5
EXAMPLES_DIR = Path(__file__).parent / "assets" / "examples"  # made by benchmarks/make_app_examples.py
Progress = Callable[..., object]


@dataclass(frozen=True)
class AppConfig:
    max_upload_bytes: int = (
        20 * 1024**2
    )  # per file; Gradio refuses larger uploads before they reach the handler
    max_image_pixels: int = 24_000_000  # e.g. 6000 × 4000; decoded photos above this are refused
    min_image_side: int = MIN_IMAGE_SIDE  # the same floor as `videoscene generate`
    max_cameras_bytes: int = 1024**2
    keep_runs: int = 16  # finished runs kept on disk (their files are what the page links to)
    output_root: Path | None = None  # where runs are written (default: a fresh temporary folder)


@dataclass
class AppResult:
    coarse_video: str
    video: str
    gaussians: str  # gaussians.ply for the 3D view, in camera 0's OpenCV frame (upright in Gradio's viewer)
    summary: str  # Markdown: timestep, path, timings, cameras
    downloads: list[str]  # video.mp4, coarse.mp4, frames.zip, gaussians.ply, cameras.json (+ reconstruction)
    report: dict
    flythrough: str | None = None  # with a reconstruction: the fitted Gaussians along a path off the video's


def example_rows() -> tuple[list[list], list[str]]:
    """The page's examples as rows of (first view, last view, cameras file, frames, trajectory), and their
    labels: the demo's room, and synthetic rooms of seeds no dataset uses
    (benchmarks/make_app_examples.py)."""
    demo = [str(DEMO_ASSETS / "view_0.png"), str(DEMO_ASSETS / "view_1.png"), str(DEMO_ASSETS / "cams.json")]
    unposed = [str(EXAMPLES_DIR / "unposed_room" / f"view_{i}.jpg") for i in (0, 1)]
    wide = [str(EXAMPLES_DIR / "wide_walk" / name) for name in ("view_0.png", "view_1.png", "cams.json")]
    rows = [
        ([*demo, "17", "interpolate"], "Synthetic room, cameras given"),
        ([*unposed, None, "17", "interpolate"], "Two photos, cameras estimated"),
        ([*wide, "25", "interpolate"], "A longer walk, 25 frames"),
        ([*demo, "17", "extend"], "Path extended beyond both views"),
    ]
    return [row for row, _ in rows], [label for _, label in rows]


class VideoSceneApp:
    """The pipeline (loaded once) and the request handler."""

    def __init__(self, pipeline, config: AppConfig = AppConfig()):
        self.pipeline = pipeline
        self.config = config
        if (
            config.output_root is None
        ):  # ours alone: removed with the app (at the latest when the process exits)
            self.output_root = Path(tempfile.mkdtemp(prefix="videoscene-app-"))
            self._cleanup = weakref.finalize(self, shutil.rmtree, self.output_root, ignore_errors=True)
        else:
            self.output_root = Path(config.output_root)
            self.output_root.mkdir(parents=True, exist_ok=True)
        self._run_numbers = itertools.count(1)
        self._lock = threading.Lock()  # one generation at a time: the CPU (or GPU) is the bottleneck anyway

    # --------------------------------------------------------------------------------------------- handler
    def generate(
        self,
        image_a: str | None,
        image_b: str | None,
        cameras_file: str | None = None,
        frames: int | str | None = None,
        timestep: str | int | None = "auto",
        seed: float | str | None = 0,
        fov: float | None = None,
        trajectory: str | None = "interpolate",
        baseline: float | None = None,
        reconstruct_steps: float | str | None = 0,
        progress: Progress | None = None,
    ) -> AppResult:
        """Validate the uploads, run the pipeline, write the outputs. Bad input raises `gr.Error` (one
        line)."""
        progress = progress or (lambda *args, **kwargs: None)
        try:
            return self._generate(
                image_a,
                image_b,
                cameras_file,
                frames,
                timestep,
                seed,
                fov,
                trajectory,
                baseline,
                reconstruct_steps,
                progress,
            )
        except VideoSceneError as error:
            logger.info("refused a request: %s", error)
            raise _user_error(self._without_server_paths(str(error))) from None
        except Exception as error:  # a bug: the page gets one line, the server log the traceback
            logger.exception("request failed")
            raise _user_error(
                f"generation failed with an internal error ({type(error).__name__}); the server log "
                "has the details"
            ) from None

    def _generate(
        self,
        image_a,
        image_b,
        cameras_file,
        frames,
        timestep,
        seed,
        fov,
        trajectory,
        baseline,
        reconstruct_steps,
        progress: Progress,
    ) -> AppResult:
        # 1. Check the uploads and the settings
        progress(0.0, desc="checking the uploads")
        if not image_a or not image_b:
            raise VideoSceneError("upload two photos of the same scene (first and last view)")
        paths = [str(image_a), str(image_b)]
        images = [self._load_photo(path, which) for path, which in zip(paths, ("first", "second"))]
        if images[0].shape != images[1].shape:
            raise VideoSceneError(
                f"the two photos differ in size ({images[0].shape[2]}x{images[0].shape[1]} vs "
                f"{images[1].shape[2]}x{images[1].shape[1]}); upload two photos of one size"
            )
        images = torch.stack(images)
        num_frames = _parse_frames(frames) or self.pipeline.config.num_frames
        start = _parse_timestep(timestep)
        seed = _parse_seed(seed)
        trajectory = _parse_trajectory(trajectory)
        fov = None if fov in (None, "", 0) else float(fov)
        baseline = _parse_baseline(baseline)
        reconstruct_steps = _parse_reconstruct_steps(reconstruct_steps)

        # 2. Cameras: from the file, or estimated from the photos
        if cameras_file:
            progress(0.1, desc="reading the cameras file")
            self._check_size(cameras_file, "cameras file", self.config.max_cameras_bytes)
            cameras, targets, near, far = load_cameras_file(cameras_file, tuple(images.shape[-2:]))
            camera_report = {"source": "file"}
        else:
            progress(0.1, desc="estimating the cameras from the photos")
            estimate = estimate_cameras_for_files(images, paths, fov=fov, baseline=baseline)
            cameras, targets, near, far = estimate.cameras, None, estimate.near, estimate.far
            camera_report = {"source": "estimated", **estimate.summary()}

        # 3. The camera path: the file's own targets, else between the views (the pipeline's default path),
        # else beyond them (target cameras for the input photos; the pipeline crops their intrinsics)
        if targets is not None:
            camera_path = "the cameras file's targets"
        elif trajectory == "extend":
            extrinsics, intrinsics = cameras.extrinsics, cameras.intrinsics
            check_rigid(extrinsics, "camera extrinsics")  # the pipeline's check, before they are extended
            targets = Cameras(
                *extended_cameras(*extrinsics, *intrinsics, num_frames, EXTEND, assume_rigid=True)
            )
            camera_path = "extend"
        else:
            camera_path = "interpolate"

        # 4. Generate (one run at a time)
        progress(0.3, desc="generating the video")
        with self._lock:
            output = self.pipeline(
                images,
                cameras,
                target_cameras=targets,
                num_frames=num_frames,
                timestep=start,
                seed=seed,
                near=near,
                far=far,
            )

        # 5. Write the outputs atomically into this run's folder (the PLY in camera 0's OpenCV frame, which
        # Gradio's splat viewer shows upright: docs/app.md), zip the frames, and drop the oldest runs
        progress(0.8 if reconstruct_steps else 0.9, desc="writing the outputs")
        out = self.output_root / f"run-{next(self._run_numbers):05d}"
        record = {
            "images": [Path(path).name for path in paths],
            "frames": num_frames,
            "timestep": start,
            "seed": seed,
            "trajectory": trajectory,
            "fov": fov,
            "baseline": baseline,
            "reconstruct_steps": reconstruct_steps,
        }
        output.save(
            out,
            report={
                "pipeline": self.pipeline.describe(),
                "arguments": record,
                "cameras_source": camera_report,
                "camera_path": camera_path,
            },
        )
        zip_frames(out / "frames", out / "frames.zip")
        downloads = [str(out / name) for name in DOWNLOADS]

        # 6. Optionally fit 3D Gaussians to the generated frames (written atomically to reconstruction/)
        reconstruction = None
        if reconstruct_steps:
            progress(0.85, desc=f"fitting 3D Gaussians to the video ({reconstruct_steps} steps)")
            with self._lock:
                reconstruction = reconstruct_folder(
                    out,
                    out / "reconstruction",
                    ReconstructConfig(steps=reconstruct_steps),
                    seed,
                    self.pipeline.device,
                    progress=False,
                )
            for name, alias in RECONSTRUCTION_DOWNLOADS.items():
                shutil.copyfile(out / "reconstruction" / name, out / alias)
                downloads.append(str(out / alias))
        self._prune_runs()
        progress(1.0, desc="done")
        report = {
            "method": output.method,
            "timestep": output.timestep,
            "timestep_source": self._timestep_source(start),
            "num_frames": int(output.frames.shape[0]),
            "resolution": list(output.frames.shape[-2:]),
            "camera_path": camera_path,
            "timings_seconds": {name: round(seconds, 3) for name, seconds in output.timings.items()},
            "cameras": camera_report,
        }
        if reconstruction is not None:
            report["reconstruction"] = {
                "steps": reconstruction["steps"],
                "seconds": reconstruction["seconds"],
                "gaussians": reconstruction["gaussians"],
                "psnr": reconstruction["psnr"],
                "initial_psnr": reconstruction["initial_psnr"],
            }
        fitted = reconstruction is not None
        return AppResult(
            coarse_video=str(out / "coarse.mp4"),
            video=str(out / "video.mp4"),
            gaussians=str(out / ("gaussians_fitted.ply" if fitted else "gaussians.ply")),
            summary=summary_markdown(report),
            downloads=downloads,
            report=report,
            flythrough=str(out / "flythrough.mp4") if fitted else None,
        )

    # ---------------------------------------------------------------------------------------------- checks
    def _check_size(self, path: str, what: str, limit: int) -> None:
        size = os.path.getsize(path)
        if size > limit:
            raise VideoSceneError(
                f"the {what} is {size / 1024**2:.1f} MB; the limit is {limit / 1024**2:.0f} MB"
            )

    def _load_photo(self, path: str, which: str) -> torch.Tensor:
        if not os.path.isfile(path):
            raise VideoSceneError(f"the {which} photo did not arrive; upload it again")
        self._check_size(path, f"{which} photo", self.config.max_upload_bytes)
        try:
            return load_image(path, self.config.max_image_pixels, self.config.min_image_side)
        except VideoSceneError as error:  # name the upload, not the server's temporary file
            raise VideoSceneError(str(error).replace(f"image {path}", f"the {which} photo")) from None

    def _without_server_paths(self, message: str) -> str:
        """Messages name uploads and runs by file name only, never by the server's folders."""
        for root in {str(self.output_root), tempfile.gettempdir(), os.environ.get("GRADIO_TEMP_DIR", "")} - {
            ""
        }:
            message = re.sub(re.escape(root) + r"[^\s;,'\"]*/([^\s;,'\"/]+)", r"\1", message)
        return message

    def _timestep_source(self, start: int | str) -> str:
        if start != "auto":
            return "chosen"
        return "DDPNet" if self.pipeline.describe()["has_ddpnet"] else "the weights' fixed fallback"

    def _prune_runs(self) -> None:
        runs = sorted(self.output_root.glob("run-*"))
        for old in runs[: max(0, len(runs) - self.config.keep_runs)]:
            shutil.rmtree(old, ignore_errors=True)

    # -------------------------------------------------------------------------------------------------- UI
    def build(self):
        """The Gradio page: inputs and examples on the left; on the right the coarse and generated videos side
        by side, the 3D Gaussians, the summary and the downloads."""
        config = self.pipeline.config

        # Gradio finds the progress tracker by this default value, so it has to be a call in the signature.
        def on_generate(
            image_a,
            image_b,
            cameras_file,
            frames,
            trajectory,
            timestep,
            seed,
            fov,
            baseline,
            reconstruct_steps,
            progress=gr.Progress(),  # noqa: B008
        ):
            result = self.generate(
                image_a,
                image_b,
                cameras_file,
                frames,
                timestep,
                seed,
                fov,
                trajectory,
                baseline,
                reconstruct_steps,
                progress=progress,
            )
            return (
                result.coarse_video,
                result.video,
                result.gaussians,
                result.flythrough,
                result.summary,
                result.downloads,
            )

        # Gradio keeps every upload in its cache: delete files older than an hour, checked hourly.
        with gr.Blocks(title="VideoScene", analytics_enabled=False, delete_cache=(3600, 3600)) as blocks:
            gr.Markdown(
                "# VideoScene\nTwo photos of a static scene in; a 3D-consistent video between them "
                "out, in one denoising "
                "step. Without a cameras file the cameras are estimated from the photos (docs/app.md)."
            )
            with gr.Row():
                with gr.Column(scale=2):
                    with gr.Row():
                        image_a = gr.Image(
                            label="First view", type="filepath", sources=["upload"], elem_id="image-a"
                        )
                        image_b = gr.Image(
                            label="Last view", type="filepath", sources=["upload"], elem_id="image-b"
                        )
                    cameras_file = gr.File(
                        label="Cameras (optional cams.json)",
                        file_types=[".json"],
                        type="filepath",
                        height=120,
                        elem_id="cameras",
                    )
                    with gr.Row():
                        frames = gr.Dropdown(
                            [str(count) for count in FRAME_CHOICES],
                            value=str(config.num_frames),
                            label="Frames",
                            elem_id="frames",
                        )
                        trajectory = gr.Radio(
                            list(TRAJECTORIES),
                            value="interpolate",
                            label="Camera path",
                            info="between the views, or extended beyond both",
                            elem_id="trajectory",
                        )
                    with gr.Row():
                        timestep = gr.Textbox(
                            value="auto", label="Timestep t ('auto' = DDPNet, or 1-999)", elem_id="timestep"
                        )
                        seed = gr.Number(value=0, precision=0, label="Seed", elem_id="seed")
                        reconstruct_steps = gr.Number(
                            value=0,
                            precision=0,
                            minimum=0,
                            maximum=MAX_RECONSTRUCT_STEPS,
                            label="3D reconstruction steps (0 = off; fits Gaussians to the video)",
                            elem_id="reconstruct-steps",
                        )
                    with gr.Accordion("Estimated cameras (photos without a cameras file)", open=False):
                        with gr.Row():
                            fov = gr.Number(
                                value=None,
                                label="Horizontal field of view in degrees (empty: EXIF, else 60)",
                                elem_id="fov",
                            )
                            baseline = gr.Number(
                                value=None,
                                label="Baseline: scene units between the cameras (empty: 1)",
                                elem_id="baseline",
                            )
                    run = gr.Button("Generate", variant="primary", elem_id="generate")
                    examples, labels = example_rows()
                    gr.Examples(  # files shipped in the package; a click fills in the inputs
                        examples=examples,
                        inputs=[image_a, image_b, cameras_file, frames, trajectory],
                        example_labels=labels,
                        label="Examples: synthetic rooms (the bundled weights' domain)",
                        elem_id="examples",
                    )
                with gr.Column(scale=3):
                    with gr.Row():
                        coarse_video = gr.Video(
                            label="Coarse render (3D Gaussians)",
                            elem_id="coarse-video",
                            loop=True,
                            autoplay=True,
                        )
                        video = gr.Video(label="Generated video", elem_id="video", loop=True, autoplay=True)
                    with gr.Row():
                        gaussians = gr.Model3D(
                            label="3D Gaussians (drag to orbit, scroll to zoom)",
                            height=360,
                            interactive=False,
                            elem_id="gaussians",
                        )
                        flythrough = gr.Video(
                            label="Fly-through of the fitted Gaussians (with a 3D reconstruction)",
                            elem_id="flythrough",
                            loop=True,
                            autoplay=True,
                        )
                    summary = gr.Markdown(elem_id="summary")
                    downloads = gr.File(
                        label="Downloads: videos, frames, Gaussians, cameras",
                        file_count="multiple",
                        interactive=False,
                        elem_id="downloads",
                    )
            run.click(
                on_generate,
                inputs=[
                    image_a,
                    image_b,
                    cameras_file,
                    frames,
                    trajectory,
                    timestep,
                    seed,
                    fov,
                    baseline,
                    reconstruct_steps,
                ],
                outputs=[coarse_video, video, gaussians, flythrough, summary, downloads],
                concurrency_limit=1,
            )
        return blocks

    def launch(self, host: str = "127.0.0.1", port: int | None = None, prevent_thread_lock: bool = False):
        blocks = self.build()
        blocks.queue(default_concurrency_limit=1)
        blocks.launch(
            server_name=host,
            server_port=port,
            max_file_size=self.config.max_upload_bytes,
            allowed_paths=[str(self.output_root)],
            ssr_mode=False,
            prevent_thread_lock=prevent_thread_lock,
        )
        return blocks


# ----------------------------------------------------------------------------------------------- parsing
def _parse_frames(frames) -> int | None:
    if frames in (None, ""):
        return None
    try:
        count = int(frames)
    except (TypeError, ValueError):
        raise VideoSceneError(
            f"frames must be one of {', '.join(map(str, FRAME_CHOICES))}, got {frames!r}"
        ) from None
    if count not in FRAME_CHOICES:
        raise VideoSceneError(f"frames must be one of {', '.join(map(str, FRAME_CHOICES))}, got {count}")
    return count


def _parse_timestep(timestep) -> int | str:
    text = str("auto" if timestep in (None, "") else timestep).strip().lower()
    try:
        start = arguments.timestep(text)
    except argparse.ArgumentTypeError:
        start = None
    if start in (
        None,
        "none",
    ):  # unparsable, or pure noise: the app runs the leap student, which starts from the render
        raise VideoSceneError(f"timestep must be 'auto' or a whole number t, got {timestep!r}")
    return start


def _parse_trajectory(trajectory) -> str:
    text = str(trajectory or "interpolate").strip().lower()
    if text not in TRAJECTORIES:
        raise VideoSceneError(f"trajectory must be one of {', '.join(TRAJECTORIES)}, got {trajectory!r}")
    return text


def _parse_reconstruct_steps(steps) -> int:
    """0 (no reconstruction) or a whole number of optimisation steps up to MAX_RECONSTRUCT_STEPS."""
    if steps in (None, ""):
        return 0
    try:
        value = float(steps)
    except (TypeError, ValueError):
        raise VideoSceneError(f"3D reconstruction steps must be a number, got {steps!r}") from None
    if not value.is_integer() or not 0 <= value <= MAX_RECONSTRUCT_STEPS:
        raise VideoSceneError(
            f"3D reconstruction steps must be a whole number from 0 (off) to {MAX_RECONSTRUCT_STEPS}, "
            f"got {steps}"
        )
    return int(value)


def _parse_baseline(baseline) -> float | None:
    """Scene units between the two estimated cameras; empty means the estimator's default (1)."""
    if baseline in (None, ""):
        return None
    try:
        value = float(baseline)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise VideoSceneError(f"baseline must be a positive number of scene units, got {baseline!r}")
    return value


def zip_frames(frames: Path, archive: Path) -> None:
    """frames.zip: the lossless PNG frames, stored as they are (PNG is compressed already); atomic."""
    with atomic_path(archive) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as bundle:
        for frame in sorted(frames.glob("*.png")):
            bundle.write(frame, f"frames/{frame.name}")


def _parse_seed(seed) -> int:
    if seed in (None, ""):
        return 0
    try:
        value = float(seed)
    except (TypeError, ValueError):
        raise VideoSceneError(f"seed must be a whole number from 0, got {seed!r}") from None
    if not math.isfinite(value) or value != int(value) or not 0 <= value < 2**63:
        raise VideoSceneError(f"seed must be a whole number from 0, got {seed!r}")
    return int(value)


def summary_markdown(report: dict) -> str:
    timestep = report["timestep"]
    height, width = report["resolution"]
    path = {
        "interpolate": "between the two views",
        "extend": f"extended beyond both views by {EXTEND:g} of the motion between them",
    }.get(report["camera_path"], report["camera_path"])
    lines = [
        (
            f"**Timestep** t = {timestep if timestep is not None else 'pure noise'} "
            f"({report['timestep_source']}) · "
            f"**{report['num_frames']} frames** at {width}×{height} · {report['method']}"
        ),
        "",
        f"**Camera path**: {path}.",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {name} | {seconds:.3f} |" for name, seconds in report["timings_seconds"].items()],
        "",
    ]
    cameras = report["cameras"]
    if cameras["source"] == "file":
        lines.append("**Cameras** from the uploaded file.")
    else:
        lines.append(
            f"**Cameras** estimated from the photos: {cameras['num_inliers']} inlier matches of "
            f"{cameras['num_matches']}, "
            f"field of view {cameras['fov_degrees']:.1f}° ({cameras['focal_source']}), near/far "
            f"{cameras['near']:.2f}/{cameras['far']:.2f} (in units of the distance between the two cameras)."
        )
    if "reconstruction" in report:
        fit = report["reconstruction"]
        lines += [
            "",
            f"**3D reconstruction**: {fit['steps']} steps in {fit['seconds']:.1f} s, "
            f"{fit['gaussians']['initial']} → {fit['gaussians']['final']} Gaussians; PSNR of their renders "
            f"against the generated frames {fit['initial_psnr']:.2f} → {fit['psnr']:.2f} dB. The 3D view "
            "shows the fitted Gaussians.",
        ]
    return "\n".join(lines)


def _user_error(message: str) -> Exception:
    return gr.Error(message, print_exception=False) if gr is not None else VideoSceneError(message)


# ---------------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, help="port (default: Gradio's, 7860 or the next free one)")
    parser.add_argument("--weights", help="weights folder (default: the bundled tiny weights)")
    parser.add_argument("--device", type=arguments.device, default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=AppConfig.max_upload_bytes / 1024**2,
        help="largest photo accepted",
    )


def run(args: argparse.Namespace) -> None:
    if gr is None:
        raise VideoSceneError(
            "the web app needs Gradio: pip install 'videoscene[demo]' (or pip install 'gradio>=5')"
        )
    if args.port is not None and not 0 < args.port < 65536:
        raise VideoSceneError(f"--port must be between 1 and 65535, got {args.port}")
    if not args.max_upload_mb > 0:
        raise VideoSceneError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    from videoscene.pipeline import VideoScenePipeline

    logging.getLogger("httpx").setLevel(
        logging.WARNING
    )  # Gradio's own health checks, one line each otherwise
    pipeline = VideoScenePipeline.from_pretrained(args.weights, device=resolve_device(args.device))
    app = VideoSceneApp(pipeline, AppConfig(max_upload_bytes=int(args.max_upload_mb * 1024**2)))
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("serving on %s: anyone who can reach this address can use the app", args.host)
    app.launch(args.host, args.port)
