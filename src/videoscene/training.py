"""What every trainer (prior, VAE, teacher, distillation) shares: typed JSON configs, the learning-rate
schedule, per-step randomness, checkpoint folders, optimizer state as safetensors (nothing is ever pickled),
and the command line of `videoscene train prior|vae|teacher`.

Checkpoints live in OUT/checkpoints/step_NNNNNNN, each built in a staging folder and renamed into place.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import os
import re
import shutil
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import torch
from torch import Tensor

from videoscene import arguments
from videoscene.config_json import check_json_types
from videoscene.errors import LoadError, VideoSceneError
from videoscene.io_utils import atomic_path, read_json_object, read_safetensors, remove_stale_stages, save_safetensors

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
# step_NNNNNNN; distillation runs number theirs with 6 digits (step_NNNNNN), which must keep resuming.
_CHECKPOINT_PATTERN = re.compile(r"^step_(\d{6,})$")

ConfigT = TypeVar("ConfigT")
ResultT = TypeVar("ResultT")


# -- configs --------------------------------------------------------------------------------------------------------
def config_from_dict(cls: type[ConfigT], data: dict[str, Any], source: str) -> ConfigT:
    """A dataclass from a JSON object; unknown keys are errors so that a typo never falls back to a default."""
    if not isinstance(data, dict):
        raise VideoSceneError(f"{source} must hold a JSON object")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise VideoSceneError(f"{source} has unknown keys {unknown}; known keys: {sorted(known)}")
    check_json_types(cls, data, source)
    try:
        return cls(**data)
    except TypeError as error:
        raise VideoSceneError(f"{source} is malformed ({error})") from None


def load_config(cls: type[ConfigT], path: str | os.PathLike) -> ConfigT:
    data = read_json_object(path, "training config", "; pass a JSON file such as configs/vae_tiny_train.json")
    return config_from_dict(cls, data, f"training config {path}")


def config_to_dict(config: Any) -> dict[str, Any]:
    if not is_dataclass(config):
        raise TypeError(f"{type(config).__name__} is not a dataclass")
    return json.loads(json.dumps(asdict(config)))  # tuples → lists, as they read back from JSON


def warmup_cosine(warmup: int, total: int, min_ratio: float):
    """lr multiplier at optimiser step s: linear warm-up over `warmup` steps, then cosine to `min_ratio`."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def step_generator(*parts) -> torch.Generator:
    """Every random draw of one training step comes from here, a function of `parts` alone (e.g. a tag,
    the seed, the step and the process), so a resumed run continues exactly as an uninterrupted one."""
    value = int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little") >> 1
    return torch.Generator().manual_seed(value)


