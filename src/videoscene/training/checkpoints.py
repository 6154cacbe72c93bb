"""Checkpoints: folders OUT/checkpoints/step_NNNNNNN holding one safetensors file per named set of tensors
(module weights, EMA copies), one per optimizer (state tensors, hyper-parameters as metadata) and state.json
(step, scheduler, what the run must match to resume, anything else the trainer keeps). Each is built in a
staging folder and renamed into place, so a crash never leaves a half-written checkpoint; nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from videoscene.errors import LoadError
from videoscene.io_utils import (
    atomic_path,
    load_safetensors,
    read_safetensors,
    remove_stale_stages,
    save_safetensors,
    staged_output_dir,
    write_json_atomic,
)

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
# step_NNNNNNN; distillation runs before the trainers shared one loop numbered theirs step_NNNNNN: those
# resume too.
_CHECKPOINT_PATTERN = re.compile(r"^step_(\d{6,})$")

ResultT = TypeVar("ResultT")


# -- listing and resuming ------------------------------------------------------------------------------------
def checkpoint_folders(out: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint under OUT/checkpoints, oldest first."""
    folder = out / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in folder.iterdir()
        if p.is_dir() and (m := _CHECKPOINT_PATTERN.match(p.name))
    ]
    return sorted(found)


def complete_checkpoints(out: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint (one with its state.json), oldest first."""
    return [(step, path) for step, path in checkpoint_folders(out) if (path / "state.json").is_file()]


def resume_latest(out: Path, load: Callable[[Path], ResultT]) -> tuple[ResultT, Path] | None:
    """`load` the newest complete checkpoint; one that turns out corrupt (a `LoadError`) is renamed
    `step_N.corrupt`, said in one warning line, and the one before it is tried. None: no usable checkpoint.

    `load` must restore everything it touches from the folder it is given, so a failed attempt leaves
    nothing behind that the next attempt does not overwrite.
    """
    remove_stale_stages(out / CHECKPOINTS)
    for _, folder in reversed(complete_checkpoints(out)):
        try:
            return load(folder), folder
        except LoadError as error:
            aside, number = folder.with_name(f"{folder.name}.corrupt"), 1
            while aside.exists():  # an earlier crash left one already
                aside, number = folder.with_name(f"{folder.name}.corrupt{number}"), number + 1
            os.replace(folder, aside)
            logger.warning(
                "checkpoint %s is corrupt (%s); moved to %s, resuming from the one before it",
                folder.name,
                error,
                aside.name,
            )
    return None


def remove_old_checkpoints(out: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints under OUT/checkpoints."""
    for _, old in checkpoint_folders(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


# -- one checkpoint ------------------------------------------------------------------------------------------
def save_checkpoint(
    out: Path,
    step: int,
    tensors: dict[str, dict[str, Tensor]],
    optimizers: dict[str, torch.optim.Optimizer],
    state: dict[str, Any],
    keep: int,
) -> Path:
    """Write OUT/checkpoints/step_NNNNNNN atomically: NAME.safetensors per entry of `tensors` and of
    `optimizers`, and state.json = {"step": step, **state}; then keep only the newest `keep`."""
    target = out / CHECKPOINTS / f"step_{step:07d}"
    with staged_output_dir(target, overwrite=True) as stage:
        for name, values in tensors.items():
            save_safetensors(
                stage / f"{name}.safetensors", {k: v.detach().contiguous().cpu() for k, v in values.items()}
            )
        for name, optimizer in optimizers.items():
            save_optimizer(stage / f"{name}.safetensors", optimizer)
        write_json_atomic(stage / "state.json", {"step": step, **state})
    remove_old_checkpoints(out, keep)
    return target


def read_checkpoint_state(folder: Path, required: tuple[str, ...] = ("step",)) -> dict[str, Any]:
    """A checkpoint's state.json; a torn or incomplete one is a `LoadError` (so resuming falls back)."""
    try:
        state = json.loads((folder / "state.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LoadError(f"checkpoint {folder} has an unreadable state.json ({error})") from None
    if not isinstance(state, dict) or any(key not in state for key in required):
        raise LoadError(
            f"checkpoint {folder}: state.json lacks {[key for key in required if key not in (state or {})]}"
        )
    return state


def load_checkpoint_tensors(folder: Path, names: tuple[str, ...]) -> dict[str, dict[str, Tensor]]:
    """NAME.safetensors of a checkpoint for each of `names` (a missing or torn file is a `LoadError`)."""
    return {name: load_safetensors(folder / f"{name}.safetensors", "checkpoint weights") for name in names}


def save_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> None:
    """Tensors of `optimizer.state_dict()` as safetensors; everything else (param groups, scalars) as
    metadata."""
    save_safetensors(path, *flat_optimizer_state(optimizer))


def flat_optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, str]]:
    """`optimizer.state_dict()` as "INDEX.KEY" → tensor, and the rest (param groups, scalars) as JSON
    strings: what an optimizer's safetensors file holds."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, Tensor):
                tensors[f"{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": json.dumps(state["param_groups"]), "scalars": json.dumps(scalars)}


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
        raise LoadError(
            f"optimizer state {path} does not fit this optimizer ({error}); resume with the run's own config"
        ) from None


def module_fingerprint(module: nn.Module) -> str:
    """sha256 over a module's state (names, dtypes, shapes, values): what a cache or a run was made with."""
    digest = hashlib.sha256()
    _hash_tensors(digest, module.state_dict())
    return digest.hexdigest()


def checkpoint_fingerprint(
    tensors: dict[str, dict[str, Tensor]], optimizers: dict[str, torch.optim.Optimizer], state: dict[str, Any]
) -> str:
    """sha256 over what `save_checkpoint` would write for these arguments (tensor values, not file bytes):
    the processes of a data-parallel run that are in step give the same one."""
    digest = hashlib.sha256()
    for name, values in sorted(tensors.items()):
        digest.update(f"tensors {name}\n".encode())
        _hash_tensors(digest, values)
    for name, optimizer in sorted(optimizers.items()):
        values, metadata = flat_optimizer_state(optimizer)
        digest.update(f"optimizer {name} {json.dumps(metadata, sort_keys=True)}\n".encode())
        _hash_tensors(digest, values)
    digest.update(json.dumps(state, sort_keys=True).encode())
    return digest.hexdigest()


def _hash_tensors(digest, tensors: dict[str, Tensor]) -> None:
    # reshape: a 0-d tensor (Adam's step) cannot be viewed as bytes
    for name, value in sorted(tensors.items()):
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


# -- logs ----------------------------------------------------------------------------------------------------
def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


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
