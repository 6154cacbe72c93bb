"""Read a released checkpoint's tensors without unpickling anything but tensors and plain containers."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import Tensor

from videoscene.errors import InputError, LoadError
from videoscene.io_utils import load_safetensors


def read_state_dict(path: str | Path, expected: str) -> dict[str, Tensor]:
    """Every tensor of a checkpoint file, by name; a Lightning checkpoint's `state_dict` is taken out.

    `.safetensors` files are read as such; anything else with `torch.load(weights_only=True)`, which
    refuses to build objects other than tensors and plain containers: such a file is one line naming what
    it holds. `expected` names the file the user should give (for the missing-file line)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist; give {expected}")
    if path.suffix == ".safetensors":
        return load_safetensors(path, "checkpoint")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        detail = " ".join(str(error).split())
        # weights_only names the global it refused ("Unsupported global: GLOBAL module.Name ...").
        offending = detail.split("GLOBAL ", 1)[1].split()[0] if "GLOBAL " in detail else detail[:120]
        raise LoadError(
            f"checkpoint {path} needs objects other than tensors to be unpickled ({offending}); it is "
            "refused rather than run: save its state_dict (tensors only) with safetensors and import that"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0][:160]
        raise LoadError(f"checkpoint {path} cannot be read ({reason})") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not any(isinstance(v, Tensor) for v in loaded.values()):
        raise LoadError(f"checkpoint {path} holds no state dict (a mapping of names to tensors)")
    return {k: v for k, v in loaded.items() if isinstance(v, Tensor)}
