"""Hostile input to the command line: crafted checkpoints, folders that are not ours, locked runs,
non-finite settings, sizes the model does not take, diverging losses, conflicting --resume flags,
files where folders belong (and the reverse), a full disk.

Every case asserts the exit code, the first line on stderr, and that the files present before the
call are unchanged after it (names, bytes and modification times of a whole folder).
"""
import errno
import hashlib
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_TRAIN_ARGS, run_cli

from pvqae_lib import storage
from pvqae_lib.config import HeadConfig, ModelConfig, PriorConfig, ScoreConfig, TrainConfig
from pvqae_lib.runs import folder as runs
from pvqae_lib.runs.folder import RunError, RunLock
from pvqae_lib.storage import StorageError

pytestmark = pytest.mark.usefixtures("one_thread", "cpu_quick")

ONE_STEP = ["--epochs", "1", "--num-train", "8", "--image-size", "32", "--prior-steps", "2", "--batch-size", "24",
            "--quiet"]


# ------------------------------------------------------------------------------------------ helpers

def snapshot(folder: Path) -> dict:
    """{relative path: (sha1 of the bytes, mtime_ns)} of every file under ``folder`` (hidden ones too)."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (hashlib.sha1(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(args, capsys, *words, code=2, watch=None):
    """Run the CLI, expecting ``code`` and a first stderr line holding every word, no traceback, and
    every file under ``watch`` (a folder) unchanged. Returns the first line."""
    before = snapshot(watch) if watch is not None else None
    got, _, err = run_cli(args, capsys)
    assert got == code, err
    assert "Traceback" not in err, err
    first = err.strip().splitlines()[0] if err.strip() else ""
    for word in words:
        assert word in first, (word, first)
    if watch is not None:
        assert snapshot(watch) == before
    return first


def crafted_pickle_model(path: Path, marker: Path) -> None:
    """A torch file whose unpickling would run ``touch marker``."""
    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)
    torch.save({"model_config": {"model": "pvqae"}, "x": Exploit()}, path)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny PVQAE run made through the CLI (one training step, 2 prior steps)."""
    out = tmp_path_factory.mktemp("hostile") / "run"
    assert run_cli_plain(["train", "--out", out, *ONE_STEP]) == 0
    return out


def run_cli_plain(args):
    from pvqae_lib.cli import main
    return main([str(a) for a in args])


@pytest.fixture
def copy_of(finished, tmp_path):
    """copy_of(*names): a new run folder holding copies of those files of the finished run."""
    def make(*names, where="copy"):
        folder = tmp_path / where
        folder.mkdir()
        for name in names:
            shutil.copy2(finished / name, folder / name)
        return folder
    return make


@pytest.fixture
def images(tmp_path):
    """One small PNG of the run's kind to score."""
    from PIL import Image
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (32, 32), (120, 90, 60)).save(folder / "a.png")
    return folder


@pytest.fixture
def locked(tmp_path):
    """locked(folder): another process holds the lock of ``folder`` (released at the end)."""
    procs = []

    def hold(folder):
        code = ("import fcntl, os, socket, sys, time\n"
                f"fd = os.open({str(Path(folder) / runs.LOCK)!r}, os.O_RDWR | os.O_CREAT)\n"
                "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
                "os.write(fd, f'pid={os.getpid()} host={socket.gethostname()} command=holder'.encode())\n"
                "print('ready', flush=True)\n"
                "time.sleep(120)\n")
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        procs.append(proc)
        return proc
    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------------ 1. loading never runs code

def test_everything_the_library_saves_loads_without_pickled_code(finished):
    for name in ("model.pt", "checkpoint.pt"):
        assert isinstance(torch.load(finished / name, weights_only=True), dict)


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_crafted_model_runs_nothing(command, copy_of, tmp_path, capsys, images):
    run = copy_of("config.json", "checkpoint.pt")
    marker = tmp_path / "PWNED"
    crafted_pickle_model(run / "model.pt", marker)
    args = (["evaluate", "--run", run, "--json", tmp_path / "r.json"] if command == "evaluate" else
            ["predict", "--run", run, "--images", images, "--out", tmp_path / "p", "--no-calibrate"])
    refused(args, capsys, "error: cannot read checkpoint", str(run / "model.pt"), "could run code", watch=tmp_path)
    assert not marker.exists()
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "p").exists()


