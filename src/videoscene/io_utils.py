"""Reading inputs and writing outputs so that a crash or a bad input never leaves half-written files
behind, and an output location never reaches anything this program did not write.

Guarantees (docs/conventions.md §"Inputs, outputs and crashes"):
- an output folder is built in a hidden staging folder beside it and renamed into place on success;
- every output folder holds a marker file, `.videoscene-output`, and `--overwrite` replaces only a folder
  that holds one; the working directory, its ancestors, the home directory and `/` are never outputs;
- staging folders left by a killed run (marker with a process id that is gone) are removed by the next run.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes
from torch import Tensor, nn

from videoscene import __version__
from videoscene.errors import InputError, LoadError, OutputError

OUTPUT_MARKER = ".videoscene-output"
# A run marks its staging folder microseconds after creating it; an unmarked one older than this was
# left by a killed run, a younger one may belong to a run starting beside ours.
_UNMARKED_GRACE_S = 600.0
# errno values that can only mean "the output cannot be written", whatever the block was doing
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


# -- output locations ----------------------------------------------------------------------------------------
def protected_folders() -> set[Path]:
    """Folders that are never an output: the working directory and its ancestors, home and its ancestors."""
    cwd, home = Path.cwd().resolve(), Path.home().resolve()
    return {cwd, *cwd.parents, home, *home.parents, Path("/")}


def check_output_location(out: str | os.PathLike) -> Path:
    """Refuse an output path that is protected, a symbolic link, a file, or under a folder we cannot write.

    Nothing is created: the check probes the nearest existing ancestor with a temporary folder it removes.
    """
    out = Path(out)
    if out.is_symlink():
        raise OutputError(f"output path {out} is a symbolic link; give a real folder path as --out")
    resolved = out.resolve()
    if resolved in protected_folders():
        raise OutputError(
            f"output path {out} is the working directory, one of its parents, the home folder or /; "
            "give a new subfolder such as outputs/run"
        )
    if out.exists() and not out.is_dir():
        raise OutputError(f"output path {out} exists and is not a folder; choose another --out")
    ancestor = resolved.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"cannot write {out}: {ancestor} is a file, not a folder; choose another --out")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".videoscene-probe.", dir=ancestor))
    except OSError as error:
        raise OutputError(f"cannot write under {ancestor} ({error.strerror}); choose another --out") from None
    return out


def check_output_dir(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """`check_output_location`, and: a non-empty `out` needs `overwrite` and must be one of our outputs."""
    out = check_output_location(out)
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise OutputError(
                f"output folder {out} already exists and is not empty; choose another --out or pass "
                "--overwrite"
            )
        if not (out / OUTPUT_MARKER).is_file():
            raise OutputError(
                f"output folder {out} was not written by videoscene (it has no {OUTPUT_MARKER}), so "
                "--overwrite leaves it alone; "
                "delete it yourself or choose another --out"
            )
    return out


def _write_marker(folder: Path) -> None:
    (folder / OUTPUT_MARKER).write_text(
        json.dumps(
            {"written_by": f"videoscene {__version__}", "host": socket.gethostname(), "pid": os.getpid()}
        )
        + "\n"
    )


def _marker(folder: Path) -> dict | None:
    try:
        marker = json.loads((folder / OUTPUT_MARKER).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _is_stale_stage(folder: Path) -> bool:
    """A staging folder of ours whose writer (same host) is no longer running."""
    marker = _marker(folder)
    if marker is None or marker.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(marker["pid"]), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return False


def remove_stale_stages(parent: Path) -> list[Path]:
    """Remove `.*.partial` staging folders under `parent` left by killed runs of ours; returns them."""
    removed = []
    if parent.is_dir():
        for folder in parent.glob(".*.partial"):
            if not folder.is_dir() or folder.is_symlink():
                continue
            try:  # another run may move its own folder into place meanwhile
                names = {entry.name for entry in folder.iterdir()}
                age = time.time() - folder.stat().st_mtime
            except FileNotFoundError:
                continue
            # An unmarked folder may be another run's, created a moment ago and not marked yet: only an old
            # one was left by a run killed between creating and marking it.
            unmarked = not names or (names == {OUTPUT_MARKER} and _marker(folder) is None)
            if unmarked and age > _UNMARKED_GRACE_S:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
            elif _is_stale_stage(folder):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    return removed


@contextlib.contextmanager
def write_boundary(what: str | os.PathLike) -> Iterator[None]:
    """Turn the errors that can only mean "this cannot be written" (full disk, read-only) into one line."""
    try:
        yield
    except OSError as error:
        if error.errno not in _WRITE_ERRNOS:
            raise
        raise OutputError(
            f"could not write {what} ({error.strerror}); free space or choose another output location"
        ) from None


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it is renamed onto `path` only if the block succeeds."""
    path = Path(path)
    with write_boundary(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp)
        try:
            yield tmp
            if tmp.exists():
                tmp.chmod(0o666 & ~_umask())  # mkstemp creates 0600; give the usual file mode
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def write_json_atomic(path: str | os.PathLike, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


@contextlib.contextmanager
def staged_output_dir(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Build an output folder in a hidden staging folder and move it into place only on success.

    `out` is checked by `check_output_dir` first; an existing folder (one of ours) is replaced at the end,
    and the previous one is removed only after the new one is in place.
    """
    out = check_output_dir(out, overwrite)
    with write_boundary(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_stages(out.parent)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
        old = None
        try:
            stage.chmod(0o777 & ~_umask())  # mkdtemp creates 0700; give the usual folder mode
            _write_marker(stage)
            yield stage
            if out.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", suffix=".partial", dir=out.parent))
                os.replace(out, old / out.name)
            os.replace(stage, out)
        finally:
            for leftover in (stage, old):
                if leftover is not None and leftover.exists():
                    shutil.rmtree(leftover, ignore_errors=True)


# -- inputs --------------------------------------------------------------------------------------------------
def read_json_object(
    path: str | os.PathLike, what: str, hint: str = "", holds: str = "a JSON object"
) -> dict:
    """A JSON object from `path`, or one clear line naming `what` is wrong (missing, not JSON, not
    `holds`)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist{hint}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"{what} {path} is not valid JSON ({error.msg} at line {error.lineno})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{what} {path} cannot be read ({error}); give a UTF-8 JSON file") from None
    if not isinstance(data, dict):
        raise InputError(f"{what} {path} must hold {holds}")
    return data


def save_safetensors(
    path: str | os.PathLike, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Write a .safetensors file atomically, byte-for-byte the same for the same tensors and metadata.

    safetensors orders the header's metadata keys differently from process to process; the header is
    re-serialised with sorted keys and the same length (spaces pad it, as the format allows), so every
    tensor offset stays where it was.
    """
    raw = safetensors_bytes({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)
    length = int.from_bytes(raw[:8], "little")
    header = json.dumps(
        json.loads(raw[8 : 8 + length]), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()
    if len(header) <= length:
        raw = raw[:8] + header + b" " * (length - len(header)) + raw[8 + length :]
    with atomic_path(path) as tmp:
        tmp.write_bytes(raw)


def load_safetensors(path: str | os.PathLike, what: str, device: str = "cpu") -> dict[str, Tensor]:
    """Every tensor of a .safetensors file, or one line naming the file when it is missing or corrupt."""
    return read_safetensors(path, what, device)[0]


def read_safetensors(
    path: str | os.PathLike, what: str, device: str = "cpu"
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(tensors, metadata) of a .safetensors file; a missing, truncated or foreign file (e.g. a pickle renamed
    .safetensors) is one line naming it. Nothing is ever unpickled."""
    path = Path(path)
    if not path.is_file():
        raise LoadError(f"{what} {path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}, handle.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise LoadError(
            f"{what} {path} is not a readable .safetensors file ({reason}); restore or re-create it"
        ) from None


def load_state(
    module: nn.Module, state: dict[str, Tensor], path: str | os.PathLike, what: str, **options
) -> None:
    """`module.load_state_dict(state)`, with weights of another architecture as one line naming the file."""
    try:
        module.load_state_dict(state, **options)
    except (RuntimeError, ValueError) as error:
        detail = " ".join(str(error).split())[:160]
        raise LoadError(
            f"{what} {path} does not fit this model's architecture ({detail}); give the weights made for it"
        ) from None


def inside(root: str | os.PathLike, relative: str | os.PathLike, what: str) -> Path:
    """`root / relative`, refused (one line) if it leaves `root`, e.g. by `../` or an absolute path."""
    root = Path(root).resolve()
    path = (root / relative).resolve()
    if path != root and root not in path.parents:
        raise InputError(
            f"{what} {str(relative)!r} points outside {root}; paths in a dataset must stay inside its folder"
        )
    return path
