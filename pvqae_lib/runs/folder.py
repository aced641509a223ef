"""A run directory: the files the library writes into it, their provenance, atomic
writes, an exclusive lock, and the rules for what may be overwritten.

One place per idea:

* provenance: :func:`git_commit`, :func:`machine`, :func:`command_line`;
* atomic writes: :func:`save_atomic` (torch), :func:`write_json`, :func:`write_text` — a temporary
  file beside the target, renamed over it; a failed write removes the temporary file and raises
  :class:`RunError` (one line naming the path);
* the lock: :class:`RunLock`, ``fcntl.flock`` on ``run.lock`` inside the folder, holding the pid, host and
  command of its holder. The kernel releases a flock when its process dies, so a lock file left by a
  killed process does not block anyone;
* overwrite rules: :func:`check_train_out` (``train --out`` holds nothing, or one of our runs),
  :func:`check_not_started`, :func:`is_run_dir`, :data:`RUN_FILES`, and the folders a failed call made
  (:func:`new_folders`, :func:`remove_new_folders`);
* reading a run back: :func:`check_run` (a finished model is there), :func:`open_run`, :func:`load_split`
  (the images it was trained or is tested on, from its recorded dataset settings).

Loading never executes code: :func:`load_weights` is ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import torch
import errno
import json
import os
import platform
import shlex
import socket
import subprocess
from pathlib import Path

from ..engine.train import CHECKPOINT
from ..storage import (
    StorageError,
    check_regular,
    load_weights,
    os_reason,
    read_json,
    save_atomic,
    write_json,
    write_text,
)
from ..data import load_dataset, make_synthetic
from ..engine.pipeline import load_trained
from ..paths import RESULTS_DIR

CONFIG = "config.json"
MODEL_FILE = "model.pt"
HISTORY = "history.json"
SPLIT = "split.json"
LOCK = "run.lock"
# every file ``train`` writes into --out (what --force may replace there; nothing else is touched)
RUN_FILES = (CONFIG, CHECKPOINT, MODEL_FILE, HISTORY, SPLIT, LOCK)


class RunError(StorageError):
    """A run folder or file that cannot be used or written (one line, names the path)."""


# ------------------------------------------------------------------------------------ provenance

def git_commit(where: Path | None = None) -> str:
    """The commit the code ran from, '-dirty' when tracked files outside RESULTS_DIR had uncommitted
    changes (a series of runs writes its results there without dirtying the next run), or 'unknown'."""
    where = where or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                f":(top,exclude){RESULTS_DIR}"], cwd=where, capture_output=True,
                               text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def command_line(argv: list[str]) -> str:
    """The command a result records: what the user typed, or what ``demo`` ran in-process."""
    return "python -m pvqae_lib " + " ".join(shlex.quote(a) for a in argv)


def machine() -> str:
    """The hardware and software a measurement ran on, as one line for results and timing tables."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.machine()}, {os.cpu_count()} cores ({cpu}), {gpu}, "
            f"Python {platform.python_version()}, torch {torch.__version__}")


# ------------------------------------------------------------------------------------ atomic writes


# ------------------------------------------------------------------------------------------- lock

class RunLock:
    """An exclusive lock on a folder: ``fcntl.flock`` on ``folder/run.lock``, which records the pid,
    host and command of its holder. A second writer gets RunError at once, naming the holder.

    The kernel drops a flock when its holder dies, so a file left behind by ``kill -9`` is taken
    over. The file is removed on release; an inode check after locking makes removal race-free.
    """

    def __init__(self, folder: Path, command: str = ""):
        self.folder, self.command, self.fd = Path(folder), command, None
        self.path = self.folder / LOCK

    def acquire(self) -> RunLock:
        import fcntl                    # POSIX only: imported where the lock is taken
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise RunError(f"cannot lock {self.folder}: {os_reason(e)}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise RunError(f"cannot lock {self.folder}: {os_reason(e)}") from None
                raise RunError(f"{self.folder} is in use by {self.holder()}: wait for it to finish") from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:      # the previous holder removed the file meanwhile
                same = False
            if same:
                break
            os.close(fd)
        info = f"pid={os.getpid()} host={socket.gethostname()} command={self.command}\n"
        try:
            os.ftruncate(fd, 0)
            os.write(fd, info.encode())
        except OSError as e:                      # a full disk: say where, and hold nothing
            os.close(fd)
            raise RunError(f"cannot lock {self.folder}: writing {self.path} failed: {os_reason(e)}") from None
        self.fd = fd
        return self

    def holder(self) -> str:
        try:
            text = self.path.read_text().strip()
        except OSError:
            text = ""
        return text.replace("\n", " ") or "another process"

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)        # closing drops the flock
        self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


# -------------------------------------------------------------------------------- overwrite rules

def remove_stale_temporaries(folder: Path) -> list[str]:
    """Remove what a killed write of one of RUN_FILES left (``.checkpoint.pt.<random>.tmp``); call it
    holding the folder's lock. Returns the names removed."""
    removed = []
    for name in RUN_FILES:
        for tmp in Path(folder).glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp.name)
    return removed


