"""`videoscene eval`: generate the target views of an evaluation index with each method and compare them
with ground truth (docs/evaluation.md).

    videoscene eval --data DATA/test --index index.json --methods nearest,coarse --weights WEIGHTS --out OUT
    videoscene eval --data lego/test --index lego_index.json --make-index 10 --methods nearest --out OUT
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import torch

from videoscene.data.evaluation_index import make_evaluation_index, read_evaluation_index, write_evaluation_index
from videoscene.errors import VideoSceneError
from videoscene.evaluation.methods import MethodResources, build_method, parse_methods, valid_names
from videoscene.evaluation.report import markdown_table, write_report
from videoscene.evaluation.runner import EvalConfig, evaluate
from videoscene.io_utils import staged_output_dir
from videoscene.metrics.lpips import load_lpips

logger = logging.getLogger(__name__)


def _image_size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 64x96, got {text!r}")
    return int(match[1]), int(match[2])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="split folder of RealEstate10K chunks (holding index.json)")
    parser.add_argument("--index", required=True, type=Path, help="evaluation index JSON {scene: {context: [i, j], target: [...]}}")
    parser.add_argument("--methods", required=True, help=f"comma-separated methods: {valid_names()}")
    parser.add_argument("--out", required=True, type=Path, help="output folder for metrics.json, metrics.md and the plots")
    parser.add_argument("--weights", type=Path, default=None, help="weights folder (the prior for coarse; the video models for the rest)")
    parser.add_argument("--seed", type=int, default=0, help="run seed (each scene's seed derives from it and the scene key)")
    parser.add_argument("--make-index", type=int, default=None, metavar="GAP",
                        help="first write --index (must not exist): per scene a context pair GAP frames apart, the frames between as targets")
    parser.add_argument("--target-stride", type=int, default=1, help="with --make-index: every Nth frame between the pair is a target")
    parser.add_argument("--size", type=_image_size, default=EvalConfig.image_size, metavar="HxW",
                        help="the model's resolution; images are centre-cropped to its aspect ratio and resized (default 64x96)")
    parser.add_argument("--frames", type=int, default=EvalConfig.num_frames, help="frames each method generates along the path (default 17)")
    parser.add_argument("--near", type=float, default=EvalConfig.near, help="near depth of the scenes (for the prior)")
    parser.add_argument("--far", type=float, default=EvalConfig.far, help="far depth of the scenes (for the prior)")
    parser.add_argument("--pair-gap", type=int, default=EvalConfig.pair_gap, help="3D-consistency pairs (k, k+gap) of target frames")
    parser.add_argument("--scenes", type=int, default=None, help="evaluate only the first N scenes of the index")
    parser.add_argument("--lpips", type=Path, nargs="+", default=None, metavar="FILE",
                        help="LPIPS weights: torchvision VGG16 + LPIPS linear layers (.safetensors/.pth); LPIPS is skipped without them")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 … (auto: cuda when available)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")


def run(args: argparse.Namespace) -> None:
    # 1. Check inputs (cheap checks first: nothing heavy happens before a typo is reported).
    specs = parse_methods(args.methods)
    config = EvalConfig(
        image_size=args.size, num_frames=args.frames, near=args.near, far=args.far, pair_gap=args.pair_gap,
        seed=args.seed, max_scenes=args.scenes,
    )  # fmt: skip
    if args.make_index is not None and args.index.exists():
        raise VideoSceneError(f"{args.index} already exists; drop --make-index to evaluate it, or choose another --index")
    if args.make_index is None and not args.index.is_file():
        raise VideoSceneError(f"evaluation index {args.index} does not exist; pass --make-index GAP to create it")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else "cpu" if args.device == "auto" else args.device)

    with staged_output_dir(args.out, overwrite=args.overwrite) as stage:
        # 2. Build every method (missing weights fail here, before any scene is read) and LPIPS.
        resources = MethodResources(args.weights, device)
        methods = {spec.name: build_method(spec, resources) for spec in specs}
        lpips = load_lpips(args.lpips, device)

        # 3. The evaluation index.
        if args.make_index is not None:
            index = make_evaluation_index(args.data, args.make_index, args.target_stride, args.seed)
            write_evaluation_index(args.index, index)
            logger.info("wrote evaluation index %s (%d scenes)", args.index, sum(e is not None for e in index.values()))
        else:
            index = read_evaluation_index(args.index)
        write_evaluation_index(stage / "index.json", index)

        # 4. Evaluate and report.
        result = evaluate(args.data, index, methods, config, device, lpips)
        extra = {"data": str(args.data), "index": str(args.index), "methods": [s.name for s in specs],
                 "weights": None if args.weights is None else str(args.weights)}  # fmt: skip
        document = write_report(result, stage, extra, device)
    print(markdown_table(document["methods"], document["reference"]), end="")
    logger.info("evaluation written to %s", args.out)
