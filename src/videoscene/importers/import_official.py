"""`videoscene weights import-official`: the authors' release -> a complete weights folder."""

from __future__ import annotations

import argparse

from videoscene.arguments import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base",
        required=True,
        help="the diffusers CogVideoX I2V folder the release builds on (CogvideoX-Interpolation: vae/, "
        "transformer/, scheduler/); linked by absolute path, not copied",
    )
    parser.add_argument(
        "--transformer",
        required=True,
        help="the distilled transformer's state dict (the release's model.safetensors; .pt tensors only)",
    )
    parser.add_argument(
        "--prompt-embeds", required=True, help="the precomputed T5 prompt embedding (prompt_embeds.pt)"
    )
    parser.add_argument(
        "--mvsplat", required=True, help="MVSplat's checkpoint (re10k.ckpt) or its state dict"
    )
    parser.add_argument("--out", required=True, help="weights folder to write")
    parser.add_argument(
        "--timestep",
        type=positive_int,
        default=549,
        help="the fixed t the student starts from (the release's 550 − 1)",
    )
    parser.add_argument(
        "--ddpnet", help="a DDPNet trained for this student (ddpnet.safetensors); the release has none"
    )
    parser.add_argument(
        "--mvsplat-config", default="mvsplat", help="encoder preset or JSON config of the MVSplat checkpoint"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --out if videoscene wrote it")
    parser.epilog = (
        "example: videoscene weights import-official --base CogvideoX-Interpolation --transformer "
        "checkpoints/model.safetensors --prompt-embeds checkpoints/prompt_embeds.pt --mvsplat "
        "checkpoints/mvsplat/re10k.ckpt --out weights/paper"
    )


def run(args: argparse.Namespace) -> None:
    from videoscene.importers.official import import_official

    report = import_official(
        args.base,
        args.transformer,
        args.prompt_embeds,
        args.mvsplat,
        args.out,
        timestep=args.timestep,
        ddpnet=args.ddpnet,
        mvsplat_config=args.mvsplat_config,
        overwrite=args.overwrite,
    )
    print(
        f"wrote {report.out}: {report.num_frames} frames at {report.height}x{report.width}, one step from "
        f"t = {report.timestep}; transformer: {report.loaded} tensors loaded, {len(report.missing)} missing "
        f"(keep the base's), {len(report.unexpected)} unexpected (ignored); names in import.json"
    )
    for what, names in (("missing", report.missing), ("unexpected", report.unexpected)):
        if names:
            print(f"  {what}: {', '.join(names[:5])}{' …' if len(names) > 5 else ''}")
