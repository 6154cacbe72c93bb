"""`videoscene weights verify-mvsplat`: a prior folder against outputs of MVSplat's own encoder."""

from __future__ import annotations

import argparse

from videoscene.errors import VideoSceneError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights", required=True, help="prior folder (prior.safetensors + prior_config.json)"
    )
    parser.add_argument(
        "--reference",
        required=True,
        help="safetensors file with MVSplat's inputs (image, intrinsics, extrinsics, near, far) and outputs "
        "(means, covariances, harmonics, opacities)",
    )
    parser.epilog = (
        "example: videoscene weights verify-mvsplat --weights weights/paper/prior "
        "--reference mvsplat_reference_io.safetensors"
    )


def run(args: argparse.Namespace) -> None:
    from videoscene.prior.encoder import GaussianEncoder
    from videoscene.prior.mvsplat import TOLERANCE, compare_with_reference

    errors = compare_with_reference(GaussianEncoder.load(args.weights), args.reference)
    print(
        f"{'output':<12} {'max abs error':>14} {'relative':>10}  (relative to the output's largest magnitude)"
    )
    for error in errors:
        print(
            f"{error.name:<12} {error.max_abs:>14.3e} {error.max_rel:>10.2e}  {'ok' if error.ok else 'FAIL'}"
        )
    failed = [e.name for e in errors if not e.ok]
    if failed:
        raise VideoSceneError(
            f"the prior does not reproduce the reference's {', '.join(failed)} within {TOLERANCE:g} relative"
        )
    print(f"all outputs within {TOLERANCE:g} relative")
