"""Quality versus denoising steps and versus seconds (the paper's step-sweep figure, Fig. 8, at our scale).

Evaluates, on the same scenes and in the same run, the teacher from pure noise (`teacher@N`), the teacher
from the coarse render noised to DDPNet's t (`teacher-leap@N`) for every N of --steps, and the one-step
student (`student`, a single point), with `nearest` and `coarse` as flat reference lines. Every method is
scored by `videoscene eval`'s runner (docs/evaluation.md), so the numbers are the ones its tables give.

    python benchmarks/step_sweep.py --weights src/videoscene/weights/tiny --data outputs/synth64_test/test \
        --index outputs/eval/synth_gap48.json --out outputs/eval/step_sweep_synth --scenes 8

Writes into --out (atomically): `step_sweep.json` (per curve, per step count: the mean PSNR, SSIM,
Sampson px, RANSAC inlier ratio and seconds per scene), `step_sweep.png` (each --metrics row: metric versus
steps and versus seconds) and the evaluation's own report (`metrics.json`, `metrics.md`, figures/), which
benchmarks/make_results_tables.py reads like any `videoscene eval` output.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

from videoscene.data.evaluation_index import read_evaluation_index
from videoscene.errors import VideoSceneError
from videoscene.evaluation.methods import MethodResources, build_method, parse_method
from videoscene.evaluation.report import COLUMNS, write_report
from videoscene.evaluation.runner import EvalConfig, evaluate
from videoscene.io_utils import staged_output_dir, write_json_atomic
from videoscene.metrics.frechet import I3DFeatures
from videoscene.metrics.lpips import load_lpips

logger = logging.getLogger("step_sweep")

CURVES = ("teacher", "teacher-leap")  # families swept over the step count
STYLE = {
    "teacher": ("tab:blue", "o", "teacher from noise"),
    "teacher-leap": ("tab:orange", "s", "teacher from render (leap)"),
}
SWEPT = (
    "psnr",
    "ssim",
    "sampson_px",
    "inlier_ratio",
    "lpips",
    "fvd",
    "seconds",
)  # the figures kept per point
TITLES = dict(COLUMNS)


def sweep_methods(steps: list[int], weights: Path, references: list[str]) -> list[str]:
    """The method names of the sweep, in evaluation order; the student only when the folder has one."""
    if not (weights / "teacher").is_dir():
        raise VideoSceneError(f"{weights} has no teacher/ video model; the step sweep needs one")
    names = list(references) + [f"{family}@{n}" for family in CURVES for n in steps]
    if (weights / "distilled").is_dir():
        names.append("student")
    else:
        logger.warning("%s has no distilled/ student: the sweep shows the teachers only", weights)
    return names


def sweep_points(summary: dict[str, dict], steps: list[int], references: list[str]) -> dict:
    """step_sweep.json's numbers from the evaluation's per-method means."""

    def point(name: str, num_steps: int | None) -> dict:
        return {"method": name, "steps": num_steps} | {key: summary[name].get(key) for key in SWEPT}

    curves = {family: [point(f"{family}@{n}", n) for n in steps] for family in CURVES}
    if "student" in summary:
        curves["student"] = [point("student", 1)]
    return {"curves": curves, "references": {name: point(name, None) for name in references}}


def plot_sweep(points: dict, metrics: list[str], path: Path) -> None:
    """Rows: metrics; columns: versus steps, versus seconds (log axes). References are dashed lines."""
    figure = Figure(figsize=(9.0, 3.2 * len(metrics)), layout="constrained")
    grid = figure.subplots(len(metrics), 2, squeeze=False)
    for row, metric in enumerate(metrics):
        for column, x_key in enumerate(("steps", "seconds")):
            axes = grid[row][column]
            for family, curve in points["curves"].items():
                xs = [p[x_key] for p in curve if p[metric] is not None]
                ys = [p[metric] for p in curve if p[metric] is not None]
                if family == "student":
                    axes.scatter(
                        xs,
                        ys,
                        marker="*",
                        s=160,
                        color="tab:red",
                        zorder=3,
                        label="student (1 step, DDPNet t)",
                    )
                    continue
                color, marker, label = STYLE[family]
                axes.plot(xs, ys, marker=marker, color=color, label=label)
                if x_key == "seconds":  # the step count beside each point
                    for p in curve:
                        if p[metric] is not None:
                            axes.annotate(
                                str(p["steps"]),
                                (p["seconds"], p[metric]),
                                fontsize=7,
                                xytext=(3, 3),
                                textcoords="offset points",
                            )
            for index, (name, reference) in enumerate(points["references"].items()):
                if reference[metric] is not None:
                    axes.axhline(
                        reference[metric], linestyle="--", linewidth=1, color=f"C{index + 4}", label=name
                    )
            xs = [p[x_key] for curve in points["curves"].values() for p in curve if p[x_key]]
            logarithmic = max(xs) / min(xs) >= 3  # a narrow range of seconds reads better on a linear axis
            if logarithmic:
                axes.set_xscale("log")
                axes.xaxis.set_minor_locator(NullLocator())
                axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.3g}"))
            if x_key == "steps":
                axes.set_xticks(sorted(set(xs)))
            else:
                axes.xaxis.set_major_locator(
                    LogLocator(subs=(1.0, 2.0, 5.0)) if logarithmic else MaxNLocator(5)
                )
            label = "denoising steps" if x_key == "steps" else "seconds per scene"
            axes.set_xlabel(f"{label} (log)" if logarithmic else label)
            axes.set_ylabel(TITLES.get(metric, metric))
            axes.grid(alpha=0.3)
    handles, labels = grid[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside upper center", ncols=len(labels), fontsize=8)
    figure.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--weights",
        required=True,
        type=Path,
        help="weights folder: pipeline.json, prior/, teacher/, distilled/",
    )
    parser.add_argument("--data", required=True, type=Path, help="split folder of RealEstate10K chunks")
    parser.add_argument("--index", required=True, type=Path, help="evaluation index JSON")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--steps", type=int, nargs="+", default=[1, 2, 4, 10, 25, 50], help="teacher step counts"
    )
    parser.add_argument(
        "--references",
        default="nearest,coarse",
        help="comma-separated methods drawn as flat lines ('' for none)",
    )
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=["psnr", "ssim"],
        choices=[key for key in SWEPT if key != "seconds"],
        help="figure rows",
    )
    parser.add_argument("--scenes", type=int, default=None, help="only the first N scenes of the index")
    parser.add_argument(
        "--lpips",
        type=Path,
        nargs="+",
        default=None,
        metavar="FILE",
        help="LPIPS weights (as videoscene eval)",
    )
    parser.add_argument(
        "--fvd-detector",
        type=Path,
        default=None,
        metavar="FILE",
        help="I3D TorchScript file (as videoscene eval)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if min(args.steps) < 1:
        raise VideoSceneError(f"--steps must all be >= 1, got {args.steps}")

    # 1. The methods and the model settings (from the weights folder's pipeline.json).
    steps = sorted(set(args.steps))
    references = [name.strip() for name in args.references.split(",") if name.strip()]
    names = sweep_methods(steps, args.weights, references)
    config = EvalConfig.for_weights(args.weights, seed=args.seed, max_scenes=args.scenes)
    device = torch.device(args.device)
    index = read_evaluation_index(args.index)

    with staged_output_dir(args.out, overwrite=args.overwrite) as stage:
        # 2. Evaluate every method on the same scenes, in one run (their seconds are comparable).
        resources = MethodResources(args.weights, device)
        methods = {name: build_method(parse_method(name), resources) for name in names}
        lpips = load_lpips(args.lpips, device)
        fvd_detector = I3DFeatures(args.fvd_detector, device) if args.fvd_detector is not None else None
        result = evaluate(args.data, index, methods, config, device, lpips, fvd_detector)
        extra = {
            "data": str(args.data),
            "index": str(args.index),
            "methods": names,
            "weights": str(args.weights),
            "steps": steps,
            "fvd_detector": None if args.fvd_detector is None else str(args.fvd_detector),
        }
        document = write_report(result, stage, extra, device)

        # 3. The sweep's numbers and figure.
        points = sweep_points(document["methods"], steps, references)
        write_json_atomic(
            stage / "step_sweep.json",
            points | {"config": document["config"], "environment": document["environment"]},
        )
        plot_sweep(points, args.metrics, stage / "step_sweep.png")

    printed = ("psnr", "ssim", "sampson_px", "seconds")
    print(f"{'method':<18}{'steps':>6}" + "".join(f"{key:>14}" for key in printed))
    for curve in [*points["curves"].values(), list(points["references"].values())]:
        for p in curve:
            values = "".join(f"{'–' if p[key] is None else format(p[key], '.4g'):>14}" for key in printed)
            print(f"{p['method']:<18}{'–' if p['steps'] is None else p['steps']:>6}{values}")
    logger.info("step sweep written to %s", args.out)
    return points


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        main()
    except VideoSceneError as error:
        sys.exit(f"error: {error}")