def test_a_crafted_checkpoint_is_not_resumed(copy_of, tmp_path, capsys):
    run = copy_of("config.json")
    marker = tmp_path / "PWNED"
    crafted_pickle_model(run / "checkpoint.pt", marker)
    refused(["train", "--out", run, "--resume"], capsys, "cannot read checkpoint", "checkpoint.pt", watch=tmp_path)
    assert not marker.exists()


def test_a_plain_pickle_runs_nothing(copy_of, tmp_path, capsys):
    """The legacy (non-zip) torch format is a bare pickle stream: refused the same way."""
    import pickle

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'PWNED'}",)
    run = copy_of("config.json", "checkpoint.pt")
    (run / "model.pt").write_bytes(pickle.dumps({"x": Exploit()}))
    refused(["evaluate", "--run", run, "--json", tmp_path / "r.json"], capsys, "cannot read checkpoint",
            watch=tmp_path)
    assert not (tmp_path / "PWNED").exists()


def test_a_truncated_model(copy_of, tmp_path, capsys):
    run = copy_of("config.json", "model.pt")
    data = (run / "model.pt").read_bytes()
    (run / "model.pt").write_bytes(data[:len(data) // 2])
    refused(["evaluate", "--run", run, "--json", tmp_path / "r.json"], capsys, "cannot read checkpoint",
            "model.pt", watch=tmp_path)


def test_a_broken_config_json(copy_of, tmp_path, capsys):
    run = copy_of("model.pt", "checkpoint.pt")
    (run / "config.json").write_text("{not json")
    refused(["evaluate", "--run", run, "--json", tmp_path / "r.json"], capsys, "config.json", "not valid JSON",
            watch=tmp_path)


# -------------------------------------------------------------- 2. nothing of a user's is overwritten

def test_train_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "history.json").write_text('{"my": "notes"}')
    (out / "split.json").write_text("[1, 2, 3]")
    refused(["train", "--out", out, *ONE_STEP], capsys, "--out", "not empty", "--force", watch=tmp_path)


def test_train_refuses_a_folder_with_any_user_file(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "photo.png").write_bytes(b"\x89PNG")
    refused(["train", "--out", out, *ONE_STEP], capsys, "photo.png", watch=tmp_path)


def test_train_force_beside_user_files_touches_only_its_own(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    before = snapshot(out)
    code, _, err = run_cli(["train", "--out", out, "--force", *ONE_STEP], capsys)
    assert code == 0, err
    assert snapshot(out)["notes.txt"] == before["notes.txt"]
    assert not (out / runs.LOCK).exists() and not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


def test_a_stale_lock_file_does_not_block(tmp_path, capsys):
    """A lock file left by a killed process (no flock held) is taken over."""
    out = tmp_path / "run"
    out.mkdir()
    (out / runs.LOCK).write_text("pid=999999 host=gone command=killed\n")
    code, _, err = run_cli(["train", "--out", out, *ONE_STEP], capsys)
    assert code == 0, err
    assert (out / "model.pt").is_file() and not (out / runs.LOCK).exists()


@pytest.fixture
def predicted(finished, tmp_path, images, capsys):
    """A predict folder made once (no calibration)."""
    out = tmp_path / "pred"
    code, _, err = run_cli(["predict", "--run", finished, "--images", images, "--out", out, "--no-calibrate"], capsys)
    assert code == 0, err
    return out


def test_predict_force_removes_only_what_it_listed(predicted, finished, images, tmp_path, capsys):
    holiday = predicted / "maps" / "2024_holiday.png"
    holiday.write_bytes(b"my holiday")
    listed = json.loads((predicted / "predictions.json").read_text())["maps"]
    assert listed == ["0000_a.png"]
    before = snapshot(holiday.parent)["2024_holiday.png"]
    code, _, err = run_cli(["predict", "--run", finished, "--images", images, "--out", predicted, "--no-calibrate",
                            "--force"], capsys)
    assert code == 0, err
    assert snapshot(holiday.parent)["2024_holiday.png"] == before


def test_predict_force_removes_stale_pictures_of_its_own(predicted, finished, tmp_path, capsys):
    from PIL import Image
    other = tmp_path / "other"
    other.mkdir()
    Image.new("RGB", (32, 32)).save(other / "b.png")
    code, _, err = run_cli(["predict", "--run", finished, "--images", other, "--out", predicted, "--no-calibrate",
                            "--force"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (predicted / "maps").iterdir()) == ["0000_b.png"]


def test_predict_will_not_overwrite_a_users_picture(finished, images, tmp_path, capsys):
    out = tmp_path / "pred"
    (out / "maps").mkdir(parents=True)
    (out / "maps" / "0000_a.png").write_bytes(b"mine")
    refused(["predict", "--run", finished, "--images", images, "--out", out, "--no-calibrate"], capsys,
            "0000_a.png", "not written by predict", watch=tmp_path)


def test_predict_will_not_overwrite_predictions_json(finished, images, tmp_path, capsys):
    out = tmp_path / "pred"
    out.mkdir()
    (out / "predictions.json").write_text("{}")
    refused(["predict", "--run", finished, "--images", images, "--out", out, "--no-calibrate"], capsys,
            "already holds predictions", "--force", watch=tmp_path)


def test_predict_ignores_paths_listed_outside_maps(predicted, finished, images, tmp_path, capsys):
    """A predictions.json edited to list ../x: --force still removes nothing outside maps/."""
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"x")
    record = json.loads((predicted / "predictions.json").read_text())
    record["maps"] = ["../../victim.png", "/etc/passwd"]
    (predicted / "predictions.json").write_text(json.dumps(record))
    code, _, err = run_cli(["predict", "--run", finished, "--images", images, "--out", predicted, "--no-calibrate",
                            "--force"], capsys)
    assert code == 0, err
    assert victim.read_bytes() == b"x"


# ------------------------------------------------------------------------------------------ locks

def test_train_into_a_locked_folder(tmp_path, capsys, locked):
    out = tmp_path / "run"
    out.mkdir()
    holder = locked(out)
    refused(["train", "--out", out, *ONE_STEP], capsys, "is in use by", f"pid={holder.pid}", "command=holder",
            watch=tmp_path)


def test_resume_into_a_locked_run(copy_of, tmp_path, capsys, locked):
    run = copy_of("config.json", "checkpoint.pt")
    locked(run)
    refused(["train", "--out", run, "--resume"], capsys, "is in use by", watch=tmp_path)


def test_predict_into_a_locked_folder(finished, images, tmp_path, capsys, locked):
    out = tmp_path / "pred"
    out.mkdir()
    locked(out)
    refused(["predict", "--run", finished, "--images", images, "--out", out, "--no-calibrate"], capsys,
            "is in use by", watch=tmp_path)


def test_evaluate_into_a_locked_run(copy_of, tmp_path, capsys, locked):
    run = copy_of("config.json", "model.pt")
    locked(run)
    refused(["evaluate", "--run", run, "--json", run / "eval.json"], capsys, "is in use by", watch=tmp_path)


def test_the_lock_is_exclusive_in_process_too(tmp_path):
    with RunLock(tmp_path, "first"):
        with pytest.raises(RunError, match="in use by pid=.*command=first"):
            RunLock(tmp_path, "second").acquire()
    assert not (tmp_path / runs.LOCK).exists()
    with RunLock(tmp_path, "third"):               # released: free again
        pass


# ---------------------------------------------------------- 3. every setting checked before writing

@pytest.mark.parametrize("flag,value", [("--lambda-max", "nan"), ("--lambda-max", "inf"), ("--lr", "nan"),
                                        ("--lr", "inf"), ("--tau", "inf"), ("--tau", "nan"),
                                        ("--lambda-max", "-inf"), ("--lr", "-nan")])
def test_non_finite_settings(flag, value, tmp_path, capsys):
    refused(["train", "--out", tmp_path / "r", f"{flag}={value}", *TINY_TRAIN_ARGS], capsys, flag, "finite",
            watch=tmp_path)
    assert not (tmp_path / "r").exists()


def test_non_finite_threshold(finished, images, tmp_path, capsys):
    refused(["predict", "--run", finished, "--images", images, "--out", tmp_path / "p", "--threshold", "nan"],
            capsys, "--threshold", "finite", watch=tmp_path)
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("config,kwargs", [(TrainConfig, {"lr": math.nan}), (TrainConfig, {"lambda_max": math.inf}),
                                           (TrainConfig, {"disc_weight": math.nan}), (ModelConfig, {"tau": math.inf}),
                                           (ModelConfig, {"beta": math.nan}), (PriorConfig, {"lr": math.inf}),
                                           (PriorConfig, {"mask_ratio": (0.1, math.nan)}),
                                           (HeadConfig, {"lr": math.nan}), (ScoreConfig, {"smooth_sigma": math.inf})])
def test_configs_refuse_non_finite_numbers(config, kwargs):
    with pytest.raises(ValueError, match="finite"):
        config(**kwargs)


@pytest.mark.parametrize("size", ["33", "36", "8"])
def test_a_size_the_model_does_not_take_leaves_nothing(size, tmp_path, capsys):
    refused(["train", "--out", tmp_path / "r", *TINY_TRAIN_ARGS, "--image-size", size], capsys,
            f"--image-size {size}", watch=tmp_path)
    assert not (tmp_path / "r").exists()


def test_a_failed_start_inside_new_parents_leaves_no_folder(tmp_path, capsys):
    refused(["train", "--out", tmp_path / "a" / "b" / "r", *TINY_TRAIN_ARGS, "--image-size", "33"], capsys,
            "--image-size 33", watch=tmp_path)
    assert not (tmp_path / "a").exists()


def diverge_from_step(monkeypatch, step: int) -> None:
    """The training loss becomes NaN from the ``step``-th step on (1-based), as a learning rate too
    large for the model would make it (--lr is capped at 10, which these tiny models survive)."""
    from pvqae_lib.engine import train as train_module
    real, calls = train_module.total_loss, []

    def total_loss(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) >= step else loss
    monkeypatch.setattr(train_module, "total_loss", total_loss)


def test_a_diverging_loss_stops_and_keeps_the_last_good_epoch(tmp_path, capsys, monkeypatch):
    out = tmp_path / "r"
    diverge_from_step(monkeypatch, 2)
    line = refused(["train", "--out", out, *ONE_STEP, "--epochs", "3"], capsys,
                   "training stopped: the loss became nan at step 2", "epoch 2/3", "keeps epoch 1")
    assert str(out / "checkpoint.pt") in line
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert not (out / "model.pt").exists()


def test_a_loss_diverging_in_the_first_epoch_leaves_nothing(tmp_path, capsys, monkeypatch):
    diverge_from_step(monkeypatch, 2)
    refused(["train", "--out", tmp_path / "r", *ONE_STEP, "--batch-size", "8"], capsys,
            "training stopped: the loss became", "no epoch finished", watch=tmp_path)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flags,named", [(["--epochs", "5"], ["--epochs 5 differs from its 1"]),
                                         (["--image-size", "64"], ["--image-size 64 differs from its 32"]),
                                         (["--seed", "1"], ["--seed 1 differs from its 0"]),
                                         (["--lambda-max", "0.5"], ["--lambda-max 0.5 differs from its 1.25"]),
                                         (["--model", "vqvae"], ["--model vqvae differs"]),
                                         (["--no-augment"], ["made without --no-augment"]),
                                         (["--epochs", "4", "--seed", "2", "--tau", "3"],
                                          ["--epochs 4", "--seed 2", "--tau 3.0"])])
