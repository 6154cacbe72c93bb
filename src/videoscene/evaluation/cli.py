"""`videoscene eval`: generate the target views of an evaluation index with each method and compare them
with ground truth (docs/evaluation.md).

    videoscene eval --data DATA/test --index index.json --methods nearest,coarse --weights WEIGHTS --out OUT
    videoscene eval --data lego/test --index lego_index.json --make-index 10 --methods nearest --out OUT
    videoscene eval --data ROOMS/test --index low.json --make-index 48 --max-overlap 0.7 --methods nearest \
        --out OUT   # pairs chosen by overlap (needs ROOMS/test/depth)
    videoscene eval --data DATA/test --index held.json --make-index 16 --target-stride 2 --holdout \
        --methods prior,recon-student,recon-gt --recon-steps 100 --out OUT   # 3D scenes, scored off the path

The paper's Table 1 at our scale (docs/results.md):

    videoscene eval --data DATA/test --index INDEX.json --weights WEIGHTS --out OUT --methods \
        nearest,coarse,teacher@1,teacher@4,teacher@50,teacher-leap@1,teacher-leap@4,teacher-leap@50,student
"""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import replace
from pathlib import Path

from videoscene import arguments
from videoscene.arguments import resolve_device
from videoscene.data.evaluation_index import (
    make_evaluation_index,
    make_overlap_index,
    read_evaluation_index,
    write_evaluation_index,
)
from videoscene.errors import VideoSceneError
from videoscene.evaluation.methods import (
    FAMILIES,
    MethodResources,
    MethodSpec,
    build_method,
    build_with_pipeline,
    parse_methods,
    valid_names,
)
from videoscene.evaluation.report import markdown_table, write_report
from videoscene.evaluation.runner import EvalConfig, evaluate
from videoscene.io_utils import check_output_dir, staged_output_dir
from videoscene.metrics.frechet import I3DFeatures
from videoscene.metrics.lpips import load_lpips
from videoscene.reconstruct.optimize import ReconstructConfig

logger = logging.getLogger(__name__)


def _image_size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 64x96, got {text!r}")
    return int(match[1]), int(match[2])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", required=True, type=Path, help="split folder of RealEstate10K chunks (holding index.json)"
    )
    parser.add_argument(
        "--index",
        required=True,
        type=Path,
        help="evaluation index JSON {scene: {context: [i, j], target: [...]}}",
    )
    parser.add_argument("--methods", required=True, help=f"comma-separated methods: {valid_names()}")
    parser.add_argument(
        "--out", required=True, type=Path, help="output folder for metrics.json, metrics.md and the plots"
    )
    parser.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="weights folder (the prior for coarse; the video models for the rest); default: the bundled "
        "tiny weights, when a method needs weights",
    )
    parser.add_argument(
        "--seed",
        type=arguments.seed,
        default=0,
        help="run seed (each scene's seed derives from it and the scene key)",
    )
    parser.add_argument(
        "--make-index",
        type=int,
        default=None,
        metavar="GAP",
        help="first write --index (must not exist): per scene a context pair GAP frames apart, the frames "
        "between as targets",
    )
    parser.add_argument(
        "--max-overlap",
        type=float,
        default=None,
        metavar="X",
        help="with --make-index: choose each scene's pair by overlap, at most GAP frames apart: the pair "
        "whose overlap is the largest at most X (needs <data>/depth; docs/evaluation.md)",
    )
    parser.add_argument(
        "--target-stride",
        type=int,
        default=1,
        help="with --make-index: every Nth frame between the pair is a target",
    )
    parser.add_argument(
        "--holdout",
        action="store_true",
        help="with --make-index: the frames between the targets are holdout frames, scored off the path by "
        "prior and recon-* (needs --target-stride 2 or more)",
    )
    parser.add_argument(
        "--recon-steps",
        type=arguments.positive_int,
        default=MethodResources.reconstruct_steps,
        help="optimisation steps of the recon-* methods' 3D Gaussians per scene",
    )
    from_weights = "default: from --weights' pipeline.json, else"
    parser.add_argument(
        "--size",
        type=_image_size,
        default=None,
        metavar="HxW",
        help="the model's resolution; images are centre-cropped to its aspect ratio and resized "
        f"({from_weights} 64x96)",
    )
    parser.add_argument(
        "--frames",
        type=int,
        default=None,
        help=f"frames each method generates along the path ({from_weights} 17)",
    )
    parser.add_argument(
        "--near",
        type=float,
        default=None,
        help=f"near depth of the scenes, for the prior ({from_weights} {EvalConfig.near})",
    )
    parser.add_argument(
        "--far",
        type=float,
        default=None,
        help=f"far depth of the scenes, for the prior ({from_weights} {EvalConfig.far})",
    )
    parser.add_argument(
        "--pair-gap",
        type=int,
        default=EvalConfig.pair_gap,
        help="3D-consistency pairs (k, k+gap) of target frames",
    )
    parser.add_argument(
        "--scenes", type=int, default=None, help="evaluate only the first N scenes of the index"
    )
    parser.add_argument(
        "--lpips",
        type=Path,
        nargs="+",
        default=None,
        metavar="FILE",
        help="LPIPS weights: torchvision VGG16 + LPIPS linear layers (.safetensors/.pth); LPIPS is skipped "
        "without them",
    )
    parser.add_argument(
        "--fvd-detector",
        type=Path,
        default=None,
        metavar="FILE",
        help="StyleGAN-V's I3D TorchScript file (i3d_torchscript.pt, never downloaded); without it FVD is "
        "null",
    )
    parser.add_argument(
        "--device",
        type=arguments.device,
        default="auto",
        help="cpu, cuda, cuda:1 … (auto: cuda when available)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")


