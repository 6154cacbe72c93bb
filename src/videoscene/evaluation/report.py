"""What `videoscene eval` writes into its output folder:

- `metrics.json`: `{"methods": {name: {"psnr", "ssim", "sampson_px", "inlier_ratio", "seconds", "fvd", ...}},
  "reference": {"ground-truth": {...}}, "per_scene": [...], "config": {...}, "environment": {...}}`; a
  method's figures are means over scenes (of the scenes where the metric is defined; `scenes` counts them
  all), except `fvd`, one distance over all scenes (null without an I3D detector). NaN is written as null.
  "reference" holds the ground-truth frames' 3D-consistency scores. `psnr_seen`, `psnr_unseen`, `ssim_seen`,
  `ssim_unseen` and `unseen_share` are null for scenes without ground-truth depth, and their means are over
  the scenes that define them. `psnr_holdout`, `ssim_holdout` (and `*_holdout_seen`, `*_holdout_unseen`)
  score the renders at the index's holdout frames of the methods that build a 3D scene (`prior`,
  `recon-*`); null for the others and for scenes without holdout frames. `sampson_px_off_path` and
  `inlier_ratio_off_path`: the 3D consistency of those methods' renders along a path beside the generated
  one (no ground truth there); null for the others.
- `metrics.md`: the same means as a markdown table, the reference row last.
- `metrics.png`: one bar chart per metric; `quality_vs_seconds.png`: PSNR against seconds per scene.
- `figures/frames_<scene>.png`: ground truth and every method at the first scene's held-out targets;
  `figures/matches_<method>.png`: the matching figure (green RANSAC inliers, red outliers) of a pair of
  frames at target cameras of that scene.
"""

from __future__ import annotations

import logging
import math
import platform
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from PIL import Image

from videoscene.evaluation.runner import (
    REFERENCE,
    EvaluationResult,
    SceneResult,
    Showcase,
    consistency_config,
)
from videoscene.geometry.matching import Matches, sift_matches
from videoscene.image_io import to_uint8
from videoscene.io_utils import write_json_atomic
from videoscene.metrics.consistency import draw_matches, ransac_inliers

logger = logging.getLogger(__name__)

# (key in metrics.json, column title; the arrow says which way is better)
COLUMNS = (
    ("psnr", "PSNR ↑"),
    ("ssim", "SSIM ↑"),
    ("psnr_seen", "PSNR seen ↑"),
    ("psnr_unseen", "PSNR unseen ↑"),
    ("ssim_seen", "SSIM seen ↑"),
    ("ssim_unseen", "SSIM unseen ↑"),
    ("unseen_share", "unseen share"),
    ("psnr_holdout", "PSNR holdout ↑"),
    ("ssim_holdout", "SSIM holdout ↑"),
    ("psnr_holdout_seen", "PSNR holdout seen ↑"),
    ("psnr_holdout_unseen", "PSNR holdout unseen ↑"),
    ("ssim_holdout_seen", "SSIM holdout seen ↑"),
    ("ssim_holdout_unseen", "SSIM holdout unseen ↑"),
    ("lpips", "LPIPS ↓"),
    ("fvd", "FVD ↓"),
    ("sampson_px", "Sampson px ↓"),
    ("share_within_1px", "within 1 px ↑"),
    ("inlier_ratio", "RANSAC inlier ratio ↑"),
    ("sampson_px_off_path", "Sampson px off path ↓"),
    ("inlier_ratio_off_path", "RANSAC inlier ratio off path ↑"),
    ("temporal_error", "warp error ↓"),
    ("seconds", "s / scene ↓"),
)
_SEEN_UNSEEN = ("psnr_seen", "psnr_unseen", "ssim_seen", "ssim_unseen", "unseen_share")
_HOLDOUT = (
    "psnr_holdout",
    "ssim_holdout",
    "psnr_holdout_seen",
    "psnr_holdout_unseen",
    "ssim_holdout_seen",
    "ssim_holdout_unseen",
)
_OFF_PATH = ("sampson_px_off_path", "inlier_ratio_off_path")
# Columns shown only when computed: LPIPS and FVD need user-supplied network weights, the seen/unseen scores
# ground-truth depth, the holdout scores an index with holdout frames and a method that builds a 3D scene,
# the off-path scores such a method.
_OPTIONAL = ("lpips", "fvd", *_SEEN_UNSEEN, *_HOLDOUT, *_OFF_PATH)
_MEANS = (
    "psnr",
    "ssim",
    *_SEEN_UNSEEN,
    *_HOLDOUT,
    "lpips",
    "sampson_px",
    "share_within_1px",
    "inlier_ratio",
    "ransac_inliers",
    *_OFF_PATH,
    "temporal_error",
    "seconds",
    "max_time_error",
)
_FIGURE_COLUMNS = 6  # held-out targets shown in the frames figure
_FIGURE_MIN_HEIGHT = 192  # matching figures are upscaled to at least this many rows so lines stay visible


