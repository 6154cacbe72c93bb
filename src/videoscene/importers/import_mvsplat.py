"""`videoscene weights import-mvsplat`: MVSplat's checkpoint -> a prior folder."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="MVSplat's Lightning checkpoint (re10k.ckpt), or a .safetensors/.pt state dict of its tensors",
    )
    parser.add_argument(
        "--out", required=True, help="prior folder to write (prior.safetensors + prior_config.json)"
    )
    parser.add_argument(
        "--config", default="mvsplat", help="encoder preset or JSON config the checkpoint was trained with"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --out if videoscene wrote it")
    parser.epilog = (
        "example: videoscene weights import-mvsplat --checkpoint re10k.ckpt --out weights/paper/prior"
    )


def run(args: argparse.Namespace) -> None:
    from videoscene.importers.mvsplat import import_mvsplat

    out = import_mvsplat(args.checkpoint, args.out, args.config, args.overwrite)
    print(f"wrote {out} (prior.safetensors + prior_config.json, encoder config {args.config})")