def test_resume_refuses_flags_that_change_the_run(flags, named, copy_of, tmp_path, capsys):
    run = copy_of("config.json", "checkpoint.pt")
    refused(["train", "--out", run, "--resume", *flags], capsys, "--resume", *named, watch=tmp_path)


def test_resume_accepts_flags_that_repeat_the_run(finished):
    from pvqae_lib.commands.parser import parse
    from pvqae_lib.commands.train import check_resume_flags
    config = json.loads((finished / "config.json").read_text())
    check_resume_flags(parse(["train", "--out", "x", "--resume", "--epochs", "1", "--image-size", "32", "--seed", "0",
                              "--lr", "0.001", "--quiet", "--device", "cpu"]), config, finished)


# ------------------------------------------------------------------- 4. no hang, no traceback

def test_benchmark_with_a_size_the_model_does_not_take(tmp_path, capsys):
    refused(["benchmark", "--sizes", "33", "--steps", "1", "--batch-size", "1"], capsys, "--sizes 33",
            watch=tmp_path)


@pytest.mark.slow
def test_a_failing_benchmark_child_is_reported_not_awaited():
    from pvqae_lib.engine.benchmark import BenchmarkError, run_benchmark
    t0 = time.time()
    with pytest.raises(BenchmarkError, match="pvqae at 33 px failed: ValueError"):
        run_benchmark([33], 1, 1, "cpu")
    assert time.time() - t0 < 120


