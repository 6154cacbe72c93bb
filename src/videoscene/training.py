"""What every trainer (prior, VAE, teacher, distillation) shares: the learning-rate schedule, per-step
randomness, checkpoint folders and optimizer state as safetensors (nothing is ever pickled).

Checkpoints live in OUT/checkpoints/step_NNNNNNN, each built in a staging folder and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from videoscene.io_utils import atomic_path

CHECKPOINTS = "checkpoints"
_CHECKPOINT_PATTERN = re.compile(r"^step_(\d{7})$")


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
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> None:
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    state: dict[int, dict] = {}
    for flat, value in [*tensors.items(), *json.loads(metadata["scalars"]).items()]:
        index, key = flat.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["param_groups"])})