def is_run_dir(folder: Path) -> bool:
    """Whether ``folder`` holds a run of this library: a config.json with its keys."""
    try:
        config = json.loads((Path(folder) / CONFIG).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(config, dict) and {"profile", "data", "command"} <= set(config)


def foreign_files(folder: Path) -> list[str]:
    """Names in ``folder`` that ``train`` did not write."""
    return sorted(p.name for p in Path(folder).iterdir() if p.name not in RUN_FILES)


def check_train_out(out: Path, force: bool) -> None:
    """``train --out``: a new or empty folder, or one of this library's runs (RunError otherwise).
    With ``force``, a non-empty folder is accepted, and only RUN_FILES in it are replaced."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file, not a folder")
    if not out.is_dir() or force:
        return
    if any(p.name != LOCK for p in out.iterdir()) and not is_run_dir(out):   # a lock file alone: a killed start
        names = foreign_files(out) or sorted(p.name for p in out.iterdir())
        shown = ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
        raise RunError(f"--out {out} is not empty and holds no run of this library ({shown}): "
                       f"choose a new folder, or --force to write the run's files beside them")


def check_outside_dataset(out: Path, root, flag: str = "--out") -> None:
    """RunError when ``out`` lies inside the dataset folder ``root``: a run or predictions written there
    would become part of the dataset (a folder under test/ is read as a defect kind)."""
    if not root:
        return
    try:
        out_r, root_r = Path(out).resolve(), Path(root).resolve()
    except (OSError, RuntimeError):          # a link loop: the loaders name it
        return
    if out_r == root_r or root_r in out_r.parents:
        raise RunError(f"{flag} {out} is inside the dataset folder {root}: write runs and predictions elsewhere "
                       f"(the dataset would read them as images)")


def check_writable_file(path: Path, force: bool, flag: str = "--json") -> None:
    """A file a command is about to write: not a folder, not a device, pipe, socket or link (never
    replaced, even with ``force``), not existing unless ``force``."""
    path = Path(path)
    if path.is_dir():
        raise RunError(f"{flag} {path} is a folder, not a file")
    check_regular(path, flag)
    if path.exists() and not force:
        raise RunError(f"{path} exists: --force to overwrite it")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise RunError(f"{flag} {path}: {parent} is a file, not a folder")


def check_not_started(out: Path, force: bool) -> None:
    """``train --out`` without --resume: no run (checkpoint, model or config) in it unless ``force``."""
    if out.exists() and any((out / f).exists() for f in (CHECKPOINT, MODEL_FILE, CONFIG)) and not force:
        raise RunError(f"run directory {out} already holds a run: --resume to continue it, --force to overwrite")


def new_folders(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, innermost first."""
    missing = []
    for p in (path, *path.parents):
        if p.exists():
            break
        missing.append(p)
    return missing


def remove_new_folders(created: list[Path]) -> None:
    """Remove the (empty) folders a failed call made, innermost first; stop at one that is not empty."""
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            break


# ----------------------------------------------------------------------------- reading a run back

def check_run(run_dir: Path) -> None:
    """A run directory that holds a finished model (else a one-line error, with a hint to resume)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"--run {run_dir} is a file, not a run directory")
    if not run_dir.is_dir():
        raise RunError(f"run directory {run_dir} does not exist")
    if not (run_dir / MODEL_FILE).is_file():
        interrupted = (run_dir / CHECKPOINT).is_file()
        hint = f" (training was interrupted: train --resume --out {run_dir})" if interrupted else ""
        raise RunError(f"run directory {run_dir} has no finished model {MODEL_FILE}{hint}")


def open_run(run_dir: Path, device):
    """(the finished model of a run directory, its config.json as a dict)."""
    return load_trained(run_dir / MODEL_FILE, device), read_json(run_dir / CONFIG, "run configuration")


def load_split(run: dict, split: str):
    """The train or test ImageSet a run was (or is) made on, from its recorded dataset settings."""
    d = run["data"]
    if d["dataset"] == "synthetic":
        n = d["num_train"] if split == "train" else d["num_test"]
        cats = [d["category"]] if d["category"] else None
        return make_synthetic(split, d["image_size"], categories=cats, num_per_category=n, seed=d["seed"])
    return load_dataset(d["dataset"], d["root"], split, d["image_size"], category=d["category"], seed=d["seed"],
                        train_list=d.get("train_list"))


__all__ = ["RunError", "RunLock", "git_commit", "command_line", "machine", "save_atomic", "write_json",
           "write_text", "load_weights", "read_json", "is_run_dir", "check_train_out", "check_writable_file",
           "RUN_FILES", "CONFIG", "CHECKPOINT", "MODEL_FILE", "LOCK", "check_not_started", "check_outside_dataset",
           "check_regular", "new_folders", "remove_new_folders", "check_run", "open_run", "load_split"]