def test_train_out_is_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    refused(["train", "--out", tmp_path / "afile", *TINY_TRAIN_ARGS], capsys, "--out", "is a file", watch=tmp_path)


def test_train_out_under_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    line = refused(["train", "--out", tmp_path / "afile" / "r", *TINY_TRAIN_ARGS], capsys, "afile", watch=tmp_path)
    assert line.startswith("error:")


def test_evaluate_json_is_a_folder(finished, tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    refused(["evaluate", "--run", finished, "--json", tmp_path / "folder"], capsys, "--json", "is a folder",
            watch=tmp_path)
    assert not list(tmp_path.glob("*.tmp"))


def test_evaluate_json_under_a_file(finished, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    refused(["evaluate", "--run", finished, "--json", tmp_path / "afile" / "r.json"], capsys, "is a file",
            watch=tmp_path)


@pytest.mark.parametrize("command", [["benchmark", "--sizes", "32"],
                                     ["fewshot", "--shots", "1", "--seeds", "0"]])
def test_other_json_is_a_folder(command, tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    refused([*command, "--json", tmp_path / "folder"], capsys, "--json", "is a folder", watch=tmp_path)


def test_predict_out_is_a_file(finished, images, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    refused(["predict", "--run", finished, "--images", images, "--out", tmp_path / "afile"], capsys, "--out",
            "is a file", watch=tmp_path)


def test_an_unknown_device(tmp_path, capsys):
    refused(["train", "--out", tmp_path / "r", *TINY_TRAIN_ARGS, "--device", "quantum"], capsys, "--device",
            watch=tmp_path)
    assert not (tmp_path / "r").exists()


def test_disk_full_while_writing_the_checkpoint(tmp_path, capsys):
    """RLIMIT_FSIZE makes every write past 64 KiB fail (EFBIG) as a full disk would (ENOSPC)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        refused(["train", "--out", tmp_path / "r", *ONE_STEP], capsys, "cannot write", "checkpoint.pt",
                "stopped short", watch=tmp_path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert not (tmp_path / "r").exists()       # the failed start left nothing, no .tmp either


def test_no_space_left_while_writing_the_json(finished, tmp_path, capsys, monkeypatch):
    target = tmp_path / "r.json"
    target.write_text('{"old": true}')

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(runs.os, "fsync", full)
    refused(["evaluate", "--run", finished, "--json", target, "--force"], capsys, "cannot write", str(target),
            "No space left on device", watch=tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_write_json_into_a_missing_folder(tmp_path):
    with pytest.raises(StorageError, match="cannot write .*No such file or directory"):
        storage.write_json({}, tmp_path / "nowhere" / "x.json")
    assert snapshot(tmp_path) == {}


def test_save_atomic_failure_leaves_no_temporary_file(tmp_path):
    class Unsaveable:
        def __reduce__(self):
            raise TypeError("cannot pickle this")
    (tmp_path / "model.pt").write_bytes(b"old")
    with pytest.raises(StorageError, match="cannot write .*model.pt"):
        storage.save_atomic({"x": Unsaveable()}, tmp_path / "model.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    assert (tmp_path / "model.pt").read_bytes() == b"old"


# ------------------------------------------------------------------------- what already worked

@pytest.mark.parametrize("category", ["marble", "../etc"])
def test_unknown_or_escaping_categories(category, tmp_path, capsys):
    refused(["train", "--out", tmp_path / "r", *TINY_TRAIN_ARGS, "--category", category], capsys, "error:",
            watch=tmp_path)
    assert not (tmp_path / "r").exists()


def test_a_truncated_checkpoint_on_resume(copy_of, tmp_path, capsys):
    run = copy_of("config.json", "checkpoint.pt")
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[:1000])
    refused(["train", "--out", run, "--resume"], capsys, "cannot read checkpoint", "checkpoint.pt", watch=tmp_path)


def test_files_are_written_with_the_usual_permissions(finished):
    """mkstemp makes 0600 files: the run's files get what open() would give them (0666 less the umask)."""
    for name in ("model.pt", "checkpoint.pt", "config.json", "history.json"):
        assert (finished / name).stat().st_mode & 0o777 == storage.FILE_MODE, name


def test_resume_removes_what_a_killed_write_left(copy_of, tmp_path, capsys):
    """A checkpoint write cut short by kill -9 leaves .checkpoint.pt.<random>.tmp: the next train into the
    run removes it (and only it), then finishes the run."""
    run = copy_of("config.json", "checkpoint.pt")
    (run / ".checkpoint.pt.x1y2.tmp").write_bytes(b"half")
    (run / ".my.tmp").write_bytes(b"mine")
    config = json.loads((run / "config.json").read_text())
    code, _, err = run_cli(["train", "--out", run, "--resume", "--quiet"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in run.iterdir()) == [".my.tmp", "checkpoint.pt", "config.json", "history.json",
                                                     "model.pt"]
    assert json.loads((run / "config.json").read_text()) == config


@pytest.mark.slow
def test_kill_9_mid_training_then_resume_is_bit_identical(tmp_path, capsys):
    """kill -9 leaves run.lock behind (with no flock held): --resume takes it over and finishes the run
    with exactly the weights of an uninterrupted one."""
    args = ["--epochs", "12", "--num-train", "8", "--image-size", "32", "--prior-steps", "2", "--batch-size", "8",
            "--quiet"]
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PVQAE_DEVICE": "cpu", "PVQAE_PROFILE": "quick"}
    proc = subprocess.Popen([sys.executable, "-m", "pvqae_lib", "train", "--out", str(killed), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if (killed / "model.pt").exists():
        pytest.skip("the run finished before it could be killed")
    assert (killed / runs.LOCK).exists()            # the stale lock file
    epoch = torch.load(killed / "checkpoint.pt", weights_only=True)["epoch"]
    assert 1 <= epoch < 12
    code, _, err = run_cli(["train", "--out", killed, "--resume", "--quiet"], capsys)
    assert code == 0, err
    straight = tmp_path / "straight"
    code, _, err = run_cli(["train", "--out", straight, *args], capsys)
    assert code == 0, err
    a = torch.load(killed / "model.pt", weights_only=True)["model"]
    b = torch.load(straight / "model.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (killed / runs.LOCK).exists()


def read_only(path, *args, **kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))


def test_train_on_a_read_only_file_system(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Path, "mkdir", read_only)
    refused(["train", "--out", tmp_path / "r", *ONE_STEP], capsys, "error: cannot use", str(tmp_path / "r"),
            "Read-only file system", watch=tmp_path)


def test_predict_on_a_read_only_file_system(finished, images, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Path, "mkdir", read_only)
    refused(["predict", "--run", finished, "--images", images, "--out", tmp_path / "p", "--no-calibrate"], capsys,
            "error: cannot use", "Read-only file system", watch=tmp_path)


def test_evaluate_json_on_a_read_only_file_system(finished, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(storage.tempfile, "mkstemp", lambda dir, **kw: read_only(dir))
    refused(["evaluate", "--run", finished, "--json", tmp_path / "r.json"], capsys, "cannot write",
            str(tmp_path / "r.json"), "Read-only file system", watch=tmp_path)


def test_evaluate_run_is_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    refused(["evaluate", "--run", tmp_path / "afile", "--json", tmp_path / "r.json"], capsys, "--run", "is a file",
            watch=tmp_path)
