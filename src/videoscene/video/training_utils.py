"""What the VAE and teacher trainers share: checkpoints of named modules.

Configs, the schedule, step randomness, checkpoint listing, optimizer state and logs come from
`videoscene.training`, which every trainer shares.

Checkpoints are folders OUT/checkpoints/step_NNNNNNN (the prior trainer's naming) holding one
safetensors file per module, optimizer.safetensors, and state.json (step, scheduler, and what the run
needs to check it resumes the same experiment). Each is built in a staging folder and renamed into place,
so a crash never leaves a half-written checkpoint; nothing is pickled. Every random draw of a step comes
from `step_generator(tag, seed, step)`, so a resumed run continues exactly as the uninterrupted one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from videoscene.errors import VideoSceneError
from videoscene.io_utils import load_safetensors, load_state, staged_output_dir, write_json_atomic
from videoscene.training import (
    CHECKPOINTS,
    load_optimizer,
    read_checkpoint_state,
    remove_old_checkpoints,
    save_optimizer,
)


# -- checkpoints ----------------------------------------------------------------------------------------------------
def save_checkpoint(
    out: Path,
    step: int,
    modules: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: dict[str, Any],
    keep: int,
    extra_tensors: dict[str, dict[str, Tensor]] | None = None,
) -> Path:
    """Write OUT/checkpoints/step_NNNNNNN atomically (modules, optimizer, scheduler, `state`), keep the newest `keep`."""
    target = out / CHECKPOINTS / f"step_{step:07d}"
    with staged_output_dir(target, overwrite=True) as stage:
        for name, module in modules.items():
            save_file({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}, str(stage / f"{name}.safetensors"))
        for name, tensors in (extra_tensors or {}).items():
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(stage / f"{name}.safetensors"))
        save_optimizer(stage / "optimizer.safetensors", optimizer)
        write_json_atomic(stage / "state.json", {"step": step, "scheduler": scheduler.state_dict(), **state})
    remove_old_checkpoints(out, keep)
    return target


def load_checkpoint(
    folder: Path,
    modules: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    expected: dict[str, Any],
) -> dict[str, Any]:
    """Restore modules, optimizer and scheduler; `expected` entries must equal the stored ones (same experiment).
    Returns state.json (its "step" is where training continues)."""
    state = read_checkpoint_state(folder)
    module_states = {name: load_safetensors(folder / f"{name}.safetensors", "checkpoint weights") for name in modules}
    for key, value in expected.items():
        if state.get(key) != json.loads(json.dumps(value)):  # compare as stored (tuples read back as lists)
            raise VideoSceneError(f"checkpoint {folder} was made with a different {key}; resume with the run's own config")
    for name, module in modules.items():
        load_state(module, module_states[name], folder / f"{name}.safetensors", "checkpoint weights")
    load_optimizer(folder / "optimizer.safetensors", optimizer)
    scheduler.load_state_dict(state["scheduler"])
    return state