def _finite_mean(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def _means(rows: list[SceneResult]) -> dict[str, float | int | None]:
    means = {key: _finite_mean([float(getattr(r, key)) for r in rows]) for key in _MEANS}
    if means["lpips"] is None:  # LPIPS was not computed (no weights)
        del means["lpips"]
    return means | {"scenes": len(rows)}


def summarise(result: EvaluationResult) -> dict[str, dict[str, float | int | None]]:
    """Per method, the mean over scenes of every per-scene figure (`null` where no scene defines it), and
    the method's FVD over all scenes (`null` when it was not computed)."""
    return {
        method: _means([r for r in result.per_scene if r.method == method]) | {"fvd": result.fvd.get(method)}
        for method in result.methods
    }


def summarise_reference(result: EvaluationResult) -> dict[str, float | int | None]:
    """The ground-truth frames' 3D-consistency means (quality, temporal and time do not apply)."""
    means = _means([r for r in result.per_scene if r.method == REFERENCE])
    return {
        key: means.get(key)
        for key in ("sampson_px", "share_within_1px", "inlier_ratio", "ransac_inliers", "scenes")
    }


def environment(device: torch.device | str) -> dict[str, str | int]:
    """The machine the figures were measured on (for docs/results.md)."""
    device = torch.device(device)
    info: dict[str, str | int] = {
        "device": str(device),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def metrics_document(result: EvaluationResult, extra_config: dict, device: torch.device | str) -> dict:
    config = {
        "image_size": list(result.config.image_size),
        "num_frames": result.config.num_frames,
        "near": result.config.near,
        "far": result.config.far,
        "pair_gap": result.config.pair_gap,
        "seed": result.config.seed,
        "max_scenes": result.config.max_scenes,
        "visibility_tolerance": result.config.visibility_tolerance,
        **extra_config,
    }
    return {
        "methods": summarise(result),
        "reference": {REFERENCE: summarise_reference(result)},
        "per_scene": [row.record() for row in result.per_scene],
        "config": config,
        "environment": environment(device),
    }


def _format(value: float | None, key: str) -> str:
    if value is None:
        return "–"
    if key in (
        "psnr",
        "psnr_seen",
        "psnr_unseen",
        "psnr_holdout",
        "psnr_holdout_seen",
        "psnr_holdout_unseen",
        "fvd",
    ):
        return f"{value:.2f}"
    if key == "seconds":
        return f"{value:.3g}"
    return f"{value:.3f}"


def markdown_table(summary: dict[str, dict], reference: dict[str, dict] | None = None) -> str:
    """One row per method; `reference` rows (the ground-truth frames) last, in italics."""
    rows = list(summary.values())
    columns = [
        (key, title)
        for key, title in COLUMNS
        if any(key in row for row in rows)
        and (key not in _OPTIONAL or any(row.get(key) is not None for row in rows))
    ]
    lines = [
        "| method | " + " | ".join(title for _, title in columns) + " | scenes |",
        "|---|" + "---|" * (len(columns) + 1),
    ]
    for method, row in summary.items():
        lines.append(
            f"| `{method}` | "
            + " | ".join(_format(row.get(key), key) for key, _ in columns)
            + f" | {row['scenes']} |"
        )
    for name, row in (reference or {}).items():
        lines.append(
            f"| *{name} (reference)* | "
            + " | ".join(_format(row.get(key), key) for key, _ in columns)
            + f" | {row['scenes']} |"
        )
    return "\n".join(lines) + "\n"


def plot_metrics(summary: dict[str, dict], path: Path) -> None:
    columns = [c for c in COLUMNS if any(row.get(c[0]) is not None for row in summary.values())]
    rows = math.ceil(len(columns) / 4)
    figure = Figure(figsize=(3.2 * min(4, len(columns)), 3.0 * rows), layout="constrained")
    methods = list(summary)
    grid = figure.subplots(rows, min(4, len(columns)), squeeze=False).ravel()
    for axes in grid[len(columns) :]:
        axes.set_visible(False)
    for axes, (key, title) in zip(grid, columns):
        values = [summary[m].get(key) for m in methods]
        axes.bar(range(len(methods)), [np.nan if v is None else v for v in values], color="tab:blue")
        axes.set_xticks(range(len(methods)), methods, rotation=45, ha="right", fontsize=8)
        axes.set_title(title, fontsize=10)
    figure.savefig(path, dpi=100)


def plot_quality_vs_seconds(summary: dict[str, dict], path: Path) -> None:
    figure = Figure(figsize=(4.5, 3.5), layout="constrained")
    axes = figure.subplots()
    for method, row in summary.items():
        if row.get("psnr") is not None and row.get("seconds") is not None:
            axes.scatter(row["seconds"], row["psnr"])
            axes.annotate(
                method, (row["seconds"], row["psnr"]), fontsize=8, xytext=(3, 3), textcoords="offset points"
            )
    axes.set_xscale("log")
    axes.set_xlabel("seconds per scene (log)")
    axes.set_ylabel("PSNR (dB)")
    axes.grid(alpha=0.3)
    figure.savefig(path, dpi=100)


def plot_frames(showcase: Showcase, path: Path) -> None:
    """Rows: ground truth, then each method; columns: up to six held-out targets spread over the clip."""
    held_out = [position for position, held in enumerate(showcase.plan.held_out) if held]
    if not held_out:
        return
    chosen = [
        held_out[i]
        for i in np.unique(
            np.linspace(0, len(held_out) - 1, min(_FIGURE_COLUMNS, len(held_out))).round().astype(int)
        )
    ]
    rows = {"ground truth": showcase.truth, **showcase.frames}
    height, width = showcase.truth.shape[-2:]
    panel = 1.7  # inches per panel width
    figure = Figure(
        figsize=(panel * len(chosen) + 0.4, panel * height / width * len(rows) + 0.4), layout="constrained"
    )
    grid = figure.subplots(len(rows), len(chosen), squeeze=False)
    for r, (label, frames) in enumerate(rows.items()):
        for c, position in enumerate(chosen):
            axes = grid[r][c]
            axes.imshow(to_uint8(frames[position]).permute(1, 2, 0).numpy())
            axes.set_xticks([])
            axes.set_yticks([])
            if r == 0:
                axes.set_title(f"frame {showcase.plan.targets[position]}", fontsize=8)
            if c == 0:
                axes.set_ylabel(label, fontsize=8)
    figure.savefig(path, dpi=100)


def matching_figure(frames: torch.Tensor, pair: tuple[int, int], seed: int) -> np.ndarray:
    """The paper's Fig. 5 for one pair of frames: SIFT matches, green RANSAC inliers, red outliers."""
    image_a, image_b = frames[pair[0]], frames[pair[1]]
    config = consistency_config(seed)
    matches = sift_matches(image_a, image_b, config.matching)
    inliers = ransac_inliers(matches, config)
    scale = max(1, math.ceil(_FIGURE_MIN_HEIGHT / image_a.shape[-2]))
    big = F.interpolate(torch.stack([image_a, image_b]), scale_factor=scale, mode="nearest")
    scaled = Matches(matches.points_a * scale, matches.points_b * scale)
    return draw_matches(big[0], big[1], scaled, inliers)


def write_report(result: EvaluationResult, out: Path, extra_config: dict, device: torch.device | str) -> dict:
    """Write everything listed in the module docstring into `out` (a staging folder); returns metrics.json."""
    document = metrics_document(result, extra_config, device)
    write_json_atomic(out / "metrics.json", document)
    (out / "metrics.md").write_text(markdown_table(document["methods"], document["reference"]))
    plot_metrics(document["methods"], out / "metrics.png")
    plot_quality_vs_seconds(document["methods"], out / "quality_vs_seconds.png")
    showcase = result.showcase
    if showcase is not None:
        figures = out / "figures"
        figures.mkdir(exist_ok=True)
        plot_frames(showcase, figures / f"frames_{showcase.scene}.png")
        count = len(showcase.plan.targets)
        if count >= 2:
            gap = min(result.config.pair_gap, count - 1)
            first = max(0, (count - 1 - gap) // 2)  # a pair from the middle of the clip
            for method, frames in {REFERENCE: showcase.truth, **showcase.frames}.items():
                figure = matching_figure(frames, (first, first + gap), result.config.seed)
                Image.fromarray(figure).save(figures / f"matches_{method.replace('@', '_at_')}.png")
    logger.debug("wrote %s", out / "metrics.json")
    return document
