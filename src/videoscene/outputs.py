"""What the pipeline returns, and the one place that writes it to a folder (`videoscene generate`, the app and
`VideoSceneOutput.save` write the same files):

    video.mp4           the generated video (8 fps)             frames/NNN.png   its frames
    coarse.mp4          the prior's render along the same cameras (what the student repairs)
    gaussians.ply       the prior's 3D Gaussians (Inria 3DGS layout)
    cameras.json        the cameras of the frames (Inria layout; img_name = frames/NNN.png)
    comparison.png      labelled rows: input views · coarse render · generated (open this first)
    report.json         method, t, sizes, seconds (and peak GPU memory) per stage, cameras, versions

The world frame is camera 0 in OpenCV axes (y down); `y_up=True` writes the PLY and cameras.json in a y-up
frame instead (a half turn about x), which splat viewers that assume y up display the right way up.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from jaxtyping import Float
from PIL import Image
from torch import Tensor

from videoscene import __version__
from videoscene.gaussians.ply import save_cameras_json, save_ply
from videoscene.gaussians.transform import Y_UP, transform_cameras, transform_gaussians
from videoscene.image_io import to_uint8, write_mp4
from videoscene.io_utils import staged_output_dir, write_json_atomic
from videoscene.types import Cameras, Gaussians


@dataclass
class VideoSceneOutput:
    frames: Float[Tensor, "frame 3 height width"]
    coarse_frames: Float[Tensor, "frame 3 height width"]
    gaussians: Gaussians
    cameras: Cameras  # the cameras the frames show, with intrinsics at the model's resolution
    timestep: int | None  # where the denoising started (None: from pure noise)
    method: str
    inputs: Float[Tensor, "2 3 height width"]  # the two views as the model saw them (its resolution)
    timings: dict[str, float] = field(default_factory=dict)
    # Peak GPU memory allocated during each stage, in bytes (CUDA only; empty on the CPU).
    peak_memory: dict[str, int] = field(default_factory=dict)

    @property
    def images(self) -> list[Image.Image]:
        """The generated frames as PIL images (diffusers' output convention)."""
        return [Image.fromarray(frame) for frame in to_uint8(self.frames).permute(0, 2, 3, 1).numpy()]

    def save(
        self,
        out: str | os.PathLike,
        overwrite: bool = False,
        y_up: bool = False,
        report: dict | None = None,
    ) -> Path:
        """Write the files of the module docstring into `out`, atomically (all or nothing). `report`: more
        entries for report.json. `overwrite` replaces only a folder that videoscene wrote."""
        gaussians, cameras = self.gaussians, self.cameras
        if y_up:
            gaussians, cameras = transform_gaussians(gaussians, Y_UP), transform_cameras(cameras, Y_UP)
        frame_names = [f"frames/{index:03d}.png" for index in range(self.frames.shape[0])]
        with staged_output_dir(out, overwrite=overwrite) as stage:
            write_mp4(stage / "video.mp4", self.frames)
            write_mp4(stage / "coarse.mp4", self.coarse_frames)
            (stage / "frames").mkdir()
            for name, image in zip(frame_names, self.images, strict=True):
                image.save(stage / name)
            save_ply(stage / "gaussians.ply", gaussians)
            save_cameras_json(stage / "cameras.json", cameras, tuple(self.frames.shape[-2:]), frame_names)
            plot_comparison(stage / "comparison.png", self)
            write_json_atomic(
                stage / "report.json",
                {
                    "method": self.method,
                    "timestep": self.timestep,
                    "num_frames": int(self.frames.shape[0]),
                    "resolution": list(self.frames.shape[-2:]),
                    "timings_seconds": {k: round(v, 4) for k, v in self.timings.items()},
                    **({"peak_memory_bytes": self.peak_memory} if self.peak_memory else {}),
                    "world_frame": "y-up (camera 0 turned half about x)" if y_up else "camera 0, OpenCV axes",
                    "cameras": {
                        "extrinsics": cameras.extrinsics.tolist(),
                        "intrinsics": cameras.intrinsics.tolist(),
                    },
                    **(report or {}),
                    "versions": {
                        "videoscene": __version__,
                        "torch": torch.__version__,
                        "python": sys.version.split()[0],
                        "platform": platform.platform(),
                    },
                },
            )
        return Path(out)


def plot_comparison(path: Path, output: VideoSceneOutput, columns: int = 5) -> None:
    """comparison.png: labelled rows (the two input views · the coarse render · the generated video, with its
    method and t) at evenly spaced, numbered frames; small videos are upscaled with nearest neighbours."""
    from matplotlib.figure import Figure

    frames, coarse, inputs = output.frames, output.coarse_frames, output.inputs
    picks = torch.linspace(0, frames.shape[0] - 1, columns).round().long().tolist()
    height, width = frames.shape[-2:]
    start = "pure noise" if output.timestep is None else f"t = {output.timestep}"
    rows = {
        "inputs": {0: inputs[0], columns - 1: inputs[1]},
        "coarse render": {c: coarse[k] for c, k in enumerate(picks)},
        f"generated\n{output.method}, {start}": {c: frames[k] for c, k in enumerate(picks)},
    }
    panel = 1.7  # inches per panel width: 5 columns at 100 dpi are 850 pixels wide
    figure = Figure(
        figsize=(panel * columns + 0.5, panel * height / width * len(rows) + 0.5), layout="constrained"
    )
    grid = figure.subplots(len(rows), columns, squeeze=False)
    for r, (label, panels) in enumerate(rows.items()):
        for c in range(columns):
            axes = grid[r][c]
            axes.set_xticks([])
            axes.set_yticks([])
            if c in panels:
                axes.imshow(to_uint8(panels[c]).permute(1, 2, 0).numpy(), interpolation="nearest")
            else:
                axes.set_frame_on(False)
            if r == 0 and c in panels:
                axes.set_title("first view" if c == 0 else "last view", fontsize=8)
            if r == 1:
                axes.set_title(f"frame {picks[c]}", fontsize=8)
            if c == 0:
                axes.set_ylabel(label, fontsize=8)
    figure.savefig(path, dpi=100)