def _check_pipeline_resolution(weights: Path | None, config: EvalConfig, pipeline_methods: list[str]) -> None:
    """The pipeline generates at its own resolution (pipeline.json): an --size that differs cannot be
    scored."""
    if not pipeline_methods or weights is None or not (weights / "pipeline.json").is_file():
        return
    from videoscene.pipeline import PipelineConfig

    model = PipelineConfig.load(weights / "pipeline.json")
    if config.image_size != (model.height, model.width):
        size = f"{model.height}x{model.width}"
        raise VideoSceneError(
            f"{', '.join(pipeline_methods)} generate at {size} ({weights / 'pipeline.json'}), not at --size "
            f"{config.image_size[0]}x{config.image_size[1]}; drop --size or pass --size {size}"
        )


def _default_weights(weights: Path | None, specs: list[MethodSpec]) -> Path | None:
    """--weights, else the bundled tiny weights (as `generate` does) when a method needs weights; `nearest`
    alone needs none, and keeps this module's defaults for the resolution and depth range."""
    if weights is not None or not any(FAMILIES[spec.family].needs_weights for spec in specs):
        return weights
    from videoscene.pipeline import BUNDLED_WEIGHTS

    logger.info("no --weights: using the bundled tiny weights %s", BUNDLED_WEIGHTS)
    return BUNDLED_WEIGHTS


def run(args: argparse.Namespace) -> None:
    # 1. Check inputs (cheap checks first: nothing heavy happens before a typo is reported).
    specs = parse_methods(args.methods)
    weights = _default_weights(args.weights, specs)
    config = EvalConfig.for_weights(
        weights,
        image_size=args.size,
        num_frames=args.frames,
        near=args.near,
        far=args.far,
        pair_gap=args.pair_gap,
        seed=args.seed,
        max_scenes=args.scenes,
    )
    _check_pipeline_resolution(
        weights, config, [s.name for s in specs if FAMILIES[s.family].builder is build_with_pipeline]
    )
    if args.make_index is not None and args.index.exists():
        raise VideoSceneError(
            f"{args.index} already exists; drop --make-index to evaluate it, or choose another --index"
        )
    if args.holdout and args.make_index is None:
        raise VideoSceneError("--holdout marks frames of a new index: pass --make-index GAP with it")
    if args.max_overlap is not None and args.make_index is None:
        raise VideoSceneError("--max-overlap chooses the pairs of a new index: pass --make-index GAP with it")
    if args.make_index is None and not args.index.is_file():
        raise VideoSceneError(
            f"evaluation index {args.index} does not exist; pass --make-index GAP to create it"
        )
    device = resolve_device(args.device)
    check_output_dir(args.out, args.overwrite)

    with staged_output_dir(args.out, overwrite=args.overwrite) as stage:
        # 2. Build every method (missing weights fail here, before any scene is read) and LPIPS.
        resources = MethodResources(weights, device, replace(ReconstructConfig(), steps=args.recon_steps))
        methods = {spec.name: build_method(spec, resources) for spec in specs}
        lpips = load_lpips(args.lpips, device)
        fvd_detector = I3DFeatures(args.fvd_detector, device) if args.fvd_detector is not None else None

        # 3. The evaluation index.
        if args.max_overlap is not None:
            index = make_overlap_index(
                args.data, args.max_overlap, args.make_index, args.target_stride, holdout=args.holdout
            )
        elif args.make_index is not None:
            index = make_evaluation_index(
                args.data, args.make_index, args.target_stride, args.seed, holdout=args.holdout
            )
        else:
            index = read_evaluation_index(args.index)
        write_evaluation_index(stage / "index.json", index)

        # 4. Evaluate and report.
        result = evaluate(args.data, index, methods, config, device, lpips, fvd_detector)
        extra = {
            "data": str(args.data),
            "index": str(args.index),
            "methods": [s.name for s in specs],
            "weights": None if weights is None else str(weights),
            "fvd_detector": None if args.fvd_detector is None else str(args.fvd_detector),
        }
        document = write_report(result, stage, extra, device)
    if args.make_index is not None:  # only once the evaluation succeeded, so that rerunning the command works
        write_evaluation_index(args.index, index)
        logger.info(
            "wrote evaluation index %s (%d scenes)", args.index, sum(e is not None for e in index.values())
        )
    print(markdown_table(document["methods"], document["reference"]), end="")
    logger.info("evaluation written to %s", args.out)
