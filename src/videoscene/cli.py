"""`videoscene` command line. Each leaf command lives in its own module, imported only when it runs,
so `videoscene --help` is instant. A module exposes `add_arguments(parser)` and `run(args)`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

from videoscene import __version__
from videoscene.arguments import ArgumentParser, HelpFormatter
from videoscene.errors import VideoSceneError

# (group, command) -> (module, one-line help). A group of None means a top-level command.
COMMANDS: dict[tuple[str | None, str], tuple[str, str]] = {
    ("data", "synth"): (
        "videoscene.data.synthetic_cli",
        "render procedural indoor scenes to RealEstate10K chunks",
    ),
    ("data", "convert"): (
        "videoscene.data.convert",
        "convert nerf / instant-ngp / llff / colmap scenes to RealEstate10K chunks",
    ),
    ("data", "make-index"): (
        "videoscene.data.evaluation_index",
        "pick context pairs and targets: write an evaluation index",
    ),
    ("train", "prior"): (
        "videoscene.prior.train",
        "train the feed-forward Gaussian prior (MVSplat-style) on RealEstate10K-format chunks",
    ),
    ("train", "vae"): (
        "videoscene.video.train_vae",
        "train the tiny CogVideoX VAE from scratch on RealEstate10K-format chunks",
    ),
    ("train", "teacher"): (
        "videoscene.video.train_teacher",
        "train the first/last-frame video diffusion teacher (v-prediction) on cached VAE latents",
    ),
    ("train", "distill"): (
        "videoscene.distill.train",
        "3D-aware leap flow distillation of the one-step student, with DDPNet",
    ),
    ("policy", "oracle"): (
        "videoscene.evaluation.oracle",
        "DDPNet's timestep choice vs the per-clip oracle and the best fixed t (regret in dB)",
    ),
    ("policy", "fit"): (
        "videoscene.distill.policy_fit",
        "fit DDPNet to a frozen student on rewards of the decoded (or render-skip) output",
    ),
    ("weights", "import-mvsplat"): (
        "videoscene.importers.import_mvsplat",
        "MVSplat's released checkpoint (Lightning .ckpt or state dict) -> a prior folder",
    ),
    ("weights", "import-official"): (
        "videoscene.importers.import_official",
        "the authors' release (base, model.safetensors, prompt_embeds.pt, re10k.ckpt) -> a weights folder",
    ),
    ("weights", "verify-mvsplat"): (
        "videoscene.importers.verify_mvsplat",
        "run a prior folder on an MVSplat reference file; largest error per output",
    ),
    (None, "generate"): (
        "videoscene.generate",
        "two images (+ cameras) -> video.mp4, coarse.mp4, frames/, gaussians.ply, report.json",
    ),
    (None, "reconstruct"): (
        "videoscene.reconstruct.cli",
        "fit 3D Gaussians to a generated video (3DGS from the prior's): gaussians.ply, flythrough.mp4",
    ),
    (None, "demo"): ("videoscene.demo", "run `generate` on a bundled example with the bundled tiny weights"),
    (None, "app"): (
        "videoscene.app",
        "web app (Gradio, 127.0.0.1 by default): two photos in, coarse and generated videos out",
    ),
    (None, "eval"): (
        "videoscene.evaluation.cli",
        "generate the target views of an evaluation index with each method; score against ground truth",
    ),
}
GROUP_HELP = {
    "data": "make and convert datasets",
    "train": "train the prior, the VAE, the teacher, the student and DDPNet",
    "policy": "fit and analyse the DDPNet timestep policy",
    "weights": "import and check released weights",
}


def _build_parser(selected: tuple[str | None, str] | None) -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="videoscene", description="VideoScene: two photos in, a 3D-consistent video out."
    )
    parser.add_argument("--version", action="version", version=f"videoscene {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    top = parser.add_subparsers(dest="group", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for (group, name), (module, help_text) in COMMANDS.items():
        if group is None:
            sub = top.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
        else:
            if group not in groups:
                group_parser = top.add_parser(group, help=GROUP_HELP.get(group, ""))
                groups[group] = group_parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
            sub = groups[group].add_parser(
                name, help=help_text, description=help_text, formatter_class=HelpFormatter
            )
        sub.set_defaults(_module=module)
        if (group, name) == selected:
            importlib.import_module(module).add_arguments(sub)
    return parser


def _select(argv: list[str]) -> tuple[str | None, str] | None:
    words = [a for a in argv if not a.startswith("-")][:2]
    for key in COMMANDS:
        group, name = key
        if group is None and words[:1] == [name]:
            return key
        if group is not None and words[:2] == [group, name]:
            return key
    return None


def _error_line(message: str) -> None:
    """One line on stderr, on a line of its own even while a progress bar is drawn."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser(_select(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a bad argument (already said in one line)
        return int(done.code or 0)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not hasattr(args, "_module"):
        parser.print_help()
        return 2
    try:
        importlib.import_module(args._module).run(args)
    except VideoSceneError as error:
        if args.verbose:
            traceback.print_exc()
        _error_line(f"videoscene: error: {' '.join(str(error).split())}")
        return 2
    except KeyboardInterrupt:
        _error_line("videoscene: interrupted")
        return 130
    except Exception as error:  # a bug, not bad input: say so in one line; -v shows where
        if args.verbose:
            traceback.print_exc()
        first = (str(error).splitlines() or [""])[0]
        _error_line(
            f"videoscene: internal error: {type(error).__name__}: {first} (a bug: rerun with -v for "
            "the traceback and report it)"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
