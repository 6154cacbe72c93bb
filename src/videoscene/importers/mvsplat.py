"""MVSplat's released checkpoint (a PyTorch Lightning `.ckpt`, or a `.safetensors` / `.pt` state dict) to a
prior folder our loaders accept, without unpickling anything but tensors and plain containers.

A Lightning checkpoint holds the encoder's tensors under `state_dict` with the prefix `encoder.`, beside
entries of the training losses (e.g. LPIPS) and the optimizer, which are ignored. The encoder's names are
ours (prior/encoder.py), so the tensors load strictly into `GaussianEncoder`.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import Tensor

from videoscene.errors import InputError, LoadError
from videoscene.io_utils import load_safetensors, staged_output_dir
from videoscene.prior.config import EncoderConfig, encoder_config
from videoscene.prior.encoder import GaussianEncoder

PREFIX = "encoder."


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """Every tensor of a checkpoint file, by name; a Lightning checkpoint's `state_dict` is taken out.

    `.safetensors` files are read as such; anything else with `torch.load(weights_only=True)`, which
    refuses to build objects other than tensors and plain containers: such a file is one line naming what
    it holds."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist; give MVSplat's re10k.ckpt or a state dict file")
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


def encoder_state(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """The encoder's tensors: those under `encoder.` when any are (a Lightning checkpoint), else all."""
    if any(key.startswith(PREFIX) for key in tensors):
        return {key[len(PREFIX) :]: value for key, value in tensors.items() if key.startswith(PREFIX)}
    return dict(tensors)


def load_mvsplat(path: str | Path, config: EncoderConfig) -> GaussianEncoder:
    """A `GaussianEncoder` holding an MVSplat checkpoint's encoder weights (cast to float32), loaded
    strictly: missing or unexpected names, or other shapes, are one line saying which."""
    state = {k: v.float() for k, v in encoder_state(read_checkpoint(path)).items()}
    encoder = GaussianEncoder(config)
    expected = {k: tuple(v.shape) for k, v in encoder.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    reshaped = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if missing or unexpected or reshaped:
        parts = [
            f"{len(names)} {what} (e.g. {names[0]})"
            for names, what in (
                (missing, "missing"),
                (unexpected, "unexpected"),
                (reshaped, "of other shapes"),
            )
            if names
        ]
        raise LoadError(
            f"checkpoint {path} does not hold MVSplat encoder weights for this config: "
            + ", ".join(parts)
            + " of 471 tensors; give the RealEstate10K checkpoint or pass the --config it was trained with"
        )
    encoder.load_state_dict(state, strict=True)
    return encoder


def import_mvsplat(
    checkpoint: str | Path, out: str | Path, config: str = "mvsplat", overwrite: bool = False
) -> Path:
    """Write a prior folder (prior.safetensors + prior_config.json) from an MVSplat checkpoint, atomically."""
    encoder = load_mvsplat(checkpoint, encoder_config(config))
    with staged_output_dir(out, overwrite) as stage:
        encoder.save(stage)
    return Path(out)
