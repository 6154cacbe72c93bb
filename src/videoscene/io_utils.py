"""Writing outputs so that a crash or a bad input never leaves half-written files behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from videoscene.errors import VideoSceneError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it is renamed onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp
        if tmp.exists():
            tmp.chmod(0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: str | os.PathLike, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


@contextlib.contextmanager
def staged_output_dir(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Build an output folder in a hidden staging folder and move it into place only on success.

    An existing non-empty `out` is an error unless `overwrite`, in which case it is replaced at the end.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise VideoSceneError(f"output path {out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise VideoSceneError(f"output folder {out} already exists and is not empty; choose another --out or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        yield stage
        if out.exists():
            shutil.rmtree(out)
        os.replace(stage, out)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def read_json_object(path: str | os.PathLike, what: str, hint: str = "", holds: str = "a JSON object") -> dict:
    """A JSON object from `path`, or one clear line naming `what` is wrong (missing, not JSON, not `holds`)."""
    path = Path(path)
    if not path.is_file():
        raise VideoSceneError(f"{what} {path} does not exist{hint}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise VideoSceneError(f"{what} {path} is not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(data, dict):
        raise VideoSceneError(f"{what} {path} must hold {holds}")
    return data
