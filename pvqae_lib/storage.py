"""Reading and writing files safely, for every layer: atomic writes (a temporary file beside the
target, renamed over it: a crash never leaves half a file, a failed write leaves no temporary file),
reads that never run code (``torch.load(weights_only=True)``), and a refusal to replace anything but a
regular file. Errors are :class:`StorageError`, one line naming the path."""
from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

import torch


class StorageError(ValueError):
    """A file that cannot be read or written (one line, names the path)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()      # what open() would give a new file (mkstemp's own is 0o600)


def os_reason(e: BaseException) -> str:
    """'No space left on device', 'Is a directory', ... or the first line of a non-OS error."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    if isinstance(e, RuntimeError) and any(k in str(e) for k in ("unexpected pos", "file write failed",
                                                                 "PytorchStreamWriter failed")):
        return "the write stopped short (no space left on device, or a file-size limit)"
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _write_atomic(path: Path, write) -> None:
    """``write(file object)`` into a new temporary file beside ``path``, fsync, rename over ``path``.
    Any failure removes the temporary file and raises StorageError naming ``path``."""
    path = Path(path)
    if path.is_dir():
        raise StorageError(f"cannot write {path}: it is a folder")
    check_regular(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except Exception as e:
        raise StorageError(f"cannot write {path}: {os_reason(e)}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def save_atomic(obj, path: Path) -> None:
    """torch.save to a temporary file beside ``path``, then rename: a crash never leaves half a file,
    a failed write (disk full, no such folder) leaves no temporary file."""
    _write_atomic(path, lambda f: torch.save(obj, f))


def write_text(text: str, path: Path) -> None:
    _write_atomic(path, lambda f: f.write(text.encode()))


def write_json(obj, path: Path) -> None:
    write_text(json.dumps(obj, indent=2, default=float) + "\n", path)


def load_weights(path: Path):
    """torch.load that never runs code: tensors, dicts, lists, numbers and strings only."""
    return torch.load(path, map_location="cpu", weights_only=True)


def read_json(path: Path, what: str = "file") -> dict:
    """A JSON object the library wrote (StorageError naming the file when it is missing or broken)."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise StorageError(f"cannot read {what} {path}: {os_reason(e)}") from None
    except (ValueError, UnicodeDecodeError):
        raise StorageError(f"{what} {path} is not valid JSON") from None
    except RecursionError:
        raise StorageError(f"{what} {path} is nested too deeply to be one this library wrote") from None
    if not isinstance(data, dict):
        raise StorageError(f"{what} {path} is not a JSON object")
    return data


def check_regular(path: Path, flag: str | None = None) -> None:
    """StorageError unless ``path`` is missing or a regular file: a write renames a new file over it, so a
    device node (even /dev/null), a pipe, a socket or a link to one is never replaced."""
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):     # nothing there to replace (a parent is named elsewhere)
        return
    except OSError as e:
        raise StorageError(f"cannot write {path}: {os_reason(e)}") from None
    if stat.S_ISLNK(mode):
        what = "a symbolic link"
    elif not stat.S_ISREG(mode):
        what = "a device, pipe or socket" if not stat.S_ISDIR(mode) else "a folder"
    else:
        return
    raise StorageError(f"{flag + ' ' if flag else ''}{path} is {what}, not a regular file: refusing to replace it")
