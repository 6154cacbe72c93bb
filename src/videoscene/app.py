"""`videoscene app`: a Gradio web app around `VideoScenePipeline` (docs/app.md).

Upload two photos (and optionally a cams.json; without one the cameras are estimated from the photos by
`geometry.relative_pose`), pick the frame count, the timestep ("auto" = DDPNet) and the seed, and get the
coarse render and the generated video side by side, the timestep used, the per-stage timings, and the mp4
and the Gaussians (.ply) to download. The pipeline is loaded once, when the app starts; the server binds to
127.0.0.1 unless --host says otherwise.

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from videoscene import arguments
from videoscene.arguments import resolve_device
from videoscene.demo import DEMO_ASSETS
from videoscene.errors import VideoSceneError
from videoscene.generate import load_cameras_file, load_image
from videoscene.geometry.relative_pose import estimate_cameras_for_files
from videoscene.image_io import MIN_IMAGE_SIDE

try:
    import gradio as gr
except ImportError:  # the `demo` extra is optional; `videoscene app` says how to install it
    gr = None

logger = logging.getLogger(__name__)

FRAME_CHOICES = (9, 17, 25, 49)  # 8k + 1, so the VAE round-trips (docs/conventions.md)
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
    summary: str  # Markdown: timestep, timings, cameras
    downloads: list[str]  # video.mp4 and gaussians.ply
    report: dict


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
        progress: Progress | None = None,
    ) -> AppResult:
        """Validate the uploads, run the pipeline, write the outputs. Bad input raises `gr.Error` (one
        line)."""
        progress = progress or (lambda *args, **kwargs: None)
        try:
            return self._generate(image_a, image_b, cameras_file, frames, timestep, seed, fov, progress)
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
        self, image_a, image_b, cameras_file, frames, timestep, seed, fov, progress: Progress
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
        num_frames = _parse_frames(frames)
        start = _parse_timestep(timestep)
        seed = _parse_seed(seed)
        fov = None if fov in (None, "", 0) else float(fov)

        # 2. Cameras: from the file, or estimated from the photos
        if cameras_file:
            progress(0.1, desc="reading the cameras file")
            self._check_size(cameras_file, "cameras file", self.config.max_cameras_bytes)
            cameras, targets, near, far = load_cameras_file(cameras_file, tuple(images.shape[-2:]))
            camera_report = {"source": "file"}
        else:
            progress(0.1, desc="estimating the cameras from the photos")
            estimate = estimate_cameras_for_files(images, paths, fov=fov)
            cameras, targets, near, far = estimate.cameras, None, estimate.near, estimate.far
            camera_report = {"source": "estimated", **estimate.summary()}

        # 3. Generate (one run at a time)
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

        # 4. Write the outputs atomically into this run's folder, and drop the oldest runs
        progress(0.9, desc="writing the outputs")
        out = self.output_root / f"run-{next(self._run_numbers):05d}"
        record = {
            "images": [Path(path).name for path in paths],
            "frames": num_frames,
            "timestep": start,
            "seed": seed,
            "fov": fov,
        }
        output.save(
            out,
            report={
                "pipeline": self.pipeline.describe(),
                "arguments": record,
                "cameras_source": camera_report,
            },
        )
        self._prune_runs()
        progress(1.0, desc="done")
        report = {
            "method": output.method,
            "timestep": output.timestep,
            "timestep_source": self._timestep_source(start),
            "num_frames": int(output.frames.shape[0]),
            "resolution": list(output.frames.shape[-2:]),
            "timings_seconds": {name: round(seconds, 3) for name, seconds in output.timings.items()},
            "cameras": camera_report,
        }
        return AppResult(
            coarse_video=str(out / "coarse.mp4"),
            video=str(out / "video.mp4"),
            summary=summary_markdown(report),
            downloads=[str(out / "video.mp4"), str(out / "gaussians.ply")],
            report=report,
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
        """The Gradio page: inputs on the left, the coarse and generated videos side by side on the right."""
        config = self.pipeline.config

        # Gradio finds the progress tracker by this default value, so it has to be a call in the signature.
        def on_generate(
            image_a,
            image_b,
            cameras_file,
            frames,
            timestep,
            seed,
            fov,
            progress=gr.Progress(),  # noqa: B008
        ):
            result = self.generate(
                image_a, image_b, cameras_file, frames, timestep, seed, fov, progress=progress
            )
            return result.coarse_video, result.video, result.summary, result.downloads

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
                        timestep = gr.Textbox(
                            value="auto", label="Timestep t ('auto' = DDPNet, or 1-999)", elem_id="timestep"
                        )
                        seed = gr.Number(value=0, precision=0, label="Seed", elem_id="seed")
                    with gr.Accordion("Estimated cameras", open=False):
                        fov = gr.Number(
                            value=None,
                            label="Horizontal field of view in degrees (empty: EXIF, else 60)",
                            elem_id="fov",
                        )
                    run = gr.Button("Generate", variant="primary", elem_id="generate")
                    gr.Examples(  # the demo's held-out synthetic room, shipped in the package
                        examples=[
                            [
                                str(DEMO_ASSETS / "view_0.png"),
                                str(DEMO_ASSETS / "view_1.png"),
                                str(DEMO_ASSETS / "cams.json"),
                            ]
                        ],
                        inputs=[image_a, image_b, cameras_file],
                        label="Example: a held-out synthetic room (the bundled weights' domain)",
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
                    summary = gr.Markdown(elem_id="summary")
                    downloads = gr.File(
                        label="Downloads: video.mp4, gaussians.ply",
                        file_count="multiple",
                        elem_id="downloads",
                    )
            run.click(
                on_generate,
                inputs=[image_a, image_b, cameras_file, frames, timestep, seed, fov],
                outputs=[coarse_video, video, summary, downloads],
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
    lines = [
        (
            f"**Timestep** t = {timestep if timestep is not None else 'pure noise'} "
            f"({report['timestep_source']}) · "
            f"**{report['num_frames']} frames** at {width}×{height} · {report['method']}"
        ),
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
