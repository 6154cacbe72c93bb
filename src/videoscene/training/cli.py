"""The command line of every `videoscene train prior|vae|teacher|distill`: the config, its data overrides and
the run (--out, --resume, --steps, --stop-after), the same way for each."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from videoscene import arguments
from videoscene.training.config import config_from_dict, config_to_dict

logger = logging.getLogger(__name__)


def add_training_arguments(
    parser: argparse.ArgumentParser, example_config: str, data_help: str, val_data_help: str
) -> None:
    parser.add_argument(
        "--config", required=True, type=Path, help=f"training config JSON (e.g. {example_config})"
    )
    parser.add_argument("--data", nargs="+", help=data_help)
    parser.add_argument("--val-data", nargs="+", help=val_data_help)
    parser.add_argument("--out", type=Path, help="output folder (default: outputs/<config name>)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument("--steps", type=arguments.positive_int, help="override the number of training steps")
    parser.add_argument(
        "--stop-after",
        type=arguments.positive_int,
        help="stop (after checkpointing) once this many steps ran in this call",
    )


def output_folder(args: argparse.Namespace) -> Path:
    return args.out or Path("outputs") / args.config.stem


def run_training(
    args: argparse.Namespace, config: Any, changes: dict[str, Any], train: Callable[..., dict]
) -> None:
    """`config` with the command line's `changes` and --steps, checked as the config file was, trained into
    --out by `train(config, out, resume=, stop_after=)`; logs its summary."""
    if args.steps is not None:
        changes = {**changes, "steps": args.steps}
    config = config_from_dict(
        type(config), {**config_to_dict(config), **changes}, f"training config {args.config}"
    )
    summary = train(config, output_folder(args), resume=args.resume, stop_after=args.stop_after)
    logger.info("done: %s", json.dumps(summary))
