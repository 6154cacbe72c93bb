"""`videoscene demo`: `videoscene generate` on a bundled held-out synthetic pair with the bundled tiny
weights."""

from __future__ import annotations

import argparse
from pathlib import Path

from videoscene.generate import add_common_arguments, generate

DEMO_ASSETS = Path(__file__).parent / "assets" / "demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> None:
    generate(
        args,
        [str(DEMO_ASSETS / "view_0.png"), str(DEMO_ASSETS / "view_1.png")],
        str(DEMO_ASSETS / "cams.json"),
    )