def checkpoint_folders(out: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint under OUT/checkpoints, oldest first."""
    folder = out / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CHECKPOINT_PATTERN.match(p.name))]
    return sorted(found)


def complete_checkpoints(out: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint (one with its state.json), oldest first."""
    return [(step, path) for step, path in checkpoint_folders(out) if (path / "state.json").is_file()]


def latest_checkpoint(out: Path) -> tuple[int, Path] | None:
    """(step, folder) of the newest complete checkpoint, or None."""
    found = complete_checkpoints(out)
    return found[-1] if found else None


def resume_latest(out: Path, load: Callable[[Path], ResultT]) -> tuple[ResultT, Path] | None:
    """`load` the newest complete checkpoint; one that turns out corrupt (a `LoadError`) is renamed
    `step_N.corrupt`, said in one warning line, and the one before it is tried. None: no usable checkpoint.

    `load` must restore everything it touches from the folder it is given, so a failed attempt leaves
    nothing behind that the next attempt does not overwrite.
    """
    remove_stale_stages(out / CHECKPOINTS)
    for step, folder in reversed(complete_checkpoints(out)):
        try:
            return load(folder), folder
        except LoadError as error:
            aside, number = folder.with_name(f"{folder.name}.corrupt"), 1
            while aside.exists():  # an earlier crash left one already
                aside, number = folder.with_name(f"{folder.name}.corrupt{number}"), number + 1
            os.replace(folder, aside)
            logger.warning("checkpoint %s is corrupt (%s); moved to %s, resuming from the one before it", folder.name, error, aside.name)
    return None


def trim_log(path: Path, step: int) -> None:
    """Drop the records of steps after `step` from a JSONL log, so a resumed run does not repeat them."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and _record_step(line) <= step]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept))


def _record_step(line: str) -> float:
    try:
        return json.loads(line).get("step", 0)
    except (json.JSONDecodeError, AttributeError):
        return math.inf  # a line torn by the crash


def remove_old_checkpoints(out: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints under OUT/checkpoints."""
    for _, old in checkpoint_folders(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def read_checkpoint_state(folder: Path, required: tuple[str, ...] = ("step", "scheduler")) -> dict[str, Any]:
    """A checkpoint's state.json; a torn or incomplete one is a `LoadError` (so resuming falls back)."""
    try:
        state = json.loads((folder / "state.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LoadError(f"checkpoint {folder} has an unreadable state.json ({error})") from None
    if not isinstance(state, dict) or any(key not in state for key in required):
        raise LoadError(f"checkpoint {folder}: state.json lacks {[key for key in required if key not in (state or {})]}")
    return state


def save_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> None:
    """Tensors of `optimizer.state_dict()` as safetensors; everything else (param groups, scalars) as metadata."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, Tensor):
                tensors[f"{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{index}.{key}"] = value
    metadata = {"param_groups": json.dumps(state["param_groups"]), "scalars": json.dumps(scalars)}
    save_safetensors(path, tensors, metadata)


def load_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> None:
    tensors, metadata = read_safetensors(path, "optimizer state")
    if not {"param_groups", "scalars"} <= metadata.keys():
        raise LoadError(f"optimizer state {path} lacks its metadata (an older format or a damaged file)")
    try:
        state: dict[int, dict] = {}
        for flat, value in [*tensors.items(), *json.loads(metadata["scalars"]).items()]:
            index, key = flat.split(".", 1)
            state.setdefault(int(index), {})[key] = value
        optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["param_groups"])})
    except (ValueError, KeyError, TypeError) as error:  # json.JSONDecodeError is a ValueError
        raise LoadError(f"optimizer state {path} does not fit this optimizer ({error}); resume with the run's own config") from None


# -- runs and their command line ------------------------------------------------------------------------------------
@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's CPU thread count within the block (None: unchanged); restored afterwards, so a config's
    `num_threads` applies to its own run only."""
    threads = torch.get_num_threads()
    try:
        if count:
            torch.set_num_threads(count)
        yield
    finally:
        torch.set_num_threads(threads)


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def add_training_arguments(parser: argparse.ArgumentParser, example_config: str, data_help: str, val_data_help: str) -> None:
    """The arguments of every `videoscene train prior|vae|teacher`: the config, its data overrides and the run."""
    parser.add_argument("--config", required=True, type=Path, help=f"training config JSON (e.g. {example_config})")
    parser.add_argument("--data", nargs="+", help=data_help)
    parser.add_argument("--val-data", nargs="+", help=val_data_help)
    parser.add_argument("--out", type=Path, help="output folder (default: outputs/<config name>)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument("--steps", type=arguments.positive_int, help="override the number of training steps")
    parser.add_argument("--stop-after", type=arguments.positive_int, help="stop (after checkpointing) once this many steps ran in this call")


def run_training(args: argparse.Namespace, config: Any, changes: dict[str, Any], train: Callable[..., dict]) -> None:
    """`config` with the command line's `changes` and --steps, checked as the config file was, trained into
    --out (default outputs/<config name>) by `train(config, out, resume=, stop_after=)`; logs its summary."""
    if args.steps is not None:
        changes = {**changes, "steps": args.steps}
    config = config_from_dict(type(config), {**config_to_dict(config), **changes}, f"training config {args.config}")
    out = args.out or Path("outputs") / args.config.stem
    summary = train(config, out, resume=args.resume, stop_after=args.stop_after)
    logger.info("done: %s", json.dumps(summary))
