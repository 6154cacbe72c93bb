"""MVSplat's released checkpoint (a PyTorch Lightning `.ckpt`, or a `.safetensors` / `.pt` state dict) to a
prior folder our loaders accept, without unpickling anything but tensors and plain containers.

A Lightning checkpoint holds the encoder's tensors under `state_dict` with the prefix `encoder.`, beside
entries of the training losses (e.g. LPIPS) and the optimizer, which are ignored. The encoder's names are
ours (prior/encoder.py), so the tensors load strictly into `GaussianEncoder`.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from videoscene.errors import LoadError
from videoscene.importers.state_dict import read_state_dict
from videoscene.io_utils import staged_output_dir
from videoscene.prior.config import EncoderConfig, encoder_config
from videoscene.prior.encoder import GaussianEncoder

PREFIX = "encoder."


def encoder_state(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """The encoder's tensors: those under `encoder.` when any are (a Lightning checkpoint), else all."""
    if any(key.startswith(PREFIX) for key in tensors):
        return {key[len(PREFIX) :]: value for key, value in tensors.items() if key.startswith(PREFIX)}
    return dict(tensors)


def load_mvsplat(path: str | Path, config: EncoderConfig) -> GaussianEncoder:
    """A `GaussianEncoder` holding an MVSplat checkpoint's encoder weights (cast to float32), loaded
    strictly: missing or unexpected names, or other shapes, are one line saying which."""
    state = {
        k: v.float()
        for k, v in encoder_state(read_state_dict(path, "MVSplat's re10k.ckpt or a state dict file")).items()
    }
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
