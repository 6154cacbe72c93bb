"""Command-line argument types shared by every subcommand: each parses and range-checks its value once,
so a bad value is one argparse line before anything is loaded (a timestep's range belongs to the model's
schedule, so only its form is checked here). torch is imported only where a device is resolved, so that
`videoscene --help` starts without it."""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

from videoscene.errors import InputError

if TYPE_CHECKING:
    import torch

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed and numpy's SeedSequence both take it
_DEVICE = re.compile(r"(cpu|cuda|cuda:\d+|mps|auto)")


def seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a seed is a whole number, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed must lie in [0, 2**63 - 1], got {text}")
    return value


def device(text: str) -> str:
    if not _DEVICE.fullmatch(text.strip().lower()):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use cpu, cuda, cuda:N, mps or auto")
    return text.strip().lower()


def frame_count(text: str) -> int:
    """8k + 1 frames (k ≥ 1), so that CogVideoX's VAE round-trips them (4× temporal compression, two frames
    per step)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a frame count is a whole number 8k+1 (9, 17, 25, 49), got {text!r}"
        ) from None
    if value < 9 or (value - 1) % 8:
        raise argparse.ArgumentTypeError(
            f"the frame count must be 8k+1 (9, 17, 25, 49 …) so the VAE round-trips, got {value}"
        )
    return value


def timestep(text: str) -> int | str:
    """'auto' (DDPNet's choice), 'none' (start from pure noise) or a whole number t >= 1. Its upper bound,
    T−1, is the loaded model's schedule's, checked where t is used (`distill.student.start_timestep`)."""
    word = text.strip().lower()
    if word in ("auto", "none"):
        return word
    if not re.fullmatch(r"[0-9]+", word) or int(word) < 1:
        raise argparse.ArgumentTypeError(
            f"the timestep must be 'auto', 'none' or a whole number t >= 1, got {text!r}"
        )
    return int(word)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value}")
    return value


def resolve_device(name: str | torch.device | None) -> torch.device:
    """'auto' or None -> cuda when available, else cpu; a CUDA request on a machine without CUDA is one
    line."""
    import torch

    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(name)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError("CUDA was requested but this machine has no usable CUDA device; use --device cpu")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise InputError(
            f"{name} was requested but this machine has {torch.cuda.device_count()} CUDA devices"
        )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise InputError("MPS was requested but is not available here; use --device cpu")
    if resolved.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device {name!r} is not supported; use cpu, cuda, cuda:N or auto")
    return resolved


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each option's default, unless it has none (None, a plain flag) or its help names it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with errors on one line (what is wrong, then where to look), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
