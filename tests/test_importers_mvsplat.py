"""`videoscene weights import-mvsplat` / `verify-mvsplat` (importers/): a Lightning-style checkpoint
built here (encoder tensors under `encoder.`, loss and optimizer entries beside them) becomes a prior
folder that loads strictly and computes what the checkpoint's encoder computes; checkpoints that need
unpickling objects, or hold other tensors, are one line; verify-mvsplat passes on MVSplat's own outputs
(shared reference)."""

import collections

import pytest
import torch
from safetensors.torch import load_file, save_file
from weights_factory import lightning_checkpoint, make_context

from videoscene.cli import main
from videoscene.prior.config import MVSPLAT, TINY
from videoscene.prior.encoder import GaussianEncoder

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return GaussianEncoder(TINY).eval()


def test_a_lightning_checkpoint_becomes_a_prior_folder_with_the_same_output(encoder, tmp_path, capsys):
    lightning_checkpoint(tmp_path / "re10k.ckpt", encoder.state_dict())
    out = tmp_path / "prior"
    assert (
        main(
            [
                "weights",
                "import-mvsplat",
                "--checkpoint",
                str(tmp_path / "re10k.ckpt"),
                "--out",
                str(out),
                "--config",
                "tiny",
            ]
        )
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    imported = GaussianEncoder.load(out).eval()
    context = make_context(batch=1)
    with torch.no_grad():
        torch.testing.assert_close(imported(context).gaussians.means, encoder(context).gaussians.means)
    # A plain state dict, with or without the prefix, as safetensors or .pt, gives the same weights.
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, tmp_path / "plain.safetensors")
    torch.save({f"encoder.{k}": v for k, v in encoder.state_dict().items()}, tmp_path / "prefixed.pt")
    for name in ("plain.safetensors", "prefixed.pt"):
        other = tmp_path / f"prior_{name}"
        assert (
            main(
                [
                    "weights",
                    "import-mvsplat",
                    "--checkpoint",
                    str(tmp_path / name),
                    "--out",
                    str(other),
                    "--config",
                    "tiny",
                ]
            )
            == 0
        )
        assert load_file(other / "prior.safetensors").keys() == load_file(out / "prior.safetensors").keys()


class NotATensor:
    pass


def test_a_checkpoint_that_needs_unpickling_objects_is_refused_in_one_line(tmp_path, capsys):
    torch.save(
        {"state_dict": collections.OrderedDict(), "hyper_parameters": NotATensor()}, tmp_path / "evil.ckpt"
    )
    out = tmp_path / "prior"
    assert (
        main(["weights", "import-mvsplat", "--checkpoint", str(tmp_path / "evil.ckpt"), "--out", str(out)])
        == 2
    )
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "NotATensor" in error and "refused" in error
    assert not out.exists()


def test_weights_of_another_architecture_name_what_differs(encoder, tmp_path, capsys):
    state = dict(encoder.state_dict())
    state.pop("backbone.backbone.conv1.weight")
    state["backbone.extra.weight"] = torch.zeros(1)
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "odd.safetensors")
    out = tmp_path / "prior"
    assert (
        main(
            [
                "weights",
                "import-mvsplat",
                "--checkpoint",
                str(tmp_path / "odd.safetensors"),
                "--out",
                str(out),
                "--config",
                "tiny",
            ]
        )
        == 2
    )
    error = capsys.readouterr().err.strip()
    assert "1 missing (e.g. backbone.backbone.conv1.weight)" in error and "1 unexpected" in error
    assert not out.exists()
    # The tiny weights are not the mvsplat preset's: shapes differ.
    lightning_checkpoint(tmp_path / "tiny.ckpt", encoder.state_dict())
    assert (
        main(["weights", "import-mvsplat", "--checkpoint", str(tmp_path / "tiny.ckpt"), "--out", str(out)])
        == 2
    )
    assert "of other shapes" in capsys.readouterr().err


def test_verify_mvsplat_passes_on_mvsplats_own_outputs(shared_data, tmp_path, capsys):
    reference = shared_data.parent / "reference" / "mvsplat"
    if not reference.is_dir():
        pytest.skip(f"MVSplat reference folder {reference} is absent")
    state = {k: v.float() for k, v in load_file(reference / "mvsplat_re10k_random_fp16.safetensors").items()}
    lightning_checkpoint(tmp_path / "re10k.ckpt", state)
    out = tmp_path / "prior"
    assert (
        main(["weights", "import-mvsplat", "--checkpoint", str(tmp_path / "re10k.ckpt"), "--out", str(out)])
        == 0
    )
    capsys.readouterr()
    io = str(reference / "mvsplat_reference_io.safetensors")
    assert main(["weights", "verify-mvsplat", "--weights", str(out), "--reference", io]) == 0
    report = capsys.readouterr().out
    assert all(name in report for name in ("means", "covariances", "harmonics", "opacities"))
    assert "FAIL" not in report and "all outputs within 0.0001 relative" in report
    # Other weights of the same architecture do not reproduce it: exit 2, one line.
    GaussianEncoder(MVSPLAT).save(tmp_path / "random")
    assert main(["weights", "verify-mvsplat", "--weights", str(tmp_path / "random"), "--reference", io]) == 2
    assert "does not reproduce" in capsys.readouterr().err
